import Foundation
import Glibc

/// Watches a spec directory and everything below it with inotify, and calls
/// `onChange` for any file written, created, deleted or renamed, including the
/// atomic renames editors save with and the many files `git checkout` swaps at once
/// (debouncing is the caller's). Directories created later are watched as they
/// appear; `.git` is not watched.
public final class SpecWatcher: @unchecked Sendable {
    private let fd: Int32
    private let lock = NSLock()
    private var directories: [Int32: String] = [:]
    private var running = true
    private let done = DispatchSemaphore(value: 0)
    private let onChange: @Sendable () -> Void

    static let mask = UInt32(IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF
                             | IN_MOVE_SELF | IN_ATTRIB)

    public init(_ root: String, onChange: @escaping @Sendable () -> Void) throws {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw WatchError("inotify_init1 failed: \(String(cString: strerror(errno)))") }
        self.onChange = onChange
        try watchTree(root)
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

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while lock.withLock({ running }) {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 200) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { continue }
            var changed = false
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= count {
                let (watch, mask, length, name) = buffer.withUnsafeBytes { raw -> (Int32, UInt32, Int, String) in
                    let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    let start = offset + MemoryLayout<inotify_event>.size
                    let bytes = raw[start..<start + Int(event.len)].prefix { $0 != 0 }
                    return (event.wd, event.mask, Int(event.len), String(decoding: bytes, as: UTF8.self))
                }
                offset += MemoryLayout<inotify_event>.size + length
                if name == ".git" { continue }
                changed = true
                if mask & UInt32(IN_ISDIR) != 0 && mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0,
                   let parent = lock.withLock({ directories[watch] }) {
                    try? watchTree(parent + "/" + name)
                }
                if mask & UInt32(IN_IGNORED) != 0 { lock.withLock { _ = directories.removeValue(forKey: watch) } }
            }
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
