import Foundation
import Testing
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorSpec
import TailorTestKit

/// The nat cube on BPF_PROG_TEST_RUN, laid out as the gateway uses it: on the lab's b
/// side (the router's server-side interface), a nat on TC egress (POSTROUTING) and one
/// on TC ingress (PREROUTING), in one zone. Client 10.98.1.0/24 is masqueraded as
/// 10.98.2.1; the server is 10.98.2.2.
@Suite("nat cube", .kernel)
struct NATTests {
    static let (client, otherClient, gateway, server) = ("10.98.1.2", "10.98.1.3", "10.98.2.1", "10.98.2.2")
    static let payload = Array("tailor nat test payload".utf8)

    static func address(_ text: String) -> [UInt8] { PacketBuilder.Address(text).bytes }

    /// Masquerade of the client network to the gateway's address.
    static func masquerade(ports: PortRange = NAT.defaultPorts) -> NAT.SNATRule {
        NAT.SNATRule(source: IPPrefix("10.98.1.0/24")!, to: address(gateway), ports: ports)
    }

    /// 10.98.2.1:8080/tcp forwarded to the client's port 80.
    static let forward = NAT.DNATRule(destination: address(gateway), proto: .tcp, port: 8080, to: address(client),
                                      toPort: 80)

    /// The two chains of the gateway's server side, each holding `blueprint` as cube "nat".
    struct Gateway {
        let egress: Chain
        let ingress: Chain

        /// What `packet` leaves `chain` as, and the verdict (0 TC_ACT_OK, 2 TC_ACT_SHOT).
        func run(_ chain: Chain, _ packet: PacketBuilder) throws -> (verdict: UInt32, frame: Frame) {
            let result = try chain.rootProgram.testRun(packet.bytes)
            return (result.returnValue, Frame(result.output))
        }

        func out(_ packet: PacketBuilder) throws -> Frame {
            let (verdict, frame) = try run(egress, packet)
            #expect(verdict == 0, "\(packet) was dropped on egress")
            return frame
        }

        func into(_ packet: PacketBuilder) throws -> Frame {
            let (verdict, frame) = try run(ingress, packet)
            #expect(verdict == 0, "\(packet) was dropped on ingress")
            return frame
        }

        /// The sum over CPUs of entry `index` of per-CPU counter map `name` of the egress cube.
        func count(_ name: String, _ index: UInt32, in chain: Chain? = nil) throws -> UInt64 {
            let map = try #require((chain ?? egress).map(name, of: "nat"))
            let value = try map.lookup(withUnsafeBytes(of: index.littleEndian, Array.init)) ?? []
            return map.perCPUValues(value).reduce(0) { $0 + $1.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
        }
    }

