import Foundation
import Testing
import TailorReconcile

/// The revision the daemon records and logs (`GitRevision.read`): nil outside a
/// work tree, git's own message when a work tree's revision cannot be read.
@Suite("git revision of a spec directory")
struct GitRevisionTests {
    /// A fresh directory under the temporary directory, removed after `body`.
    static func withDirectory(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-git-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    static func git(_ directory: String, _ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = ["-C", directory, "-c", "user.name=t", "-c", "user.email=t@t"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "git \(arguments)")
    }

    @Test("outside a work tree, or for a missing directory, there is no revision and nothing to report")
    func outside() throws {
        try Self.withDirectory { directory in
            let (here, missing) = (try GitRevision.read(directory), try GitRevision.read(directory + "/missing"))
            #expect(here == nil && missing == nil)
        }
    }

    @Test("a commit, then +dirty once a file below changes")
    func commitAndDirty() throws {
        try Self.withDirectory { directory in
            try Self.git(directory, "init", "-q")
            try "a\n".write(toFile: directory + "/edge.yaml", atomically: true, encoding: .utf8)
            try Self.git(directory, "add", "edge.yaml")
            try Self.git(directory, "commit", "-q", "-m", "one")
            let clean = try #require(try GitRevision.read(directory))
            #expect(clean.commit.count == 40 && !clean.dirty, "\(clean)")
            try "b\n".write(toFile: directory + "/edge.yaml", atomically: true, encoding: .utf8)
            let edited = try GitRevision.read(directory + "/edge.yaml")
            #expect(edited?.commit == clean.commit && edited?.dirty == true, "\(String(describing: edited))")
        }
    }

    @Test("reading the revision never writes the repository's index: a git-sync or a commit running meanwhile would fail on index.lock")
    func noIndexLock() throws {
        try Self.withDirectory { directory in
            try Self.git(directory, "init", "-q")
            let file = directory + "/edge.yaml"
            try "a\n".write(toFile: file, atomically: true, encoding: .utf8)
            try Self.git(directory, "add", "edge.yaml")
            try Self.git(directory, "commit", "-q", "-m", "one")
            // The same content with a new mtime: the index's stat data is stale, so a
            // `git status` with optional locks refreshes it and writes the index.
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 60)], ofItemAtPath: file)
            let index = directory + "/.git/index"
            let before = try FileManager.default.attributesOfItem(atPath: index)[.modificationDate] as? Date
            let revision = try #require(try GitRevision.read(directory))
            #expect(!revision.dirty)
            let after = try FileManager.default.attributesOfItem(atPath: index)[.modificationDate] as? Date
            #expect(before != nil && before == after, "the index was rewritten: \(String(describing: before)) -> \(String(describing: after))")
        }
    }

    @Test("a work tree git cannot read (no commit yet) throws with git's stderr; `of` gives nil")
    func unreadable() throws {
        try Self.withDirectory { directory in
            try Self.git(directory, "init", "-q")
            #expect(GitRevision.of(directory) == nil)
            let error = #expect(throws: GitError.self) { try GitRevision.read(directory) }
            #expect(error?.command == "git rev-parse HEAD" && error?.directory == directory)
            #expect(error?.stderr.contains("ambiguous argument 'HEAD'") == true, "\(String(describing: error))")
        }
    }
}
