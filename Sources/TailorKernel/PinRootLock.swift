import Glibc

/// An exclusive lock on a pin root (flock on its directory), so one controller at a
/// time changes the chains under it. Held while this value lives.
public final class PinRootLock {
    private let fd: Int32

    /// Takes the lock, waiting up to `timeout` seconds for another holder to finish.
    public init(_ root: PinRoot, timeout: Double = 30) throws(KernelError) {
        // The descriptor becomes this value's only once the lock is held: a class
        // whose stored properties are all set runs its deinit when init throws, and a
        // second close would close whatever another thread opened under that number.
        let fd = open(root.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw KernelError(KernelError.code(for: errno), operation: "open pin root", object: root.path, errno: errno)
        }
        let deadline = Double(time(nil)) + timeout
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK, Double(time(nil)) < deadline else {
                let err = errno
                close(fd)
                throw KernelError(.alreadyExists, operation: "lock pin root", object: root.path, errno: err,
                                  detail: "another tailor (apply or the daemon) holds it; waited \(Int(timeout)) s")
            }
            usleep(50_000)
        }
        self.fd = fd
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