    /// The gateway with `blueprint` in both chains, or `ingress` in the ingress chain.
    static func withGateway(_ blueprint: CubeBlueprint, ingress: CubeBlueprint? = nil,
                            _ body: (Gateway) async throws -> Void) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = { (kind: ChainHook.Kind) in
                    ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: kind)
                }
                let egress = try Chain.create(ChainSettings(name: "out", hook: hook(.tcEgress)),
                                              topology: .line([("nat", blueprint)]), pinRoot: root)
                defer { try? egress.destroy() }
                let ingress = try Chain.create(ChainSettings(name: "in", hook: hook(.tcIngress)),
                                               topology: .line([("nat", ingress ?? blueprint)]), pinRoot: root)
                defer { try? ingress.destroy() }
                try await body(Gateway(egress: egress, ingress: ingress))
            }
        }
    }

    static func udp(_ from: String, _ sport: UInt16, _ to: String, _ dport: UInt16) -> PacketBuilder {
        PacketBuilder(from: from, to: to, .udp(sport: sport, dport: dport), payload: payload)
    }

    static func tcp(_ from: String, _ sport: UInt16, _ to: String, _ dport: UInt16,
                    _ flags: PacketBuilder.TCPFlags) -> PacketBuilder {
        PacketBuilder(from: from, to: to, .tcp(sport: sport, dport: dport, flags: flags), payload: payload)
    }

    @Test("snat of UDP and TCP: the client leaves as the gateway with its own port, replies are put back, checksums hold")
    func snatUDPAndTCP() async throws {
        try await Self.withGateway(try NAT.blueprint(snat: [Self.masquerade()], zone: "gw")) { gw in
            let request = Self.udp(Self.client, 40000, Self.server, 53)
            let sent = try gw.out(request)
            #expect(sent.bytes == Self.udp(Self.gateway, 40000, Self.server, 53).bytes, "\(sent)")
            #expect(sent.checksumsHold)
            let answer = try gw.into(Self.udp(Self.server, 53, Self.gateway, 40000))
            #expect(answer.bytes == Self.udp(Self.server, 53, Self.client, 40000).bytes, "\(answer)")

            // A handshake: SYN out, SYN-ACK back, ACK out; the flow is established.
            let syn = try gw.out(Self.tcp(Self.client, 40001, Self.server, 80, .syn))
            #expect(syn.bytes == Self.tcp(Self.gateway, 40001, Self.server, 80, .syn).bytes, "\(syn)")
            let synAck = try gw.into(Self.tcp(Self.server, 80, Self.gateway, 40001, [.syn, .ack]))
            #expect(synAck.bytes == Self.tcp(Self.server, 80, Self.client, 40001, [.syn, .ack]).bytes, "\(synAck)")
            #expect(try gw.out(Self.tcp(Self.client, 40001, Self.server, 80, .ack)).checksumsHold)
            let flow = try #require(try gw.egress.map("translations", of: "nat")?
                .lookup(Self.key(proto: 6, Self.client, 40001, Self.server, 80)))
            #expect(flow[8] == 3, "TCP state \(flow[8]), not established")
            // A UDP datagram without a checksum keeps none.
            var bare = Self.udp(Self.client, 40002, Self.server, 53).bytes
            bare[40...41] = [0, 0]
            let out = try gw.egress.rootProgram.testRun(bare).output
            #expect(Array(out[40...41]) == [0, 0] && Frame(out).source == Self.gateway)
            #expect(try gw.count("outcomes", 2) == 3)   // three new snat flows
        }
    }

    /// A `struct nat_key` for a packet.
    static func key(proto: UInt8, _ from: String, _ sport: UInt16, _ to: String, _ dport: UInt16) -> [UInt8] {
        let pad = [UInt8](repeating: 0, count: 12)
        return [4, proto, 0, 0] + address(from) + pad + address(to) + pad + port(sport) + port(dport)
    }

    static func port(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }

    @Test("two clients with one source port get different ports; a port outside the range is replaced from it")
    func portsAllocated() async throws {
        try await Self.withGateway(try NAT.blueprint(snat: [Self.masquerade(ports: 20000...29999)], zone: "gw")) { gw in
            let first = try gw.out(Self.udp(Self.client, 20005, Self.server, 53))
            let second = try gw.out(Self.udp(Self.otherClient, 20005, Self.server, 53))
            #expect(first.sourcePort == 20005)
            #expect(second.sourcePort != 20005 && (20000...29999).contains(second.sourcePort), "\(second)")
            #expect(first.checksumsHold && second.checksumsHold)
            let third = try gw.out(Self.udp(Self.client, 40000, Self.server, 53))
            #expect((20000...29999).contains(third.sourcePort) && ![20005, second.sourcePort].contains(third.sourcePort))
            // Each reply reaches its own client and port.
            for (port, client, clientPort) in [(first.sourcePort, Self.client, 20005), (second.sourcePort, Self.otherClient, 20005),
                                               (third.sourcePort, Self.client, 40000)] as [(UInt16, String, UInt16)] {
                let back = try gw.into(Self.udp(Self.server, 53, Self.gateway, port))
                #expect(back.bytes == Self.udp(Self.server, 53, client, clientPort).bytes, "reply to \(port): \(back)")
            }
            // The same flow again keeps its port.
            #expect(try gw.out(Self.udp(Self.otherClient, 20005, Self.server, 53)).sourcePort == second.sourcePort)
        }
    }

    @Test("a range of two ports: a third flow to the same server is dropped and counted, one to another server is not")
    func portsExhausted() async throws {
        try await Self.withGateway(try NAT.blueprint(snat: [Self.masquerade(ports: 20000...20001)], zone: "gw")) { gw in
            let ports = try ["10.98.1.2", "10.98.1.3"].map { try gw.out(Self.udp($0, 5000, Self.server, 53)).sourcePort }
            #expect(Set(ports) == [20000, 20001])
            let (verdict, _) = try gw.run(gw.egress, Self.udp("10.98.1.4", 5000, Self.server, 53))
            #expect(verdict == 2, "a third flow was not dropped")
            #expect(try gw.count("drops", 0) == 1)
            #expect(try gw.egress.counters(of: "nat").dropped == 1)
            #expect((20000...20001).contains(try gw.out(Self.udp("10.98.1.4", 5000, "10.98.2.3", 53)).sourcePort))
        }
    }

    @Test("dnat forwards a port and puts its replies back; a rule change is made in place and keeps existing flows")
    func portForward() async throws {
        let blueprint = try NAT.blueprint(snat: [Self.masquerade()], dnat: [Self.forward], zone: "gw")
        try await Self.withGateway(blueprint) { gw in
            let syn = try gw.into(Self.tcp(Self.server, 45000, Self.gateway, 8080, .syn))
            #expect(syn.bytes == Self.tcp(Self.server, 45000, Self.client, 80, .syn).bytes, "\(syn)")
            let synAck = try gw.out(Self.tcp(Self.client, 80, Self.server, 45000, [.syn, .ack]))
            #expect(synAck.bytes == Self.tcp(Self.gateway, 8080, Self.server, 45000, [.syn, .ack]).bytes, "\(synAck)")
            #expect(try gw.count("outcomes", 1, in: gw.ingress) == 1)
            // Only tcp is forwarded.
            let datagram = Self.udp(Self.server, 45000, Self.gateway, 8080)
            #expect(try gw.into(datagram).bytes == datagram.bytes)

            // toPort 81: the table changes in place, the program stays; the open flow keeps port 80.
            let program = gw.ingress.record.cubes["nat"]?.program
            var moved = Self.forward
            moved.toPort = 81
            try gw.ingress.apply(.line([("nat", try NAT.blueprint(snat: [Self.masquerade()], dnat: [moved], zone: "gw"))]))
            #expect(gw.ingress.record.cubes["nat"]?.program == program)
            #expect(try gw.into(Self.tcp(Self.server, 45000, Self.gateway, 8080, .ack)).destinationPort == 80)
            #expect(try gw.into(Self.tcp(Self.server, 45001, Self.gateway, 8080, .syn)).destinationPort == 81)
        }
    }

    @Test("ICMP echo: the id is translated into the range and the reply put back")
    func echo() async throws {
        try await Self.withGateway(try NAT.blueprint(snat: [Self.masquerade(ports: 20000...29999)], zone: "gw")) { gw in
            let request = PacketBuilder(from: Self.client, to: Self.server, .icmpEcho(id: 7, sequence: 1), payload: Self.payload)
            let sent = try gw.out(request)
            let id = sent.icmpID
            #expect((20000...29999).contains(id) && sent.source == Self.gateway && sent.checksumsHold, "\(sent)")
            #expect(sent.bytes == PacketBuilder(from: Self.gateway, to: Self.server, .icmpEcho(id: id, sequence: 1),
                                                payload: Self.payload).bytes)
            let reply = PacketBuilder(from: Self.server, to: Self.gateway, .icmp(type: 0, code: 0, rest: UInt32(id) << 16 | 1),
                                      payload: Self.payload)
            let back = try gw.into(reply)
            #expect(back.bytes == PacketBuilder(from: Self.server, to: Self.client, .icmp(type: 0, code: 0, rest: 7 << 16 | 1),
                                                payload: Self.payload).bytes, "\(back)")
            // An echo request to the gateway's own address with that id is not the reply: untouched.
            let ping = PacketBuilder(from: Self.server, to: Self.gateway, .icmpEcho(id: id, sequence: 1))
            #expect(try gw.into(ping).bytes == ping.bytes)
        }
    }

    /// An ICMP error from `from` to `to` quoting `packet` (its IP header and all it carries).
    static func unreachable(_ from: String, _ to: String, quoting packet: [UInt8]) -> PacketBuilder {
        PacketBuilder(from: from, to: to, .icmp(type: 3, code: 3, rest: 0), payload: Array(packet[14...]))
    }

    @Test("ICMP errors about translated flows: outer address, quoted addresses, ports and checksums put back")
    func icmpErrors() async throws {
        let blueprint = try NAT.blueprint(snat: [Self.masquerade(ports: 20000...29999)], dnat: [Self.forward], zone: "gw")
        try await Self.withGateway(blueprint) { gw in
            // The server says port unreachable about a masqueraded datagram (and a SYN):
            // the error reaches the client quoting exactly what the client sent.
            for original in [Self.udp(Self.client, 40000, Self.server, 53), Self.tcp(Self.client, 40001, Self.server, 80, .syn)] {
                let sent = try gw.out(original)
                let error = try gw.into(Self.unreachable(Self.server, Self.gateway, quoting: sent.bytes))
                #expect(error.bytes == Self.unreachable(Self.server, Self.client, quoting: original.bytes).bytes,
                        "\(original): \(error)")
                #expect(error.checksumsHold)
            }
            // A router on the way says time exceeded about a masqueraded ping.
            let ping = PacketBuilder(from: Self.client, to: Self.server, .icmpEcho(id: 9, sequence: 3))
            let sent = try gw.out(ping)
            let exceeded = { (to: String, quoting: [UInt8]) in
                PacketBuilder(from: "10.98.2.254", to: to, .icmp(type: 11, code: 0, rest: 0), payload: Array(quoting[14...]))
            }
            let back = try gw.into(exceeded(Self.gateway, sent.bytes))
            #expect(back.bytes == exceeded(Self.client, ping.bytes).bytes, "\(back)")
            #expect(back.checksumsHold)

            // The client refuses a forwarded connection: the error leaves from the
            // gateway's address, quoting what the server sent.
            let inbound = Self.tcp(Self.server, 45000, Self.gateway, 8080, .syn)
            let forwarded = try gw.into(inbound)
            let refused = try gw.out(Self.unreachable(Self.client, Self.server, quoting: forwarded.bytes))
            #expect(refused.bytes == Self.unreachable(Self.gateway, Self.server, quoting: inbound.bytes).bytes, "\(refused)")
            #expect(try gw.count("outcomes", 3, in: gw.ingress) == 3 && gw.count("outcomes", 3) == 1)
            // An error about no flow goes on untouched.
            let stray = Self.unreachable(Self.server, Self.gateway, quoting: Self.udp(Self.gateway, 1234, Self.server, 53).bytes)
            #expect(try gw.into(stray).bytes == stray.bytes)
        }
    }

    @Test("a datagram routed to a client's own address: the client's answer goes back as it is, as Linux's conntrack knows it for a reply")
    func routedToClient() async throws {
        try await Self.withGateway(try NAT.blueprint(snat: [Self.masquerade()], zone: "gw")) { gw in
            let inbound = Self.udp(Self.server, 33001, Self.client, 5353)
            #expect(try gw.into(inbound).bytes == inbound.bytes)
            let answer = Self.udp(Self.client, 5353, Self.server, 33001)
            let back = try gw.out(answer)
            #expect(back.bytes == answer.bytes, "\(back)")
            // The client's own flow from that port to another server port is masqueraded.
            #expect(try gw.out(Self.udp(Self.client, 5353, Self.server, 33002)).source == Self.gateway)
            #expect(try gw.count("outcomes", 4, in: gw.ingress) == 1 && gw.count("outcomes", 0) == 1 && gw.count("outcomes", 2) == 1)
        }
    }

    @Test("packets no rule or flow matches leave byte for byte as they came")
    func untouched() async throws {
        try await Self.withGateway(try NAT.blueprint(snat: [Self.masquerade()], dnat: [Self.forward], zone: "gw")) { gw in
            var arp = [UInt8](repeating: 0xff, count: 6) + [2, 0, 0, 0, 0, 1, 0x08, 0x06]
            arp += [0, 1, 8, 0, 6, 4, 0, 1] + [UInt8](repeating: 7, count: 20)
            let packets: [(String, [UInt8])] = [
                ("from outside the snat source", Self.udp("10.98.3.5", 1000, Self.server, 53).bytes),
                ("a TCP ACK opens no flow", Self.tcp(Self.client, 40000, Self.server, 80, .ack).bytes),
                ("IPv6", PacketBuilder(from: "fd00::1", to: "fd00::2", .udp(sport: 1, dport: 2)).bytes),
                ("ARP", arp),
                ("another protocol", PacketBuilder(from: Self.client, to: Self.server, .ip(proto: 47), payload: [1, 2, 3, 4]).bytes),
                ("an echo reply nobody asked for", PacketBuilder(from: Self.client, to: Self.server,
                                                                 .icmp(type: 0, code: 0, rest: 5 << 16)).bytes),
            ]
            for (what, bytes) in packets {
                let result = try gw.egress.rootProgram.testRun(bytes)
                #expect(result.returnValue == 0 && result.output == bytes, "\(what) changed")
            }
            #expect(try gw.count("outcomes", 4) == UInt64(packets.count))
            #expect(try gw.egress.map("translations", of: "nat")?.lookupBatch().isEmpty == true)
        }
    }

    @Test("cubes of one zone share the table across chains; another zone's does not know the flow")
    func zones() async throws {
        let blueprint = try NAT.blueprint(snat: [Self.masquerade()], zone: "gw")
        try await Self.withGateway(blueprint) { gw in
            #expect(gw.egress.map("translations", of: "nat")?.info.id == gw.ingress.map("translations", of: "nat")?.info.id)
            _ = try gw.out(Self.udp(Self.client, 40000, Self.server, 53))
            #expect(try gw.into(Self.udp(Self.server, 53, Self.gateway, 40000)).destination == Self.client)
        }
        try await Self.withGateway(blueprint, ingress: try NAT.blueprint(snat: [Self.masquerade()], zone: "elsewhere")) { gw in
            #expect(gw.egress.map("translations", of: "nat")?.info.id != gw.ingress.map("translations", of: "nat")?.info.id)
            _ = try gw.out(Self.udp(Self.client, 40000, Self.server, 53))
            let reply = Self.udp(Self.server, 53, Self.gateway, 40000)
            #expect(try gw.into(reply).bytes == reply.bytes)
        }
    }

    @Test("a replacement instance (a new snat rule) carries the translations: open flows keep their ports and replies")
    func carriedOver() async throws {
        // No zone: the table is the instance's own, so only the replacement can carry it.
        try await Self.withGateway(try NAT.blueprint(snat: [Self.masquerade(ports: 20000...29999)])) { gw in
            let sent = try gw.out(Self.udp(Self.client, 40000, Self.server, 53))
            let table = gw.egress.map("translations", of: "nat")?.info.id
            let program = gw.egress.record.cubes["nat"]?.program
            let more = NAT.SNATRule(source: IPPrefix("10.98.3.0/24")!, to: Self.address(Self.gateway), ports: 30000...39999)
            try gw.egress.apply(.line([("nat", try NAT.blueprint(snat: [Self.masquerade(ports: 20000...29999), more]))]))
            #expect(gw.egress.record.cubes["nat"]?.program != program)
            #expect(gw.egress.map("translations", of: "nat")?.info.id == table)
            #expect(try gw.out(Self.udp(Self.client, 40000, Self.server, 53)).sourcePort == sent.sourcePort)
            // The egress cube puts a reply back as well (the gateway sends replies through ingress).
            let back = try gw.run(gw.egress, Self.udp(Self.server, 53, Self.gateway, sent.sourcePort)).frame
            #expect(back.destination == Self.client && back.destinationPort == 40000)
            #expect((30000...39999).contains(try gw.out(Self.udp("10.98.3.9", 40000, Self.server, 53)).sourcePort))
        }
    }
}

