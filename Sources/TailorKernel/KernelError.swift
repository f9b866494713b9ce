import Glibc

/// A failed kernel operation, said so that an operator can act on it: what was
/// attempted, on which object, what the kernel answered, and what to do.
public struct KernelError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is, for callers that react differently to each.
    public enum Code: Sendable, Equatable {
        case notFound
        case permissionDenied
        case mapFull(entries: Int, capacity: Int)
        case wrongType
        case verifierRejected
        /// The program attached is not the one the caller expected to replace.
        case staleExpectation
        case interfaceNotFound
        case alreadyExists
        case invalidArgument
        case other
    }

    public var code: Code
    /// The operation, in the field's words: "load program", "update map entry".
    public var operation: String
    /// The object it was applied to: "map counters", "interface veth0 in netns lab".
    public var object: String
    /// The kernel's errno, or 0 when the error was found in user space.
    public var errno: Int32
    /// What went wrong beyond the errno, and what to do about it.
    public var detail: String?
    /// The verifier's log, trimmed to the failing part, when a program was rejected.
    public var verifierLog: String?

    public init(
        _ code: Code, operation: String, object: String, errno: Int32 = 0,
        detail: String? = nil, verifierLog: String? = nil
    ) {
        self.code = code
        self.operation = operation
        self.object = object
        self.errno = errno
        self.detail = detail
        self.verifierLog = verifierLog
    }

    public var description: String {
        var text = "\(operation) \(object) failed"
        if errno != 0 { text += ": \(String(cString: strerror(errno))) (errno \(errno))" }
        if let detail { text += ": \(detail)" }
        if let verifierLog { text += "\nverifier log (end):\n\(verifierLog)" }
        return text
    }

    /// The code a bare errno stands for when nothing more specific is known.
    public static func code(for errno: Int32) -> Code {
        switch errno {
        case ENOENT: .notFound
        case EPERM, EACCES: .permissionDenied
        case EEXIST: .alreadyExists
        case EINVAL: .invalidArgument
        case ENODEV, ENXIO: .interfaceNotFound
        default: .other
        }
    }
}

// The errno funnel: every libbpf and syscall result passes through one of these.

/// What to do when the kernel refuses to open an object by id: only CAP_SYS_ADMIN may.
func byIDDetail(_ errno: Int32) -> String? {
    errno == EPERM ? "opening a BPF object by id needs CAP_SYS_ADMIN (docs/daemon.md, capabilities)" : nil
}

/// Checks a libbpf/syscall return value: negative means failure, with the errno
/// either returned negated (libbpf) or left in `errno` (plain syscalls, which return -1).
@discardableResult
func check(
    _ result: Int32, _ operation: @autoclosure () -> String, _ object: @autoclosure () -> String,
    detail: ((Int32) -> String?)? = nil
) throws(KernelError) -> Int32 {
    guard result < 0 else { return result }
    let err = result == -1 && Glibc.errno != 0 ? Glibc.errno : -result
    throw KernelError(
        KernelError.code(for: err), operation: operation(), object: object(), errno: err,
        detail: detail?(err))
}

/// Checks a libbpf pointer result: NULL means failure with the reason in `errno`.
func check<T>(
    _ pointer: T?, _ operation: @autoclosure () -> String, _ object: @autoclosure () -> String,
    detail: ((Int32) -> String?)? = nil
) throws(KernelError) -> T {
    guard let pointer else {
        let err = Glibc.errno
        throw KernelError(KernelError.code(for: err), operation: operation(), object: object(), errno: err,
                          detail: detail?(err))
    }
    return pointer
}
