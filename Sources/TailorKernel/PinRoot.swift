import CShims
import Glibc

/// A directory on bpffs under which tailor pins its chains (`/sys/fs/bpf/tailor`
/// by default; tests use their own, so they run side by side).
public struct PinRoot: Sendable, Hashable, CustomStringConvertible {
    public static let defaultPath = "/sys/fs/bpf/tailor"
    /// The bpffs magic number statfs(2) reports (BPF_FS_MAGIC).
    static let bpffsMagic = 0xcafe_4a11

    public let path: String

    /// A pin root at `path`, which must lie on a mounted bpffs.
    public init(_ path: String = PinRoot.defaultPath) throws(KernelError) {
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        guard PinRoot.isOnBPFFS(parentOf: trimmed) else {
            throw KernelError(.invalidArgument, operation: "use pin root", object: trimmed,
                              detail: "it is not on a bpffs; mount one with `mount -t bpf bpf /sys/fs/bpf`")
        }
        self.path = trimmed
    }

    public var description: String { path }

    /// `path` joined with `components`.
    public func appending(_ components: String...) -> String {
        ([path] + components).joined(separator: "/")
    }

    /// Whether the nearest existing directory at or above `path` is on bpffs.
    static func isOnBPFFS(parentOf path: String) -> Bool {
        var candidate = path
        while !candidate.isEmpty {
            var info = statfs()
            if statfs(candidate, &info) == 0 { return info.f_type == bpffsMagic }
            guard let slash = candidate.lastIndex(of: "/") else { return false }
            candidate = String(candidate[..<slash])
        }
        return false
    }

    /// Creates `directory` and its parents (bpffs accepts mkdir).
    public func makeDirectory(_ directory: String) throws(KernelError) {
        var prefix = ""
        for component in directory.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw KernelError(KernelError.code(for: errno), operation: "create pin directory", object: prefix,
                                  errno: errno)
            }
        }
    }

    /// Removes a pin (unlink); the object lives on while something else holds it.
    public func unpin(_ pin: String) throws(KernelError) {
        try check(unlink(pin), "unpin", pin)
    }

    /// Moves a pin or a directory of pins (rename(2)); `to` must not exist, or be an empty directory.
    public func rename(_ from: String, to: String) throws(KernelError) {
        try check(Glibc.rename(from, to), "move pins", "\(from) to \(to)")
    }

    /// Whether something is pinned or a directory exists at `pin`.
    public func exists(_ pin: String) -> Bool { access(pin, F_OK) == 0 }

    /// Removes `directory` if it is empty (rmdir(2), which the kernel refuses for a
    /// directory that holds anything, so nothing pinned can be lost); false when it is not.
    public func removeIfEmpty(_ directory: String) throws(KernelError) -> Bool {
        if rmdir(directory) == 0 { return true }
        if errno == ENOTEMPTY || errno == EEXIST { return false }
        throw KernelError(KernelError.code(for: errno), operation: "remove pin directory", object: directory,
                          errno: errno)
    }

    /// Removes `directory` and everything pinned below it.
    public func removeTree(_ directory: String) throws(KernelError) {
        guard let dir = opendir(directory) else {
            if errno == ENOENT { return }
            throw KernelError(KernelError.code(for: errno), operation: "open pin directory", object: directory,
                              errno: errno)
        }
        var children: [(String, Bool)] = []
        while let entry = readdir(dir) {
            let name = string(fromCArray: entry.pointee.d_name)
            guard name != ".", name != ".." else { continue }
            children.append((directory + "/" + name, entry.pointee.d_type == UInt8(DT_DIR)))
        }
        closedir(dir)
        for (child, isDirectory) in children {
            if isDirectory { try removeTree(child) } else { try unpin(child) }
        }
        try check(rmdir(directory), "remove pin directory", directory)
    }
}