/// The nat cubes on real connections through the router lab, as the gateway puts them:
/// on the router's server-side interface, TC egress and TC ingress in one zone, the server
/// answering the router's address. Veth packets from sockets are CHECKSUM_PARTIAL: their
/// TCP checksum field holds the pseudo-header's sum only, which the rewrites must move
/// with the addresses (the receiver trusts it, so the test reads it off the wire).
@Suite("nat cube: real connections", .kernel)
struct NATConnectionTests {
    @Test("through Linux forwarding: the client's connections are masqueraded, a port is forwarded to it, and without the cubes neither works")
    func gateway() async throws {
        try await RouterLab.with(linuxForwards: true) { lab in
            try await TestPinRoot.with { root in
                let nat = try NAT.blueprint(
                    snat: [NAT.SNATRule(source: IPPrefix("10.98.1.0/24")!, to: NATTests.address(lab.routerServerSide.ipv4))],
                    dnat: [NAT.DNATRule(destination: NATTests.address(lab.routerServerSide.ipv4), proto: .tcp, port: 8080,
                                        to: NATTests.address(lab.client.ipv4), toPort: 80)],
                    zone: "gw")
                let hook = { (kind: ChainHook.Kind) in
                    ChainHook(interface: lab.routerServerSide.interfaceName, namespace: lab.routerServerSide.namespaceName, kind: kind)
                }
                // The server answers only what comes from the router's address.
                try TailorLab.run("ip", ["-n", lab.server.namespaceName, "route", "replace", "default", "dev", lab.server.interfaceName])
                #expect(try TCPConnection.open(from: lab.client, to: lab.server, port: 7000) == nil)
                let egress = try Chain.create(ChainSettings(name: "out", hook: hook(.tcEgress)),
                                              topology: .line([("nat", nat)]), pinRoot: root)
                defer { try? egress.destroy() }
                let ingress = try Chain.create(ChainSettings(name: "in", hook: hook(.tcIngress)),
                                               topology: .line([("nat", nat)]), pinRoot: root)
                defer { try? ingress.destroy() }

                let wire = try PacketSocket(on: lab.server)
                let outbound = try #require(try TCPConnection.open(from: lab.client, to: lab.server, port: 7001))
                #expect(try outbound.roundTrip(bytes: 3000))
                var masqueraded: [Frame] = []
                while let bytes = try wire.receive(waitingAtMost: .milliseconds(100)) {
                    let frame = Frame(bytes)
                    if bytes.count > 34, bytes[12...13] == [8, 0], bytes[23] == 6, frame.source == lab.routerServerSide.ipv4 {
                        masqueraded.append(frame)
                    }
                }
                #expect(!masqueraded.isEmpty && masqueraded.allSatisfy(\.checksumsHoldOrArePartial),
                        "\(masqueraded.filter { !$0.checksumsHoldOrArePartial })")
                let forwarded = try #require(try TCPConnection.open(from: lab.server, to: lab.client, port: 80,
                                                                    via: (lab.routerServerSide.ipv4, 8080)))
                #expect(try forwarded.roundTrip(bytes: 3000))
                #expect(try NATTests.Gateway(egress: egress, ingress: ingress).count("outcomes", 2) >= 1)
            }
        }
    }
}

