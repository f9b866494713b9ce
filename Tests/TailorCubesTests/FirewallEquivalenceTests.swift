import Foundation
import Testing
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorReference
import TailorTestKit

/// The firewall cube against real iptables and nftables: random ordered rule sets
/// go into the FORWARD chain of a router namespace (iptables and ip6tables), into an
/// nftables forward chain there, and into a tailor firewall on the router's
/// client-side interface; the same packets are sent from the client through each,
/// and the sink must see the same ones.
@Suite("firewall cube: equivalence with iptables and nftables", .kernel)
struct FirewallEquivalenceTests {
    /// Seeds that once found a difference, kept so they are always run again.
    static let fixedSeeds: [UInt64] = {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/firewall-equivalence-seeds.txt")
        let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { UInt64($0.split(separator: "#").first?.trimmingCharacters(in: .whitespaces) ?? "") }
    }()

    static let sizes = [1, 3, 10, 30, 100, 300, 1000]
    static let packetsPerSet = 120

    /// 216 random sets in 4 groups (each group a lab of its own, run in parallel), and the kept seeds.
    static let groups: [[UInt64]] = (0..<4).map { group in (0..<54).map { UInt64(1000 + group * 54 + $0) } } + [fixedSeeds]

    @Test("all three let exactly the same packets through", arguments: groups.indices)
    func sameVerdicts(group: Int) async throws {
        try await RouterLab.with(linuxForwards: true) { lab in
            try await TestPinRoot.with { root in
                let sender = try PacketSocket(on: lab.client)
                let sink = try PacketSocket(on: lab.server)
                var differences: [String] = []
                for seed in Self.groups[group] {
                    differences += try Self.compare(seed: seed, lab: lab, root: root, sender: sender, sink: sink)
                }
                #expect(differences.isEmpty, "\(differences.count) differences:\n\(differences.prefix(10).joined(separator: "\n"))")
            }
        }
    }

    /// Runs one seed's set through both; returns a line per packet they disagree on.
    static func compare(seed: UInt64, lab: RouterLab, root: PinRoot, sender: PacketSocket, sink: PacketSocket) throws -> [String] {
        var rng = SeededGenerator(seed: seed)
        let set = FirewallRuleSet.random(count: sizes[Int(seed % UInt64(sizes.count))], using: &rng)
        var packets: [PacketBuilder] = []
        var connections: Set<[[UInt8]]> = []
        while packets.count < packetsPerSet {
            var packet = set.packet(using: &rng)
            guard connections.insert(FirewallModelTests.connection(packet)).inserted else { continue }
            packet.payload = be32(UInt32(packets.count)) + be32(UInt32(truncatingIfNeeded: seed))
            packet.sourceMAC = lab.client.macBytes
            packet.destinationMAC = lab.routerClientSide.macBytes
            packets.append(packet)
        }

        let router = lab.routerClientSide.namespaceName
        try run("ip", ["netns", "exec", router, "iptables-restore"], input: set.iptablesRestore(ipv6: false))
        try run("ip", ["netns", "exec", router, "ip6tables-restore"], input: set.iptablesRestore(ipv6: true))
        // As the firewall cube: only a SYN opens a TCP connection (the module is loaded by now).
        try run("ip", ["netns", "exec", router, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"])
        let byIptables = try through(packets, sender: sender, sink: sink, seed: seed)
        let open = FirewallRuleSet(rules: [], policy: .accept, acceptEstablished: false)
        try run("ip", ["netns", "exec", router, "iptables-restore"], input: open.iptablesRestore(ipv6: false))
        try run("ip", ["netns", "exec", router, "ip6tables-restore"], input: open.iptablesRestore(ipv6: true))

        try run("ip", ["netns", "exec", router, "nft", "-f", "-"], input: set.nftScript(table: "tailor_eq"))
        let byNftables = try through(packets, sender: sender, sink: sink, seed: seed)
        try run("ip", ["netns", "exec", router, "nft", "delete", "table", "inet", "tailor_eq"])

        let hook = ChainHook(interface: lab.routerClientSide.interfaceName, namespace: router, kind: .xdp(.native))
        let chain = try Chain.create(ChainSettings(name: "fw\(seed)", hook: hook), topology: .line([("fw", try set.blueprint)]),
                                     pinRoot: root)
        let byTailor: Set<Int>
        do {
            byTailor = try through(packets, sender: sender, sink: sink, seed: seed)
            try chain.destroy()
        } catch {
            try? chain.destroy()
            throw error
        }

        let verdict = { (seen: Set<Int>, index: Int) in seen.contains(index) ? "accepts" : "drops" }
        return packets.indices.filter {
            byIptables.contains($0) != byTailor.contains($0) || byNftables.contains($0) != byTailor.contains($0)
        }.map { index in
            let packet = packets[index]
            let state = FirewallModel.firstPacketState(packet)
            let rule = FirewallModel.firstMatch(set.rules, packet, state: state)
            return "seed \(seed) (\(set.rules.count) rules): \(packet) [\(state)]: iptables \(verdict(byIptables, index)), "
                + "nftables \(verdict(byNftables, index)), tailor \(verdict(byTailor, index)), "
                + "model: rule \(rule.map { "\($0 + 1) \(set.rules[$0])" } ?? "none, policy \(set.policy)")"
        }
    }

    /// Sends `packets` from the client; returns the indices of those the sink saw.
    static func through(_ packets: [PacketBuilder], sender: PacketSocket, sink: PacketSocket, seed: UInt64) throws -> Set<Int> {
        _ = try sink.drain(quiet: .milliseconds(1))
        for packet in packets { try sender.send(packet.bytes) }
        var seen: Set<Int> = []
        let tag = be32(UInt32(truncatingIfNeeded: seed))
        for frame in try sink.drain(quiet: .milliseconds(60)) where frame.count >= 8 && Array(frame.suffix(4)) == tag {
            let index = frame.suffix(8).prefix(4).reduce(0) { $0 << 8 | Int($1) }
            seen.insert(index)
        }
        return seen
    }

    static func be32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) } }
}
