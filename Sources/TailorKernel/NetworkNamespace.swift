import CShims
import Glibc

/// A network namespace, entered on the calling thread for netlink and attach calls.
///
/// `ip netns exec` remounts /sys and hides bpffs pins, so tailor never re-executes
/// itself in a namespace: it moves one thread in with setns(2), does the work
/// synchronously, and moves the thread back.
public struct NetworkNamespace: Sendable, Hashable, CustomStringConvertible {
    /// The namespace file: /run/netns/NAME for named namespaces.
    public let path: String
    /// The name `ip netns` knows it by, if any.
    public let name: String?

    /// The namespace `ip netns add NAME` created.
    public static func named(_ name: String) -> NetworkNamespace {
        NetworkNamespace(path: "/run/netns/\(name)", name: name)
    }

    /// A namespace given by any namespace file, such as /proc/PID/ns/net.
    public init(path: String) { self.init(path: path, name: nil) }

    private init(path: String, name: String?) {
        self.path = path
        self.name = name
    }

    public var description: String { name.map { "netns \($0)" } ?? "netns \(path)" }

    /// Runs `body` with the calling thread inside this namespace, then returns the
    /// thread to the namespace it was in, also when `body` throws. `body` is
    /// synchronous on purpose: a suspension could resume on another thread.
    public func run<R>(_ body: () throws -> R) throws -> R {
        let target = open(path, O_RDONLY | O_CLOEXEC)
        guard target >= 0 else {
            let err = errno
            throw KernelError(err == ENOENT ? .notFound : KernelError.code(for: err),
                              operation: "open", object: description, errno: err,
                              detail: err == ENOENT ? "no such network namespace" : nil)
        }
        defer { close(target) }
        let original = try check(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC),
                                 "open current network namespace of", "this thread")
        defer { close(original) }
        try check(tailor_setns(target, tailor_clone_newnet()), "enter", description)
        defer {
            // A thread left in the wrong namespace would attach the next chain to the
            // wrong interface: there is no safe way to go on.
            guard tailor_setns(original, tailor_clone_newnet()) == 0 else {
                fatalError("cannot return to the original network namespace from \(description): errno \(errno)")
            }
        }
        return try body()
    }
}

/// A network interface, resolved by name in a namespace.
public struct NetworkInterface: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public let index: InterfaceIndex
    /// The namespace the index belongs to; nil for the caller's namespace.
    public let namespace: NetworkNamespace?

    /// Resolves `name` in `namespace` (or in the calling thread's namespace).
    public static func lookup(_ name: String, in namespace: NetworkNamespace? = nil) throws -> NetworkInterface {
        let resolve = { () throws(KernelError) -> InterfaceIndex in
            let index = if_nametoindex(name)
            guard index != 0 else {
                throw KernelError(.interfaceNotFound, operation: "find interface", object: name, errno: errno,
                                  detail: "no interface \(name) in \(namespace?.description ?? "this network namespace")")
            }
            return InterfaceIndex(rawValue: Int32(index))
        }
        let index = try namespace.map { try $0.run(resolve) } ?? resolve()
        return NetworkInterface(name: name, index: index, namespace: namespace)
    }

    /// Runs `body` inside the interface's namespace, where its index means this interface.
    public func run<R>(_ body: () throws -> R) throws -> R {
        try namespace.map { try $0.run(body) } ?? body()
    }

    public var description: String {
        namespace.map { "interface \(name) in \($0)" } ?? "interface \(name)"
    }
}