/// An Ethernet frame with IPv4 read back: addresses, ports, and whether every
/// checksum in it holds (the IPv4 header's, the transport's, and in an ICMP error
/// those of the packet it quotes, as far as it quotes it).
struct Frame: CustomStringConvertible {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The IPv4 packet, from its header on.
    var ip: [UInt8] { Array(bytes.dropFirst(14)) }
    var source: String { IPAddress.format(Array(ip[12..<16])) }
    var destination: String { IPAddress.format(Array(ip[16..<20])) }
    /// The transport header and what follows it.
    var l4: [UInt8] { Array(ip.dropFirst(Int(ip[0] & 0x0f) * 4)) }
    var sourcePort: UInt16 { Self.word(l4, 0) }
    var destinationPort: UInt16 { Self.word(l4, 2) }
    var icmpID: UInt16 { Self.word(l4, 4) }

    var checksumsHold: Bool { Self.holds(ip, complete: true) }

    /// Whether the IPv4 checksum holds and the TCP or UDP one either holds or is what a
    /// CHECKSUM_PARTIAL packet carries: the folded sum of its pseudo-header alone.
    var checksumsHoldOrArePartial: Bool {
        guard !checksumsHold else { return true }
        let headerLength = Int(ip[0] & 0x0f) * 4
        guard PacketBuilder.checksum(Array(ip[..<headerLength])) == 0, [6, 17].contains(ip[9]) else { return false }
        let length = Int(Self.word(ip, 2)) - headerLength
        let pseudo = Array(ip[12..<20]) + [0, ip[9]] + NATTests.port(UInt16(length))
        return Self.word(l4, ip[9] == 6 ? 16 : 6) == ~PacketBuilder.checksum(pseudo)
    }

