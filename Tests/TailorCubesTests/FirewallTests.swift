import Foundation
import Testing
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorSpec
import TailorTestKit

@Suite("firewall cube", .kernel)
struct FirewallTests {
    static func rule(_ match: Filter.Rule, states: Set<Firewall.ConnectionState>? = nil,
                     _ action: Firewall.Action) -> Firewall.Rule {
        Firewall.Rule(match, states: states, action: action)
    }

    /// A chain of the firewall alone on XDP of the lab's b side.
    static func withFirewall(_ blueprint: CubeBlueprint, _ body: (Lab, Chain) async throws -> Void) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .xdp(.native))
                let chain = try Chain.create(ChainSettings(name: "fw", hook: hook),
                                             topology: .line([("fw", blueprint)]), pinRoot: root)
                defer { try? chain.destroy() }
                try await body(lab, chain)
            }
        }
    }

    static func accepts(_ chain: Chain, _ packet: PacketBuilder) throws -> Bool {
        try chain.rootProgram.testRun(packet.bytes).returnValue == 2
    }

    @Test("rules by prefix, protocol, ports, flags and state: the first match wins, else the policy")
    func firstMatchWins() async throws {
        let rules = [
            Self.rule(.init(proto: 6, source: IPPrefix("10.1.0.0/16"), destinationPorts: 22...22, action: .pass), .accept),
            Self.rule(.init(source: IPPrefix("10.0.0.0/8"), action: .pass), .drop),
            Self.rule(.init(proto: 6, destinationPorts: 80...80, action: .pass), states: [.new], .accept),
            Self.rule(.init(proto: 17, destinationPorts: 5000...5100, action: .pass), .accept),
            Self.rule(.init(destination: IPPrefix("fd00:99::/32"), action: .pass), .accept),
            Self.rule(.init(proto: 6, tcpFlags: (mask: 0x3f, value: 0), action: .pass), states: [.invalid], .accept),
        ]
        try await Self.withFirewall(try Firewall.blueprint(rules: rules, policy: .drop, acceptEstablished: false)) { _, chain in
            let cases: [(String, PacketBuilder, Bool)] = [
                ("10.1/16 ssh accepted before 10/8 drops",
                 PacketBuilder(from: "10.1.2.3", to: "192.0.2.1", .tcp(sport: 40000, dport: 22, flags: .syn)), true),
                ("10/8 otherwise dropped",
                 PacketBuilder(from: "10.1.2.3", to: "192.0.2.1", .tcp(sport: 40000, dport: 80, flags: .syn)), false),
                ("new web connection accepted",
                 PacketBuilder(from: "192.0.2.9", to: "192.0.2.1", .tcp(sport: 40001, dport: 80, flags: .syn)), true),
                ("web without a connection is invalid, not new: policy drops",
                 PacketBuilder(from: "192.0.2.9", to: "192.0.2.1", .tcp(sport: 40002, dport: 80, flags: .ack)), false),
                ("UDP range lower bound", PacketBuilder(from: "192.0.2.9", to: "192.0.2.1", .udp(sport: 1, dport: 5000)), true),
                ("UDP range upper bound", PacketBuilder(from: "192.0.2.9", to: "192.0.2.1", .udp(sport: 1, dport: 5100)), true),
                ("UDP past the range", PacketBuilder(from: "192.0.2.9", to: "192.0.2.1", .udp(sport: 1, dport: 5101)), false),
                ("IPv6 destination prefix", PacketBuilder(from: "fd12::1", to: "fd00:99::2", .udp(sport: 1, dport: 2)), true),
                ("IPv6 outside it", PacketBuilder(from: "fd12::1", to: "fd00:98::2", .udp(sport: 1, dport: 2)), false),
                ("a NULL scan is invalid and matches the last rule",
                 PacketBuilder(from: "192.0.2.9", to: "192.0.2.1", .tcp(sport: 1, dport: 9, flags: [])), true),
                ("ICMP falls to the policy", PacketBuilder(from: "192.0.2.7", to: "192.0.2.1", .icmpEcho(id: 1, sequence: 1)), false),
            ]
            for (name, packet, accepted) in cases {
                let verdict = try Self.accepts(chain, packet)
                #expect(verdict == accepted, "\(name)")
            }
        }
    }
}

/// The firewall against the reference model (iptables' first-match semantics) on
/// random rule sets and packets aimed at them.
@Suite("firewall cube: random rule sets against the model", .kernel)
struct FirewallModelTests {
    /// Endpoints of a packet's connection in either direction, so each packet is
    /// the first of its connection.
    static func connection(_ packet: PacketBuilder) -> [[UInt8]] {
        var ends = [packet.source.bytes, packet.destination.bytes]
        switch packet.transport {
        case .tcp(let sport, let dport, _), .udp(let sport, let dport):
            ends = [ends[0] + [UInt8(sport >> 8), UInt8(sport & 0xff)], ends[1] + [UInt8(dport >> 8), UInt8(dport & 0xff)]]
        default: break
        }
        return ends.sorted { $0.lexicographicallyPrecedes($1) }
    }

    @Test("every packet gets the model's verdict", arguments: 0..<40)
    func randomSets(seed: Int) async throws {
        var rng = SeededGenerator(seed: UInt64(seed))
        let count = [1, 5, 30, 100, 400, 1000][seed % 6]
        let set = FirewallRuleSet.random(count: count, using: &rng)
        try await FirewallTests.withFirewall(try set.blueprint) { _, chain in
            var seen: Set<[[UInt8]]> = []
            var mismatches: [String] = []
            for _ in 0..<300 {
                let packet = set.packet(using: &rng)
                guard seen.insert(Self.connection(packet)).inserted else { continue }
                let accepted = try FirewallTests.accepts(chain, packet)
                if accepted != FirewallModel.accepts(set, packet) {
                    let state = FirewallModel.firstPacketState(packet)
                    mismatches.append("\(packet) state \(state): tailor \(accepted ? "accepts" : "drops"), "
                        + "model rule \(FirewallModel.firstMatch(set.rules, packet, state: state).map(String.init) ?? "none")")
                }
            }
            #expect(mismatches.isEmpty, "seed \(seed), \(count) rules: \(mismatches.prefix(5).joined(separator: "\n"))")
        }
    }
}
