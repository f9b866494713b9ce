import Foundation
import Testing
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorReference
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
            Self.rule(.init(proto: 58, action: .pass), states: [.untracked], .accept),
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
                ("IPv6 neighbour discovery is untracked, not invalid (Linux's conntrack)",
                 PacketBuilder(from: "fd12::1", to: "fd00:98::2", .icmp(type: 135, code: 0, rest: 0)), true),
                ("an unasked ICMPv6 echo reply is invalid",
                 PacketBuilder(from: "fd12::1", to: "fd00:98::2", .icmp(type: 129, code: 0, rest: 0)), false),
            ]
            for (name, packet, accepted) in cases {
                let verdict = try Self.accepts(chain, packet)
                #expect(verdict == accepted, "\(name)")
            }
        }
    }
}

extension FirewallTests {
    /// The TCP state (enum tailor_tcp_state) and seen-reply flag of the only connection.
    static func connection(_ chain: Chain) throws -> (state: UInt8, seenReply: Bool)? {
        let entries = try #require(chain.map("conntrack", of: "fw")).lookupBatch()
        #expect(entries.count <= 1)
        return entries.first.map { ($0.value[8], $0.value[10] == 1) }
    }

    @Test("conntrack follows TCP through handshake, FIN and RST; UDP and ICMP replies are established, quoted errors related")
    func connectionTracking() async throws {
        let rules = [Self.rule(.init(proto: 6, destinationPorts: 80...80, action: .pass), states: [.new], .accept),
                     Self.rule(.init(proto: 17, destinationPorts: 53...53, action: .pass), .accept),
                     Self.rule(.init(proto: 1, action: .pass), states: [.new], .accept)]
        try await Self.withFirewall(try Firewall.blueprint(rules: rules, policy: .drop)) { _, chain in
            let client = "192.0.2.10", server = "198.51.100.80"
            let out = { (flags: PacketBuilder.TCPFlags) in PacketBuilder(from: client, to: server, .tcp(sport: 40000, dport: 80, flags: flags)) }
            let back = { (flags: PacketBuilder.TCPFlags) in PacketBuilder(from: server, to: client, .tcp(sport: 80, dport: 40000, flags: flags)) }
            // Nothing but a SYN opens; a reply before the SYN is invalid.
            #expect(try !Self.accepts(chain, back([.syn, .ack])))
            #expect(try Self.connection(chain) == nil)
            let steps: [(PacketBuilder, Bool, UInt8, Bool)] = [
                (out(.syn), true, 1, false),            // SYN_SENT
                (out(.syn), true, 1, false),            // a retransmitted SYN is still new
                (back([.syn, .ack]), true, 2, true),    // SYN_RECV, a reply: established
                (out(.ack), true, 3, true),             // ESTABLISHED
                (back([.psh, .ack]), true, 3, true),
                (out([.fin, .ack]), true, 4, true),     // FIN_WAIT
                (back([.fin, .ack]), true, 5, true),    // LAST_ACK
                (out(.ack), true, 6, true),             // TIME_WAIT
            ]
            for (number, (packet, accepted, state, seenReply)) in steps.enumerated() {
                let verdict = try Self.accepts(chain, packet)
                #expect(verdict == accepted, "step \(number + 1): \(packet)")
                let entry = try Self.connection(chain)
                #expect(entry?.state == state && entry?.seenReply == seenReply, "step \(number + 1): \(String(describing: entry))")
            }
            // A new SYN on a connection in TIME_WAIT opens it again; a RST closes it.
            #expect(try Self.accepts(chain, out(.syn)))
            #expect(try Self.connection(chain)?.state == 1)
            #expect(try Self.accepts(chain, back([.rst, .ack])))
            #expect(try Self.connection(chain)?.state == 7)
            // A flag combination conntrack never accepts is invalid even inside a connection.
            #expect(try !Self.accepts(chain, out([.syn, .fin])))

            // An ICMP error quoting the connection's packet is related; quoting another, invalid.
            let quoted = Array(out(.ack).bytes.dropFirst(14).prefix(28))
            let related = PacketBuilder(from: "203.0.113.1", to: client, .icmp(type: 3, code: 1, rest: 0), payload: quoted)
            #expect(try Self.accepts(chain, related))
            let stranger = Array(PacketBuilder(from: client, to: server, .tcp(sport: 40001, dport: 80, flags: .ack)).bytes
                .dropFirst(14).prefix(28))
            #expect(try !Self.accepts(chain, PacketBuilder(from: "203.0.113.1", to: client, .icmp(type: 3, code: 1, rest: 0),
                                                         payload: stranger)))
            // UDP: the answer to a query is established; an unasked datagram from the server port is not.
            #expect(try Self.accepts(chain, PacketBuilder(from: client, to: server, .udp(sport: 5353, dport: 53))))
            #expect(try Self.accepts(chain, PacketBuilder(from: server, to: client, .udp(sport: 53, dport: 5353))))
            #expect(try !Self.accepts(chain, PacketBuilder(from: server, to: client, .udp(sport: 53, dport: 5354))))
            // ICMP: the echo reply to a request is established; an unasked reply is invalid.
            #expect(try Self.accepts(chain, PacketBuilder(from: client, to: server, .icmp(type: 8, code: 0, rest: 0x0007_0001))))
            #expect(try Self.accepts(chain, PacketBuilder(from: server, to: client, .icmp(type: 0, code: 0, rest: 0x0007_0001))))
            #expect(try !Self.accepts(chain, PacketBuilder(from: server, to: client, .icmp(type: 0, code: 0, rest: 0x0008_0001))))
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

