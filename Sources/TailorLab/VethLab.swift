import Foundation
import TailorKernel

/// Two network namespaces joined by a veth pair: the built-in lab that `tailor lab`,
/// the benchmarks and the kernel tests run chains on.
///
///     [ns a] a.interface 10.99.0.1 <--veth--> b.interface 10.99.0.2 [ns b]
///
/// Each side has a permanent neighbour entry for the other and IPv6 off unless
/// asked for, so the only packets on the wire are the ones sent on purpose:
/// counters can be checked exactly. Namespaces isolate the addresses, so many
/// labs run side by side.
public struct VethLab: Sendable {
    /// One end of the pair.
    public struct Side: Sendable {
        public let namespace: NetworkNamespace
        public let interfaceName: String
        public let ipv4: String
        public let ipv6: String
        public let mac: String

        /// The MAC address as bytes.
        public var macBytes: [UInt8] { mac.split(separator: ":").compactMap { UInt8($0, radix: 16) } }

        /// The `ip netns` name of the side's namespace.
        public var namespaceName: String { namespace.name ?? namespace.path }

        /// The veth end, resolved in its namespace.
        public func interface() throws -> NetworkInterface {
            try NetworkInterface.lookup(interfaceName, in: namespace)
        }
    }

    public let a: Side
    public let b: Side

    /// The lab with these names, whether or not it exists (to remove one).
    public static func named(namespacePrefix: String, interfacePrefix: String) -> VethLab {
        VethLab(a: Side(namespace: .named(namespacePrefix + "a"), interfaceName: interfacePrefix + "a",
                        ipv4: "10.99.0.1", ipv6: "fd00:99::1", mac: "02:00:00:99:00:01"),
                b: Side(namespace: .named(namespacePrefix + "b"), interfaceName: interfacePrefix + "b",
                        ipv4: "10.99.0.2", ipv6: "fd00:99::2", mac: "02:00:00:99:00:02"))
    }

    /// Creates namespaces `<namespacePrefix>a`/`b` and veth ends `<interfacePrefix>a`/`b`
    /// (interface names have at most 15 characters). Removes what it made if a step fails.
    public static func create(namespacePrefix: String, interfacePrefix: String, ipv6: Bool = false) throws -> VethLab {
        let lab = named(namespacePrefix: namespacePrefix, interfacePrefix: interfacePrefix)
        do {
            for side in [lab.a, lab.b] { try run("ip", ["netns", "add", side.namespaceName]) }
            try connect(lab.a, lab.b, ipv6: ipv6)
        } catch {
            lab.destroy()
            throw error
        }
        return lab
    }

    /// Joins two existing namespaces by a veth pair with `a` and `b` as its ends:
    /// addresses, permanent neighbour entries for each other (unless not
    /// `neighbours`: then ARP and ND find them), both ends and loopback up; IPv6 on
    /// the ends only with `ipv6`.
    public static func connect(_ a: Side, _ b: Side, ipv6: Bool, neighbours: Bool = true) throws {
        try run("ip", ["-n", a.namespaceName, "link", "add", a.interfaceName, "address", a.mac,
                       "type", "veth", "peer", "name", b.interfaceName, "address", b.mac,
                       "netns", b.namespaceName])
        for (side, peer) in [(a, b), (b, a)] {
            let ns = side.namespaceName
            try run("ip", ["netns", "exec", ns, "sysctl", "-qw",
                           "net.ipv6.conf.\(side.interfaceName).disable_ipv6=\(ipv6 ? 0 : 1)"])
            try run("ip", ["-n", ns, "addr", "add", "\(side.ipv4)/24", "dev", side.interfaceName])
            if neighbours {
                try run("ip", ["-n", ns, "neigh", "add", peer.ipv4, "lladdr", peer.mac, "nud", "permanent",
                               "dev", side.interfaceName])
            }
            if ipv6 {
                try run("ip", ["-n", ns, "addr", "add", "\(side.ipv6)/64", "dev", side.interfaceName, "nodad"])
                if neighbours {
                    try run("ip", ["-n", ns, "neigh", "add", peer.ipv6, "lladdr", peer.mac, "nud", "permanent",
                                   "dev", side.interfaceName])
                }
            }
            try run("ip", ["-n", ns, "link", "set", "lo", "up"])
            try run("ip", ["-n", ns, "link", "set", side.interfaceName, "up"])
        }
    }

    /// A spec of chain `name` on TC ingress of side b: a filter dropping UDP to `port`,
    /// then a counter. Benchmarks and tests edit it (another port replaces the filter).
    public func filterChainSpec(_ name: String = "edge", droppingUDP port: Int) -> String {
        """
        apiVersion: tailor/v1
        kind: Chain
        metadata:
          name: \(name)
        spec:
          attach: {interface: \(b.interfaceName), namespace: \(b.namespaceName), hook: tc-ingress}
          cubes:
            - name: acl
              type: filter
              config:
                rules:
                  - {match: {proto: udp, dport: \(port)}, action: drop}
            - {name: count, type: counter}

        """
    }

    /// Deletes both namespaces, which deletes the veth pair and every program attached to it.
    public func destroy() {
        for side in [a, b] { _ = try? run("ip", ["netns", "delete", side.namespaceName]) }
    }
}
