import Foundation
import TailorKernel

/// Two network namespaces joined by a veth pair, created for one test and removed
/// after it, also when it fails:
///
///     [ns a] a.interface 10.99.0.1 <--veth--> b.interface 10.99.0.2 [ns b]
///
/// Each side has a permanent neighbour entry for the other and IPv6 off (unless
/// asked for), so the only packets on the wire are the ones a test sends: counters
/// can be checked exactly.
public struct Lab: Sendable {
    /// One end of the pair.
    public struct Side: Sendable {
        public let namespace: NetworkNamespace
        public let interfaceName: String
        public let ipv4: String
        public let ipv6: String
        public let mac: String

        /// The veth end, resolved in its namespace.
        public func interface() throws -> NetworkInterface {
            try NetworkInterface.lookup(interfaceName, in: namespace)
        }
    }

    public let a: Side
    public let b: Side

    /// Runs `body` with a fresh lab and removes the lab afterwards.
    public static func with<R>(ipv6: Bool = false, _ body: (Lab) async throws -> R) async throws -> R {
        try KernelEnvironment.require()
        let lab = try create(ipv6: ipv6)
        do {
            let result = try await body(lab)
            lab.destroy()
            return result
        } catch {
            lab.destroy()
            throw error
        }
    }

    private static func create(ipv6: Bool) throws -> Lab {
        let id = UniqueName.make("")
        let a = Side(namespace: .named("tailor-t\(id)a"), interfaceName: "tt\(id)a",
                     ipv4: "10.99.0.1", ipv6: "fd00:99::1", mac: "02:00:00:99:00:01")
        let b = Side(namespace: .named("tailor-t\(id)b"), interfaceName: "tt\(id)b",
                     ipv4: "10.99.0.2", ipv6: "fd00:99::2", mac: "02:00:00:99:00:02")
        let lab = Lab(a: a, b: b)
        do {
            for side in [a, b] { try run("ip", ["netns", "add", side.namespace.name ?? ""]) }
            try run("ip", ["-n", a.namespace.name ?? "", "link", "add", a.interfaceName, "address", a.mac,
                           "type", "veth", "peer", "name", b.interfaceName, "address", b.mac,
                           "netns", b.namespace.name ?? ""])
            for (side, peer) in [(a, b), (b, a)] {
                let ns = side.namespace.name ?? ""
                try run("ip", ["netns", "exec", ns, "sysctl", "-qw",
                               "net.ipv6.conf.\(side.interfaceName).disable_ipv6=\(ipv6 ? 0 : 1)"])
                try run("ip", ["-n", ns, "addr", "add", "\(side.ipv4)/24", "dev", side.interfaceName])
                try run("ip", ["-n", ns, "neigh", "add", peer.ipv4, "lladdr", peer.mac, "nud", "permanent",
                               "dev", side.interfaceName])
                if ipv6 {
                    try run("ip", ["-n", ns, "addr", "add", "\(side.ipv6)/64", "dev", side.interfaceName, "nodad"])
                    try run("ip", ["-n", ns, "neigh", "add", peer.ipv6, "lladdr", peer.mac, "nud", "permanent",
                                   "dev", side.interfaceName])
                }
                try run("ip", ["-n", ns, "link", "set", "lo", "up"])
                try run("ip", ["-n", ns, "link", "set", side.interfaceName, "up"])
            }
        } catch {
            lab.destroy()
            throw error
        }
        return lab
    }

    /// Deletes both namespaces, which deletes the veth pair and every program attached to it.
    public func destroy() {
        for side in [a, b] { _ = try? run("ip", ["netns", "delete", side.namespace.name ?? ""]) }
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
