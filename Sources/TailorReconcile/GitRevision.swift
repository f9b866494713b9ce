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
    /// in; nil outside a git work tree or without git.
    public static func of(_ path: String) -> GitRevision? {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        let directory = exists && !isDirectory.boolValue ? (path as NSString).deletingLastPathComponent : path
        guard let commit = git(["rev-parse", "HEAD"], in: directory), commit.count >= 40 else { return nil }
        let changes = git(["status", "--porcelain", "--untracked-files=normal", "--", "."], in: directory)
        return GitRevision(commit: commit, dirty: !(changes ?? "").isEmpty)
    }

    /// Trimmed stdout of `git -C directory arguments`, or nil if it failed.
    static func git(_ arguments: [String], in directory: String) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-C", directory] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