    var description: String {
        "\(source):\(sourcePort) > \(destination):\(destinationPort) " + bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func word(_ bytes: [UInt8], _ offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }

    /// Whether the checksums of IPv4 packet `packet` hold; a quoted packet
    /// (`complete` false) has its transport checksum checked only when it is all there.
    static func holds(_ packet: [UInt8], complete: Bool) -> Bool {
        let headerLength = Int(packet[0] & 0x0f) * 4
        guard PacketBuilder.checksum(Array(packet[..<headerLength])) == 0 else { return false }
        let segment = Array(packet[headerLength...])
        let proto = packet[9]
        let whole = Int(word(packet, 2)) - headerLength == segment.count
        guard complete || whole else { return true }
        switch proto {
        case 1:
            guard PacketBuilder.checksum(segment) == 0 else { return false }
            // An error quotes a packet: its checksums must hold too.
            return complete && [3, 11].contains(segment[0]) ? holds(Array(segment[8...]), complete: false) : true
        case 6, 17:
            if proto == 17 && word(segment, 6) == 0 { return true }
            let pseudo = Array(packet[12..<20]) + [0, proto] + NATTests.port(UInt16(segment.count))
            return PacketBuilder.checksum(pseudo + segment) == 0
        default:
            return true
        }
    }
}
