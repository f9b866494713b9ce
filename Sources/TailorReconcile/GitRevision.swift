import Foundation

/// The git commit a spec directory is checked out at, read with the `git` command
/// (no libgit2): `abc1234…` and whether files under the directory differ from it.
public struct GitRevision: Sendable, Equatable, CustomStringConvertible {
    public var commit: String
    public var dirty: Bool

    /// The full revision as tailor records it: the commit, `+dirty` when changed.
    public var description: String { commit + (dirty ? "+dirty" : "") }
    /// The first 7 characters, for status lines.
    public var short: String { String(commit.prefix(7)) + (dirty ? "+dirty" : "") }

    /// The revision of the work tree `path` (a directory, or a file's directory) is
    /// in; nil outside a git work tree, without git, or when git cannot read it.
    public static func of(_ path: String) -> GitRevision? {
        try? read(path)
    }

    /// The revision of the work tree `path` is in; nil outside a git work tree or
    /// without git. Throws, with git's own words, when the directory is in a work
    /// tree whose revision git cannot read: a daemon that quietly records no
    /// revision hides a repository git refuses (`detected dubious ownership` when
    /// a git-sync of another user owns it), a branch with no commit yet, or a
    /// broken checkout.
    public static func read(_ path: String) throws(GitError) -> GitRevision? {
        var isDirectory: ObjCBool = false
        // A missing path is the spec loader's error to report, not git's.
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        let directory = isDirectory.boolValue ? path : (path as NSString).deletingLastPathComponent
        let head = git(["rev-parse", "HEAD"], in: directory)
        guard head.status == 0 else {
            // 127: env found no git. 128 with this message: not in a work tree, the usual case.
            if head.status == 127 || head.stderr.contains("not a git repository") { return nil }
            throw GitError(command: "git rev-parse HEAD", directory: directory, stderr: head.stderr)
        }
        let changes = git(["status", "--porcelain", "--untracked-files=normal", "--", "."], in: directory)
        guard changes.status == 0 else {
            throw GitError(command: "git status", directory: directory, stderr: changes.stderr)
        }
        return GitRevision(commit: head.stdout, dirty: !changes.stdout.isEmpty)
    }

    /// Exit status and trimmed output of `git -C directory arguments`, in the C
    /// locale so that its messages can be recognised; status -1 if it did not start.
    /// Without optional locks: `git status` would otherwise refresh the index under
    /// `index.lock`, and a git-sync or a person committing at that moment fails.
    static func git(_ arguments: [String], in directory: String) -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["LC_ALL=C", "git", "--no-optional-locks", "-C", directory] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { return (-1, "", "cannot run git: \(error)") }
        // stdout first, as it may be long (`git status`); git's few lines of stderr fit in the pipe meanwhile.
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let trim = { (data: Data) in String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        return (process.terminationStatus, trim(stdout), trim(stderr))
    }
}

/// git could not read the revision of a work tree the specs are in.
public struct GitError: Error, Sendable, CustomStringConvertible {
    public let command: String
    public let directory: String
    /// What git wrote on stderr.
    public let stderr: String

    public var description: String { "\(command) in \(directory) failed: \(stderr.isEmpty ? "no message" : stderr)" }
}
