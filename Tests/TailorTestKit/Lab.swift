import TailorKernel
import TailorLab

/// A veth lab (TailorLab's `VethLab`) made for one test and removed after it,
/// also when the test fails.
public typealias Lab = VethLab

extension VethLab {
    /// Runs `body` with a fresh lab and removes the lab afterwards.
    public static func with<R>(ipv6: Bool = false, _ body: (Lab) async throws -> R) async throws -> R {
        try KernelEnvironment.require()
        let id = UniqueName.make("")
        let lab = try create(namespacePrefix: "tailor-t\(id)", interfacePrefix: "tt\(id)", ipv6: ipv6)
        do {
            let result = try await body(lab)
            lab.destroy()
            return result
        } catch {
            lab.destroy()
            throw error
        }
    }
}

/// A bpffs directory of its own for one test, removed with everything pinned in it.
public enum TestPinRoot {
    public static func with<R>(_ body: (PinRoot) async throws -> R) async throws -> R {
        try KernelEnvironment.require()
        let root = try PinRoot("/sys/fs/bpf/tailor-test-\(UniqueName.make(""))")
        try root.makeDirectory(root.path)
        do {
            let result = try await body(root)
            try root.removeTree(root.path)
            return result
        } catch {
            try? root.removeTree(root.path)
            throw error
        }
    }
}

extension RouterLab {
    /// Runs `body` with a fresh client-router-sink lab and removes it afterwards.
    public static func with<R>(_ body: (RouterLab) async throws -> R) async throws -> R {
        try KernelEnvironment.require()
        let id = UniqueName.make("")
        let lab = try create(namespacePrefix: "tailor-t\(id)", interfacePrefix: "tt\(id)")
        do {
            let result = try await body(lab)
            lab.destroy()
            return result
        } catch {
            lab.destroy()
            throw error
        }
    }
}
