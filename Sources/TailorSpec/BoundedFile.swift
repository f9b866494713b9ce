import Foundation

/// The one way files named by specs are read: spec files, and the object files
/// `object` cubes name. A hostile path must cost no more than a bad file: the file
/// is opened non-blocking and must be regular before a byte is read (a FIFO would
/// block the run, a device would feed it forever), a file larger than the limit is
/// refused by its size, and no more than the limit and one byte is ever read (the
/// file may grow after it was measured).
public enum BoundedFile {
    public enum Failure: Error, Sendable, Equatable {
        /// open(2) failed; the reason is strerror's.
        case cannotOpen(String)
        /// A FIFO, device, socket or directory.
        case notRegular
        /// Larger than the limit: its size when known, else what was read (the limit and one byte).
        case tooLarge(bytes: Int)
        /// read(2) failed; the reason is strerror's.
        case cannotRead(String)
    }

    /// Bytes read at a time: `chunk` sees each piece as it comes.
    static let chunkSize = 1 << 16

    /// The bytes of the regular file at `path`, at most `limit` of them; `chunk` is
    /// called with each piece as it is read (to hash while reading).
    public static func read(_ path: String, limit: Int,
                            chunk: (UnsafeRawBufferPointer) -> Void = { _ in }) throws(Failure) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw .cannotOpen(String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { throw .notRegular }
        guard Int(status.st_size) <= limit else { throw .tooLarge(bytes: Int(status.st_size)) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(status.st_size))
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        while bytes.count <= limit {
            let wanted = min(chunkSize, limit + 1 - bytes.count)
            let count = buffer.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress, wanted) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .cannotRead(String(cString: strerror(errno)))
            }
            if count == 0 { return bytes }
            buffer.withUnsafeBytes { chunk(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            bytes.append(contentsOf: buffer[..<count])
        }
        throw .tooLarge(bytes: bytes.count)
    }
}
