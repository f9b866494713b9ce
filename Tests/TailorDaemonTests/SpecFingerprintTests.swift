import Foundation
import Testing
@testable import TailorDaemon

/// When the daemon may reuse the desired state it loaded: the spec directory's
/// files as the file system describes them.
@Suite("spec directory fingerprint")
struct SpecFingerprintTests {
    @Test("the same files give the same fingerprint; a rewrite with the same bytes, a new file, a removed one or a file behind a link changed do not; .git is left out")
    func changes() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-fp-\(UUID().uuidString)").path
        let directory = base + "/specs"
        try FileManager.default.createDirectory(atPath: directory + "/.git", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let write = { (name: String, text: String) in
            try text.write(toFile: directory + "/" + name, atomically: false, encoding: .utf8)
        }
        try write("a.yaml", "kind: Chain\n")
        try "x".write(toFile: base + "/outside.o", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: directory + "/cube.o", withDestinationPath: base + "/outside.o")
        let first = try #require(SpecFingerprint.of(directory))
        #expect(SpecFingerprint.of(directory) == first)

        try "ref: refs/heads/main\n".write(toFile: directory + "/.git/HEAD", atomically: false, encoding: .utf8)
        #expect(SpecFingerprint.of(directory) == first)

        // The same bytes written again: ctime moves even when size and content do not.
        try write("a.yaml", "kind: Chain\n")
        let rewritten = try #require(SpecFingerprint.of(directory))
        #expect(rewritten != first)

        try "y".write(toFile: base + "/outside.o", atomically: false, encoding: .utf8)
        let linked = try #require(SpecFingerprint.of(directory))
        #expect(linked != rewritten)

        try write("b.yaml", "kind: Chain\n")
        let added = try #require(SpecFingerprint.of(directory))
        #expect(added != linked)
        try FileManager.default.removeItem(atPath: directory + "/b.yaml")
        #expect(SpecFingerprint.of(directory) != added)
        #expect(SpecFingerprint.of(base + "/missing") == nil)
        try FileManager.default.createSymbolicLink(atPath: directory + "/more", withDestinationPath: base)
        #expect(SpecFingerprint.of(directory) == nil)
    }
}
