import Foundation
import Glibc

/// Watches a spec directory and everything below it with inotify, and calls
/// `onChange` for any file written, created, deleted or renamed, including the
/// atomic renames editors save with and the many files `git checkout` swaps at once
/// (debouncing is the caller's). Directories created later are watched as they
/// appear; `.git` is not watched.
///
/// inotify watches an inode, not a path: once the spec path names another
/// directory, the watches would stay on the old one. That happens when git-sync
/// swaps the symlink the path is (`ln -sfn` to a new worktree, then a rename over
/// the link), or when the directory is removed and made again. So the directory
/// holding the spec path, and the one holding each symlink on the way to it, are
/// watched for that one name too ("anchors"); when the entry is replaced, every
/// watch is dropped and the path resolved and watched anew.
public final class SpecWatcher: @unchecked Sendable {
    private let fd: Int32
    private let root: String
    private let lock = NSLock()
    /// The watched directories of the spec tree, by watch descriptor.
    private var directories: [Int32: String] = [:]
    /// Directories on the way to the spec tree, by watch descriptor, with the
    /// names in them whose replacement moves the tree.
    private var anchors: [Int32: Set<String>] = [:]
    private var running = true
    private let done = DispatchSemaphore(value: 0)
    private let onChange: @Sendable () -> Void

    static let mask = UInt32(IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF
                             | IN_MOVE_SELF | IN_ATTRIB)
    /// An anchor's directory (often a busy one such as /tmp) only matters for entries
    /// coming and going; added to a tree watch of the same directory, not replacing it.
    static let anchorMask = UInt32(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MASK_ADD)

    /// Watches `root`, which must be a directory (or a symlink to one) when called.
    public init(_ root: String, onChange: @escaping @Sendable () -> Void) throws {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw WatchError("inotify_init1 failed: \(String(cString: strerror(errno)))") }
        self.root = root
        self.onChange = onChange
        do {
            try watchTree(root)
        } catch {
            close(fd)
            throw error
        }
        watchAnchors()
        Thread.detachNewThread { [self] in loop() }
    }

    /// Stops watching; returns once the watching thread is done.
    public func stop() {
        lock.withLock { running = false }
        done.wait()
        close(fd)
    }

    private func watchTree(_ directory: String) throws {
        let descriptor = inotify_add_watch(fd, directory, Self.mask)
        guard descriptor >= 0 else {
            throw WatchError("cannot watch \(directory): \(String(cString: strerror(errno)))")
        }
        lock.withLock { directories[descriptor] = directory }
        let children = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for child in children where child != ".git" {
            let path = directory + "/" + child
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                try? watchTree(path)
            }
        }
    }

    /// The spec path and every symlink on the way to it, each with the directory
    /// that holds it: `/srv/git/current/specs` with `current` a link gives
    /// (`/srv/git/current`, `specs`) and (`/srv/git`, `current`).
    static func anchors(of path: String) -> [(directory: String, name: String)] {
        let components = URL(fileURLWithPath: path).standardizedFileURL.pathComponents.filter { $0 != "/" }
        return components.indices.reversed().compactMap { index in
            let prefix = "/" + components[...index].joined(separator: "/")
            var status = stat()
            let isLink = lstat(prefix, &status) == 0 && status.st_mode & S_IFMT == S_IFLNK
            guard index == components.count - 1 || isLink else { return nil }
            return ("/" + components[..<index].joined(separator: "/"), components[index])
        }
    }

    /// Watches the anchors that exist; one that cannot be watched (its directory
    /// is gone too) leaves the interval reconciles to notice a move.
    private func watchAnchors() {
        for (directory, name) in Self.anchors(of: root) {
            let descriptor = inotify_add_watch(fd, directory, Self.anchorMask)
            guard descriptor >= 0 else { continue }
            lock.withLock { _ = anchors[descriptor, default: []].insert(name) }
        }
    }

    /// Drops every watch and watches what the spec path names now (nothing, while
    /// it is missing: the anchors then wait for it to come back).
    private func rewatch() {
        let old = lock.withLock {
            let all = Set(directories.keys).union(anchors.keys)
            (directories, anchors) = ([:], [:])
            return all
        }
        // A watch the kernel already dropped (its directory deleted) fails with EINVAL: nothing to undo.
        for descriptor in old { inotify_rm_watch(fd, descriptor) }
        watchAnchors()
        try? watchTree(root)
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while lock.withLock({ running }) {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 200) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { continue }
            var changed = false
            var moved = false
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= count {
                let (watch, mask, length, name) = buffer.withUnsafeBytes { raw -> (Int32, UInt32, Int, String) in
                    let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    let start = offset + MemoryLayout<inotify_event>.size
                    let bytes = raw[start..<start + Int(event.len)].prefix { $0 != 0 }
                    return (event.wd, event.mask, Int(event.len), String(decoding: bytes, as: UTF8.self))
                }
                offset += MemoryLayout<inotify_event>.size + length
                if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    // Events were lost, new directories' among them: start again from the path.
                    (changed, moved) = (true, true)
                    continue
                }
                let (anchored, parent) = lock.withLock { (anchors[watch]?.contains(name) == true, directories[watch]) }
                if anchored { (changed, moved) = (true, true) }
                if mask & UInt32(IN_IGNORED) != 0 {
                    lock.withLock { (directories[watch], anchors[watch]) = (nil, nil) }
                    continue
                }
                guard let parent, name != ".git" else { continue }
                changed = true
                if mask & UInt32(IN_ISDIR) != 0 && mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 {
                    try? watchTree(parent + "/" + name)
                }
            }
            if moved { rewatch() }
            if changed { onChange() }
        }
        done.signal()
    }
}

/// The spec directory cannot be watched.
public struct WatchError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