/// The firewall on real TCP over the lab's veth pair: conntrack across two chains
/// of one zone, established connections through a rule change.
@Suite("firewall cube: real connections", .kernel)
struct FirewallConnectionTests {
    /// b's inbound rules: new TCP connections to `port` only.
    static func inbound(_ port: UInt16) throws -> CubeBlueprint {
        try Firewall.blueprint(rules: [FirewallTests.rule(.init(proto: 6, destinationPorts: port...port, action: .pass),
                                                          states: [.new], .accept)],
                               policy: .drop, zone: "host-b")
    }

    /// `kind` on the lab's b side, where the server of the tests is.
    static func hook(_ lab: Lab, _ kind: ChainHook.Kind) -> ChainHook {
        ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: kind)
    }

    @Test("XDP ingress with rules and TC egress tracking share a zone: replies and established connections pass, and survive new rules and a new object")
    func hostFirewall() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let ingress = try Chain.create(ChainSettings(name: "in", hook: Self.hook(lab, .xdp(.native))),
                                               topology: .line([("fw", try Self.inbound(8080))]), pinRoot: root)
                defer { try? ingress.destroy() }
                let track = try Firewall.blueprint(rules: [], policy: .accept, zone: "host-b")
                let egress = try Chain.create(ChainSettings(name: "out", hook: Self.hook(lab, .tcEgress)),
                                              topology: .line([("track", track)]), pinRoot: root)
                defer { try? egress.destroy() }
                #expect(ingress.map("conntrack", of: "fw")?.info.id == egress.map("conntrack", of: "track")?.info.id)

                let web = try #require(try TCPConnection.open(from: lab.a, to: lab.b, port: 8080))
                #expect(try web.roundTrip())
                #expect(try TCPConnection.open(from: lab.a, to: lab.b, port: 8081) == nil)
                // b's own connection out: its SYN-ACK comes in as a reply, accepted as established.
                let outbound = try #require(try TCPConnection.open(from: lab.b, to: lab.a, port: 7000))
                #expect(try outbound.roundTrip())

                // New rules: 8080 closed to new connections, 8081 open. The instance is
                // replaced and keeps the zone's connection table.
                try ingress.apply(.line([("fw", try Self.inbound(8081))]))
                #expect(ingress.map("conntrack", of: "fw")?.info.id == egress.map("conntrack", of: "track")?.info.id)
                #expect(try web.roundTrip())
                #expect(try outbound.roundTrip())
                #expect(try TCPConnection.open(from: lab.a, to: lab.b, port: 8080) == nil)
                let ssh = try TCPConnection.open(from: lab.a, to: lab.b, port: 8081)
                #expect(try ssh?.roundTrip() == true)

                // A new release of the object with new rules again: every connection open so far keeps flowing.
                let rules = try Self.inbound(8082)
                let release = CubeBlueprint(type: "firewall", object: try Fixtures.testObject("firewall_v2"),
                                            rodata: rules.rodata, tables: rules.tables, sharedState: rules.sharedState)
                #expect(release.objectDigest != rules.objectDigest)
                try ingress.apply(.line([("fw", release)]))
                #expect(try web.roundTrip())
                #expect(try outbound.roundTrip())
                #expect(try ssh?.roundTrip() == true)
                #expect(try TCPConnection.open(from: lab.a, to: lab.b, port: 8081) == nil)
                #expect(try TCPConnection.open(from: lab.a, to: lab.b, port: 8082)?.roundTrip() == true)
            }
        }
    }
}

extension FirewallConnectionTests {
    @Test("a cube joining a zone whose map has another layout is refused in the plan and never built")
    func zoneLayoutRefused() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let firewall = try Chain.create(
                    ChainSettings(name: "in", hook: Self.hook(lab, .xdp(.native))),
                    topology: .line([("fw", try Firewall.blueprint(rules: [], policy: .accept, zone: "z"))]), pinRoot: root)
                defer { try? firewall.destroy() }
                let other = CubeBlueprint(type: "object", object: try Fixtures.testObject("zone_other"),
                                          sharedState: ["conntrack": "z"])
                let settings = ChainSettings(name: "out", hook: Self.hook(lab, .tcEgress))
                let refusals = try Chain.verify(settings, topology: .line([("o", other)]), zones: StateZones(pinRoot: root))
                #expect(refusals.count == 1)
                #expect(refusals.first?.contains("state map conntrack is shared in zone z, whose map has another layout") == true)
                #expect(throws: DatapathError.self) {
                    try Chain.create(settings, topology: .line([("o", other)]), pinRoot: root)
                }
                #expect(!FileManager.default.fileExists(atPath: root.appending("out")))
                #expect(try Self.hook(lab, .tcEgress).attachedProgram() == nil)
                // In a zone of its own it is fine.
                var alone = other
                alone.sharedState = ["conntrack": "elsewhere"]
                let chain = try Chain.create(settings, topology: .line([("o", alone)]), pinRoot: root)
                try chain.destroy()
            }
        }
    }
}
