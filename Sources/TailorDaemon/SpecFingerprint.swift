import Foundation
import Glibc

/// What a spec directory holds, as the file system describes it: every regular file
/// under it (file links followed, `.git` left out) by path, size, inode, mtime and
/// ctime; none for a directory holding a link to a directory.
/// Equal fingerprints mean no file was written, added, removed or replaced since
/// (ctime cannot be set back from user space), so the desired state loaded then is
/// still what the directory says: a drift check need not parse it again (a
/// 10,000-rule firewall takes some 200 ms to parse and build).
enum SpecFingerprint {
    /// Nil when the directory or a file in it cannot be read: load it then.
    static func of(_ directory: String) -> String? {
        let root = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue,
              let walker = FileManager.default.enumerator(atPath: root) else { return nil }
        var files: [String] = []
        while let relative = walker.nextObject() as? String {
            if relative == ".git" {
                walker.skipDescendants()
                continue
            }
            files.append(relative)
        }
        var lines: [String] = []
        for relative in files.sorted() {
            var info = stat()
            var own = stat()
            guard stat(root + "/" + relative, &info) == 0, lstat(root + "/" + relative, &own) == 0 else { return nil }
            // The walk does not enter a linked directory: no fingerprint, the specs are loaded.
            if info.st_mode & S_IFMT == S_IFDIR && own.st_mode & S_IFMT == S_IFLNK { return nil }
            guard info.st_mode & S_IFMT == S_IFREG else { continue }
            lines.append("\(relative)\0\(info.st_size) \(info.st_ino) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec) "
                + "\(info.st_ctim.tv_sec).\(info.st_ctim.tv_nsec)")
        }
        return root + "\n" + lines.joined(separator: "\n")
    }
}
