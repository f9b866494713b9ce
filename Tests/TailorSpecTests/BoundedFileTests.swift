import Foundation
import Testing
@testable import TailorSpec

@Suite("bounded file reads")
struct BoundedFileTests {
    /// A file of `count` bytes (a pattern, so misplaced chunks show), removed after `body`.
    func withFile(_ count: Int, _ body: (String, [UInt8]) throws -> Void) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-bounded-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 * 7 + $0 / 251) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        try body(path, bytes)
    }

    @Test("a file of several chunks is read whole, and the chunks are the file in order")
    func chunks() throws {
        try withFile(3 * BoundedFile.chunkSize + 17) { path, bytes in
            var seen: [UInt8] = []
            let read = try BoundedFile.read(path, limit: bytes.count) { seen += $0 }
            #expect(read == bytes)
            #expect(seen == bytes)
        }
    }

    @Test("a file of exactly the limit is read; one byte more is refused with its size, before any chunk")
    func limit() throws {
        try withFile(1000) { path, bytes in
            let read = try BoundedFile.read(path, limit: 1000)
            #expect(read == bytes)
            var chunks = 0
            #expect(throws: BoundedFile.Failure.tooLarge(bytes: 1000)) {
                try BoundedFile.read(path, limit: 999) { _ in chunks += 1 }
            }
            #expect(chunks == 0)
        }
    }

    @Test("a FIFO or a directory is refused without blocking; a missing file says why")
    func notRegular() throws {
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-fifo-\(UUID())").path
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { try? FileManager.default.removeItem(atPath: fifo) }
        #expect(throws: BoundedFile.Failure.notRegular) { try BoundedFile.read(fifo, limit: 10) }
        #expect(throws: BoundedFile.Failure.notRegular) {
            try BoundedFile.read(FileManager.default.temporaryDirectory.path, limit: 10)
        }
        #expect(throws: BoundedFile.Failure.cannotOpen("No such file or directory")) {
            try BoundedFile.read(fifo + "-missing", limit: 10)
        }
    }
}
