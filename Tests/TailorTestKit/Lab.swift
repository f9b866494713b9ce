import TailorKernel
import TailorLab

/// A veth lab (TailorLab's `VethLab`) made for one test and removed after it,
/// also when the test fails.
public typealias Lab = VethLab

/// Runs `body` with what `make` creates from a unique name, and `remove`s it
/// afterwards, also when `body` throws.
func withTemporary<T, R>(_ make: (String) throws -> T, remove: (T) throws -> Void,
                         _ body: (T) async throws -> R) async throws -> R {
    try KernelEnvironment.require()
    let made = try make(UniqueName.make(""))
    do {
        let result = try await body(made)
        try remove(made)
        return result
    } catch {
        try? remove(made)
        throw error
    }
}

extension VethLab {
    /// Runs `body` with a fresh lab and removes the lab afterwards.
    public static func with<R>(ipv6: Bool = false, _ body: (Lab) async throws -> R) async throws -> R {
        try await withTemporary({ try create(namespacePrefix: "tailor-t\($0)", interfacePrefix: "tt\($0)", ipv6: ipv6) },
                                remove: { $0.destroy() }, body)
    }
}

extension RouterLab {
    /// Runs `body` with a fresh client-router-server lab, Linux forwarding in the
    /// router or not, and removes it afterwards.
    public static func with<R>(linuxForwards: Bool, _ body: (RouterLab) async throws -> R) async throws -> R {
        try await withTemporary({
            try create(namespacePrefix: "tailor-t\($0)", interfacePrefix: "tt\($0)", linuxForwards: linuxForwards)
        }, remove: { $0.destroy() }, body)
    }
}

/// A bpffs directory of its own for one test, removed with everything pinned in it.
public enum TestPinRoot {
    public static func with<R>(_ body: (PinRoot) async throws -> R) async throws -> R {
        try await withTemporary({ name in
            let root = try PinRoot("/sys/fs/bpf/tailor-test-\(name)")
            try root.makeDirectory(root.path)
            return root
        }, remove: { try $0.removeTree($0.path) }, body)
    }
}
