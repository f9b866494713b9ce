import Testing
import TailorCubes
import TailorDatapath
import TailorLab
import TailorSpec
import TailorTestKit

@Suite("filter cube", .kernel)
struct FilterTests {
    static func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ len: Int) -> IPPrefix {
        IPPrefix(address: [a, b, c, d], length: len)
    }

    /// Rules and the verdict each packet must get: first match wins.
    static let rules: [Filter.Rule] = [
        .init(source: v4(10, 1, 0, 0, 16), destinationPorts: 22...22, action: .pass),
        .init(source: v4(10, 0, 0, 0, 8), action: .drop),
        .init(proto: 6, tcpFlags: (mask: 0x12, value: 0x02), action: .drop),     // bare SYN
        .init(proto: 17, destinationPorts: 5000...5100, action: .drop),
        .init(source: IPPrefix(address: [0xfd, 0] + Array(repeating: 0, count: 14), length: 8),
              destination: IPPrefix(address: [0xfd, 0, 0, 0x99] + Array(repeating: 0, count: 12), length: 32),
              action: .drop),
    ]

    static let cases: [(String, PacketBuilder, Bool)] = [
        ("10.1/16 ssh passes before 10/8 drops", PacketBuilder(from: "10.1.2.3", to: "192.0.2.1", .tcp(sport: 40000, dport: 22, flags: .ack)), true),
        ("10/8 otherwise drops", PacketBuilder(from: "10.1.2.3", to: "192.0.2.1", .tcp(sport: 40000, dport: 23, flags: .ack)), false),
        ("bare SYN drops", PacketBuilder(from: "192.0.2.7", to: "192.0.2.1", .tcp(sport: 1, dport: 80, flags: .syn)), false),
        ("SYN-ACK passes", PacketBuilder(from: "192.0.2.7", to: "192.0.2.1", .tcp(sport: 1, dport: 80, flags: [.syn, .ack])), true),
        ("UDP in the port range drops", PacketBuilder(from: "192.0.2.7", to: "192.0.2.1", .udp(sport: 1, dport: 5100)), false),
        ("UDP past the range passes", PacketBuilder(from: "192.0.2.7", to: "192.0.2.1", .udp(sport: 1, dport: 5101)), true),
        ("IPv6 prefix pair drops", PacketBuilder(from: "fd12::1", to: "fd00:99::2", .udp(sport: 1, dport: 2)), false),
        ("IPv6 outside the /32 passes", PacketBuilder(from: "fd12::1", to: "fd00:98::2", .udp(sport: 1, dport: 2)), true),
        ("ICMP passes by default", PacketBuilder(from: "192.0.2.7", to: "192.0.2.1", .icmpEcho(id: 1, sequence: 1)), true),
    ]

    @Test("rules match by prefix, protocol, port range and TCP flags; the first match wins")
    func firstMatchWins() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .xdp(.native))
                let chain = try Chain.create(
                    ChainSettings(name: "filter", hook: hook),
                    topology: .line([("f", try Filter.blueprint(rules: Self.rules, defaultAction: .pass))]),
                    pinRoot: root)
                defer { try? chain.destroy() }
                for (name, packet, passes) in Self.cases {
                    let verdict = try chain.rootProgram.testRun(packet.bytes).returnValue
                    #expect(verdict == (passes ? 2 : 1), "\(name)")
                }
                // The default action applies when no rule matches.
                try chain.apply(.line([("f", try Filter.blueprint(rules: [], defaultAction: .drop))]))
                let icmp = PacketBuilder(from: "192.0.2.7", to: "192.0.2.1", .icmpEcho(id: 1, sequence: 1))
                #expect(try chain.rootProgram.testRun(icmp.bytes).returnValue == 1)
            }
        }
    }

    @Test("more rules than a filter holds are refused with a pointer to the firewall")
    func tooManyRules() {
        let rules = Array(repeating: Filter.Rule(action: .drop), count: Filter.maxRules + 1)
        let error = #expect(throws: CubeConfigError.self) { try Filter.blueprint(rules: rules, defaultAction: .pass) }
        #expect(error?.message.contains("use the firewall cube") == true)
    }
}
