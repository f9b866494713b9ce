import Foundation
import Testing
import TailorDatapath
import TailorLab
import TailorReference
import TailorSpec
import TailorTestKit

/// The cube gateway (specs/gateway/) against Linux's own. The same seeded flows, as
/// raw frames from the client's and the server's packet sockets, go through
/// (a) a router lab whose Linux forwards, with iptables SNAT and DNAT in the router's
///     namespace, and
/// (b) a router lab whose Linux does not forward, with specs/gateway/ applied as
///     GatewayTests applies it.
/// Each side checks every frame that arrives against the one its peer sent,
/// translated as a NAT must translate it (addresses, ports, TTL one lower, every
/// checksum valid, payload and TCP sequence numbers as sent), answers it as it saw
/// it, and the far side's answers come back the same way, ICMP errors about the
/// flows included. What no NAT rule forwards must stay on the server's side in both,
/// answered alike by the router itself; what is routed to a client's own address
/// must go both ways untranslated.
///
/// Where Linux and the cubes may choose differently (which port a flow gets) the
/// test checks properties, not values: in 20000-29999, the same for all of a
/// flow's packets, different for flows whose replies would otherwise be one tuple.
/// Where they differ by design, `differences` shows it on both (docs/cubes/nat.md,
/// "Equivalence with Linux").
@Suite("gateway: equivalence with Linux forwarding and iptables NAT", .kernel, .serialized)
struct GatewayEquivalenceTests {
    /// TAILOR_GATEWAY_SEED=n replays a run; otherwise each run draws its own seed.
    static let seed: UInt64 = ProcessInfo.processInfo.environment["TAILOR_GATEWAY_SEED"].flatMap { UInt64($0) }
        ?? UInt64.random(in: 1...999_999)

    @Test("the same flows through Linux's NAT and through the cubes: translated alike, answered alike, their ICMP errors too")
    func sameAsLinux() async throws {
        let script = GatewayScript(seed: Self.seed)
        let started = ContinuousClock.now
        let (linux, cubes) = try await Self.throughBoth { lab in try GatewayPlay(script, lab).run() }
        let replay = "seed \(script.seed) (TAILOR_GATEWAY_SEED=\(script.seed) replays it)"
        let (linuxProblems, cubesProblems) = (linux.problems.count, cubes.problems.count)
        #expect(linuxProblems == 0, "\(replay): through Linux:\n\(linux.report)")
        #expect(cubesProblems == 0, "\(replay): through the cubes:\n\(cubes.report)")
        let (onlyLinux, onlyCubes) = (linux.routerAnswers.subtracting(cubes.routerAnswers),
                                      cubes.routerAnswers.subtracting(linux.routerAnswers))
        #expect(onlyLinux.isEmpty && onlyCubes.isEmpty, """
            \(replay): the router answered the server differently
            only through Linux: \(onlyLinux.sorted().prefix(10).joined(separator: "\n  "))
            only through the cubes: \(onlyCubes.sorted().prefix(10).joined(separator: "\n  "))
            """)
        #expect(!linux.routerAnswers.isEmpty, "\(replay): the router answered nothing it was not asked to forward")
        print("""
            gateway equivalence, \(replay): \(script.flows.count) flows, \(linux.frames) and \(cubes.frames) frames checked, \
            \(ContinuousClock.now - started)
              Linux: \(linux.portChoices(script))
              cubes: \(cubes.portChoices(script))
            """)
    }

    /// `body`'s result on (a) Linux's gateway and (b) the cubes', each on a lab of its own.
    static func throughBoth<R>(_ body: (RouterLab) throws -> R) async throws -> (linux: R, cubes: R) {
        let linux = try await RouterLab.with(linuxForwards: true) { lab in
            try prepare(lab)
            try linuxNAT(lab)
            return try body(lab)
        }
        let cubes = try await RouterLab.with(linuxForwards: false) { lab in
            try await TestPinRoot.with { root in
                try prepare(lab)
                try GatewayTests.apply(lab, root)
                return try body(lab)
            }
        }
        return (linux, cubes)
    }

    @Test("""
        where they differ, as documented: a TTL of 1 and a packet too big for the link (Linux answers, the cubes' router \
        leaves them to a Linux that does not forward), a forwarded connection whose reply would be a masqueraded one's \
        (Linux moves its port, the nat cube drops it), one client port to two servers (Linux keeps one mapping)
        """)
    func differences() async throws {
        let (linux, cubes) = try await Self.throughBoth { try GatewayDifferences($0) }
        let (client, server, router) = (GatewayScript.clients[0], GatewayScript.server, "10.98.1.1")
        #expect(linux.expired.map(\.words) == [
            "client got icmp 11/0 \(router) > \(client) ttl 64 quoting udp \(client):4001 > \(server):53 ttl 1",
        ])
        #expect(cubes.expired.isEmpty, "\(cubes.expired.map(\.words))")
        #expect(linux.tooBig.map(\.words) == [
            "client got icmp 3/4 \(router) > \(client) ttl 64 quoting udp \(client):4003 > \(server):53 ttl 64",
        ])
        #expect(cubes.tooBig.isEmpty, "\(cubes.tooBig.map(\.words))")

        // The masqueraded SYN reaches the server through both; the forwarded one
        // reaches the client through Linux only, from another port of the server's.
        for outcome in [linux, cubes] {
            #expect(outcome.clash.first.map { $0.at == .server && $0.frame.destinationPort == 33002 } == true,
                    "\(outcome.clash.map(\.words))")
        }
        let forwarded = linux.clash.dropFirst().map(\.frame)
        #expect(forwarded.count == 1 && forwarded.allSatisfy { $0.destination == client && $0.destinationPort == 80 && $0.sourcePort != 33002 },
                "\(linux.clash.map(\.words))")
        #expect(cubes.clash.count == 1, "\(cubes.clash.map(\.words))")

        let ports = { (outcome: GatewayDifferences) in Set(outcome.sameSource.map(\.frame.sourcePort)) }
        #expect(linux.sameSource.count == 2 && ports(linux).count == 1, "\(linux.sameSource.map(\.words))")
        #expect(cubes.sameSource.count == 2 && ports(cubes).count == 2, "\(cubes.sameSource.map(\.words))")
    }

    /// What both gateways get alike: the client's other addresses, permanent neighbour
    /// entries on the router (so that no packet waits for ARP in one lab and not in the
    /// other), the router's ICMP errors not rate-limited (it answers a few dozen
    /// packets to its own address), and the client's and the server's own IP stacks
    /// silenced: their packet sockets see every frame, but a port unreachable or a RST
    /// from those stacks would answer the test's flows behind its back.
    static func prepare(_ lab: RouterLab) throws {
        let (client, rc, rs, server) = (lab.client, lab.routerClientSide, lab.routerServerSide, lab.server)
        let addresses = GatewayScript.clients.filter { $0 != client.ipv4 }.map { "addr add \($0)/24 dev \(client.interfaceName)" }
        try run("ip", ["-n", client.namespaceName, "-batch", "-"], input: addresses.joined(separator: "\n") + "\n")
        let neighbours = GatewayScript.clients.map { "neigh replace \($0) lladdr \(client.mac) nud permanent dev \(rc.interfaceName)" }
            + ["neigh replace \(server.ipv4) lladdr \(server.mac) nud permanent dev \(rs.interfaceName)"]
        try run("ip", ["-n", rc.namespaceName, "-batch", "-"], input: neighbours.joined(separator: "\n") + "\n")
        try run("ip", ["netns", "exec", rc.namespaceName, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"])
        for side in [client, server] {
            try run("ip", ["netns", "exec", side.namespaceName, "iptables", "-t", "raw", "-A", "PREROUTING", "-j", "DROP"])
        }
    }

    /// Linux's gateway in lab (a): SNAT rather than MASQUERADE because the cube's snat
    /// rule names its address as SNAT's --to-source does (MASQUERADE takes the
    /// interface's address per packet and forgets its flows when the interface goes
    /// down, which the cube has no counterpart of). iptables takes a port range only
    /// with a protocol, so one rule each for TCP, UDP and ICMP (whose echo ids nf_nat
    /// takes from the range too, as the cube does). Only a SYN opens a TCP connection,
    /// as in the cube (nf_conntrack_tcp_loose=0: else a stray ACK to 10.98.2.1:8080
    /// would be forwarded). The server loses its route back, as in the gateway lab.
    static func linuxNAT(_ lab: RouterLab) throws {
        let router = lab.routerServerSide.namespaceName
        let (rs, gateway, ports) = (lab.routerServerSide.interfaceName, GatewayScript.gateway, GatewayScript.ports)
        let rules = ["*nat"]
            + ["tcp", "udp", "icmp"].map {
                "-A POSTROUTING -o \(rs) -s 10.98.1.0/24 -p \($0) -j SNAT --to-source \(gateway):\(ports.lowerBound)-\(ports.upperBound)"
            }
            + ["-A PREROUTING -i \(rs) -d \(gateway) -p tcp --dport 8080 -j DNAT --to-destination \(lab.client.ipv4):80", "COMMIT"]
        try run("ip", ["netns", "exec", router, "iptables-restore"], input: rules.joined(separator: "\n") + "\n")
        try run("ip", ["netns", "exec", router, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"])
        try run("ip", ["-n", lab.server.namespaceName, "route", "del", "default"])
    }
}

/// One run's flows, drawn from a seed: the same for both gateways.
struct GatewayScript {
    static let gateway = "10.98.2.1", server = "10.98.2.2"
    /// A router beyond the server, which says time exceeded.
    static let hop = "10.98.2.254"
    static let clients = (2...9).map { "10.98.1.\($0)" }
    static let ports: ClosedRange<UInt16> = 20000...29999
    /// The client ports (and echo ids) flows use: a few, in the snat range and out of
    /// it, so that flows of several clients to one server port collide on them.
    static let clientPorts: [UInt16] = [20005, 20006, 29999, 1234, 40000, 40001]
    static let serverPorts: [UInt16] = [53, 80, 7000]

    let seed: UInt64
    let flows: [Flow]

    /// `count` flows of the client (UDP, TCP, pings) and of the server (connections
    /// to 10.98.2.1:8080, datagrams routed to a client's address), each tuple once,
    /// and `strays` packets of the server to 10.98.2.1 that no rule forwards.
    init(seed: UInt64, count: Int = 240, strays: Int = 24) {
        self.seed = seed
        var rng = SeededGenerator(seed: seed)
        var flows: [Flow] = []
        var tuples: Set<String> = []
        // The server's own ports for its connections and strays: one each, above every flow's server port.
        var serverSidePorts = Array(UInt16(32768)...60999).shuffled(using: &rng).makeIterator()
        func filler() -> [UInt8] { (0..<Int.random(in: 0..<24, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        while flows.count < count {
            let roll = Int.random(in: 0..<100, using: &rng)
            let kind: Flow.Kind = roll < 30 ? .udp : roll < 60 ? .tcp : roll < 75 ? .echo : roll < 90 ? .forwarded : .routed
            let answers: [(Flow.Answer, Int)] = switch kind {
            case .echo: [(.reply, 70), (.timeExceeded, 30)]
            case .forwarded: [(.reply, 65), (.reset, 15), (.unreachable, 20)]
            case .routed: [(.reply, 75), (.unreachable, 25)]
            case .udp: [(.reply, 40), (.refused, 15), (.unreachable, 15), (.timeExceeded, 15), (.wrongPort, 15)]
            default: [(.reply, 45), (.reset, 10), (.unreachable, 15), (.timeExceeded, 15), (.wrongPort, 15)]
            }
            var pick = Int.random(in: 0..<100, using: &rng)
            let answer = answers.first { pick -= $0.1; return pick < 0 }?.0 ?? .reply
            let flow: Flow
            if kind == .forwarded {
                flow = Flow(index: flows.count, kind: kind, client: Self.clients[0], clientPort: 80,
                            serverPort: serverSidePorts.next() ?? 0, gatewayPort: 8080, answer: answer, filler: filler())
            } else if kind == .routed {
                flow = Flow(index: flows.count, kind: kind, client: Self.clients.randomElement(using: &rng) ?? Self.clients[0],
                            clientPort: Self.clientPorts.randomElement(using: &rng) ?? 1234, serverPort: serverSidePorts.next() ?? 0,
                            gatewayPort: nil, answer: answer, filler: filler())
            } else {
                let client = Self.clients.randomElement(using: &rng) ?? Self.clients[0]
                let port = Self.clientPorts.randomElement(using: &rng) ?? 1234
                let serverPort = kind == .echo ? 0 : Self.serverPorts.randomElement(using: &rng) ?? 53
                guard tuples.insert("\(kind) \(client) \(port) \(serverPort)").inserted else { continue }
                flow = Flow(index: flows.count, kind: kind, client: client, clientPort: port, serverPort: serverPort,
                            gatewayPort: nil, answer: answer, filler: filler())
            }
            flows.append(flow)
        }
        let strayKinds: [Flow.Kind] = [.strayUDP, .straySYN, .strayACK, .strayEcho]
        for _ in 0..<strays {
            let kind = strayKinds.randomElement(using: &rng) ?? .strayUDP
            let any = UInt16.random(in: 1...65535, using: &rng)
            let port: UInt16 = switch kind {
            case .strayACK: 8080
            // An echo reply's id outside the range: one inside may be a live ping's, which both forward.
            case .strayEcho: 1 + any % (Self.ports.lowerBound - 1)
            case .strayUDP: any % 2 == 0 ? 8080 : any
            default: any == 8080 ? 8081 : any
            }
            flows.append(Flow(index: flows.count, kind: kind, client: Self.clients[0], clientPort: 0,
                              serverPort: serverSidePorts.next() ?? 0, gatewayPort: port, answer: .reply, filler: filler()))
        }
        self.flows = flows
    }
}

/// A side of the gateway: the client's network or the server's.
enum GatewaySide {
    case client, server
}

/// A flow through the gateway: its client end as the client's side sees it, its
/// server end, and how the side that did not open it answers.
struct Flow: CustomStringConvertible {
    enum Kind: String {
        /// The client's, masqueraded.
        case udp, tcp, echo
        /// The server's TCP connection to 10.98.2.1:8080, forwarded to the client's port 80.
        case forwarded
        /// The server's UDP to a client's own address, routed: no rule translates it
        /// or the client's answers.
        case routed
        /// The server's packets to 10.98.2.1 that no rule forwards: UDP (to 8080 or
        /// another port), a SYN to another port, an ACK to 8080 without a SYN, an
        /// echo reply nobody asked for.
        case strayUDP, straySYN, strayACK, strayEcho
    }

    enum Answer {
        case reply
        /// A reply, which the client answers with ICMP port unreachable (UDP).
        case refused
        /// A RST for the SYN (TCP).
        case reset
        /// ICMP port unreachable about the flow's first packet.
        case unreachable
        /// ICMP time exceeded about it, from a router beyond the server.
        case timeExceeded
        /// A reply from a server port the flow does not have: for neither NAT to forward.
        case wrongPort
    }

    let index: Int
    let kind: Kind
    let client: String
    /// The client's port; a ping's id.
    let clientPort: UInt16
    let serverPort: UInt16
    /// The client end's port on the server's side when no NAT chooses it.
    let gatewayPort: UInt16?
    let answer: Answer
    /// Random bytes after the tag in every payload, of a random length.
    let filler: [UInt8]

    var masqueraded: Bool { [.udp, .tcp, .echo].contains(kind) }
    var stray: Bool { [.strayUDP, .straySYN, .strayACK, .strayEcho].contains(kind) }

    var description: String {
        let server = "\(GatewayScript.server):\(serverPort)"
        return switch kind {
        case .forwarded: "\(index) tcp \(server) > \(GatewayScript.gateway):8080 [\(answer)]"
        case .routed: "\(index) routed udp \(server) > \(client):\(clientPort) [\(answer)]"
        case _ where stray: "\(index) \(kind) \(server) > \(GatewayScript.gateway):\(gatewayPort ?? 0)"
        default: "\(index) \(kind) \(client):\(clientPort) > \(server) [\(answer)]"
        }
    }

    /// The tag payloads start with: the flow and the message.
    func payload(_ message: UInt16) -> [UInt8] { NATTests.port(UInt16(index)) + NATTests.port(message) + filler }

    /// The TCP initial sequence numbers of the client's and the server's ends: both
    /// name the flow in their top 16 bits, so every segment (and a RST answering one)
    /// says which flow it is.
    var clientISN: UInt32 { UInt32(index) << 16 | 0x1000 }
    var serverISN: UInt32 { UInt32(index) << 16 | 0x8000 }

    /// What the flow sends in `step`: 1 its first packet, 2 the answer, 3 the opener's
    /// next packets (TCP: two data segments and a FIN; a refused reply: the client's
    /// port unreachable about it), 4 their answer, 5 TCP's last ACK.
    func messages(step: Int) -> [Message] {
        let opens = masqueraded
        let udp = kind == .udp || kind == .routed
        if stray {
            guard step == 1 else { return [] }
            return switch kind {
            case .strayUDP: [Message(towardServer: false, body: .udp, payload: payload(0), crosses: false)]
            case .straySYN: [Message(towardServer: false, body: .tcp(.syn, serverISN, 0), crosses: false)]
            case .strayACK: [Message(towardServer: false, body: .tcp(.ack, serverISN, clientISN), crosses: false)]
            default: [Message(towardServer: false, body: .echo(request: false, sequence: 0), payload: payload(0), crosses: false)]
            }
        }
        let (first, second) = opens ? (clientISN, serverISN) : (serverISN, clientISN)
        let length = UInt32(payload(0).count)
        let opening = Message(towardServer: opens, body: udp ? .udp : kind == .echo ? .echo(request: true, sequence: 0)
                                : .tcp(.syn, first, 0), payload: kind == .tcp || kind == .forwarded ? [] : payload(0))
        let reply = Message(towardServer: !opens, body: udp ? .udp : kind == .echo ? .echo(request: false, sequence: 0)
                                : .tcp([.syn, .ack], second, first + 1), payload: udp || kind == .echo ? payload(1) : [])
        switch step {
        case 1:
            return [opening]
        case 2:
            switch answer {
            case .unreachable:
                return [Message(towardServer: !opens, body: .error(type: 3, code: 3, hop: nil, quoting: opening))]
            case .timeExceeded:
                return [Message(towardServer: !opens, body: .error(type: 11, code: 0, hop: GatewayScript.hop, quoting: opening))]
            case .reply, .refused:
                return [reply]
            case .reset:
                return [Message(towardServer: !opens, body: .tcp([.rst, .ack], 0, first + 1))]
            case .wrongPort:
                return [Message(towardServer: !opens, body: reply.body, payload: reply.payload, crosses: false, serverPort: 9)]
            }
        case 3 where answer == .refused:
            return [Message(towardServer: opens, body: .error(type: 3, code: 3, hop: nil, quoting: reply))]
        case 3 where answer == .reply:
            return switch kind {
            case .udp, .routed: [Message(towardServer: opens, body: .udp, payload: payload(2))]
            case .echo: [Message(towardServer: true, body: .echo(request: true, sequence: 1), payload: payload(2))]
            default: [
                Message(towardServer: opens, body: .tcp([.psh, .ack], first + 1, second + 1), payload: payload(2)),
                Message(towardServer: opens, body: .tcp([.psh, .ack], first + 1 + length, second + 1), payload: payload(3)),
                Message(towardServer: opens, body: .tcp([.fin, .ack], first + 1 + 2 * length, second + 1)),
            ]
            }
        case 4 where answer == .reply:
            return switch kind {
            case .udp, .routed: [Message(towardServer: !opens, body: .udp, payload: payload(4))]
            case .echo: [Message(towardServer: false, body: .echo(request: false, sequence: 1), payload: payload(2))]
            default: [Message(towardServer: !opens, body: .tcp([.fin, .ack], second + 1, first + 2 + 2 * length))]
            }
        case 5 where answer == .reply && (kind == .tcp || kind == .forwarded):
            return [Message(towardServer: opens, body: .tcp(.ack, first + 2 + 2 * length, second + 2))]
        default:
            return []
        }
    }

    /// The two ends of `message` on `side`, where the client's end is `port` on the
    /// server's side (unless routed).
    func ends(_ message: Message, on side: GatewaySide, port: UInt16) -> (from: (String, UInt16), to: (String, UInt16)) {
        if case .error(_, _, let hop, let quoted) = message.body {
            let (from, to) = ends(quoted, on: side, port: port)
            return ((hop ?? to.0, 0), (from.0, 0))
        }
        let near = side == .client || kind == .routed ? (client, clientPort) : (GatewayScript.gateway, port)
        let far = (GatewayScript.server, message.serverPort ?? serverPort)
        return message.towardServer ? (near, far) : (far, near)
    }

    /// `message` as it is on `side` of the gateway with `ttl`, the client's end `port`
    /// on the server's side. A quoted packet has crossed the gateway once.
    func packet(_ message: Message, on side: GatewaySide, port: UInt16, ttl: UInt8) -> PacketBuilder {
        let (from, to) = ends(message, on: side, port: port)
        let nearPort = side == .client ? clientPort : port
        var packet = switch message.body {
        case .udp:
            PacketBuilder(from: from.0, to: to.0, .udp(sport: from.1, dport: to.1), payload: message.payload)
        case .tcp(let flags, _, _):
            PacketBuilder(from: from.0, to: to.0, .tcp(sport: from.1, dport: to.1, flags: flags), payload: message.payload)
        case .echo(true, let sequence):
            PacketBuilder(from: from.0, to: to.0, .icmpEcho(id: nearPort, sequence: sequence), payload: message.payload)
        case .echo(false, let sequence):
            PacketBuilder(from: from.0, to: to.0, .icmp(type: 0, code: 0, rest: UInt32(nearPort) << 16 | UInt32(sequence)),
                          payload: message.payload)
        case .error(let type, let code, _, let quoted):
            PacketBuilder(from: from.0, to: to.0, .icmp(type: type, code: code, rest: 0),
                          payload: Array(self.packet(quoted, on: side, port: port, ttl: 63).bytes.dropFirst(14)))
        }
        if case .tcp(_, let sequence, let acknowledgment) = message.body {
            (packet.sequence, packet.acknowledgment) = (sequence, acknowledgment)
        }
        (packet.ttl, packet.identification) = (ttl, UInt16(truncatingIfNeeded: index))
        return packet
    }
}

/// One packet of a flow, as neither side in particular sees it.
struct Message {
    indirect enum Body {
        case udp
        case tcp(PacketBuilder.TCPFlags, UInt32, UInt32)
        case echo(request: Bool, sequence: UInt16)
        /// An ICMP error quoting `quoting` as its sender got it; from `hop` when a
        /// router beyond the server sends it.
        case error(type: UInt8, code: UInt8, hop: String?, quoting: Message)
    }

    let towardServer: Bool
    let body: Body
    var payload: [UInt8] = []
    /// Whether a gateway forwards it; false for what the router must keep (and
    /// answer itself).
    var crosses = true
    /// The server's port when it is not the flow's.
    var serverPort: UInt16? = nil
}

/// What one gateway did with a script: the problems found against what a NAT must
/// do, the router's own answers to what it kept, and the ports the flows got.
struct GatewayOutcome {
    var problems: [String] = []
    var routerAnswers: Set<String> = []
    /// The client end's port (echo id) on the server's side, by flow.
    var ports: [Int: UInt16] = [:]
    /// Frames checked against the ones their peer sent.
    var frames = 0

    var report: String { problems.prefix(12).joined(separator: "\n") }

    /// How the NAT chose ports, where Linux and the cubes may differ: flows that kept
    /// their own port, and pairs of flows from one client address and port (to
    /// different server ports) that were given one port.
    func portChoices(_ script: GatewayScript) -> String {
        let masqueraded = script.flows.filter { $0.masqueraded && ports[$0.index] != nil }
        let inRange = masqueraded.filter { GatewayScript.ports.contains($0.clientPort) }
        let kept = inRange.filter { ports[$0.index] == $0.clientPort }.count
        let keptOutside = masqueraded.filter { !GatewayScript.ports.contains($0.clientPort) && ports[$0.index] == $0.clientPort }.count
        var pairs = 0, shared = 0
        for (i, a) in masqueraded.enumerated() {
            for b in masqueraded[(i + 1)...] where a.kind == b.kind && a.client == b.client && a.clientPort == b.clientPort {
                pairs += 1
                if ports[a.index] == ports[b.index] { shared += 1 }
            }
        }
        return "\(kept) of \(inRange.count) flows from a port in the range kept it (\(keptOutside) outside it did); "
            + "\(shared) of \(pairs) pairs of flows from one client address and port got one port"
    }
}

/// A script played through one gateway: each step's messages sent as frames from
/// their side's packet socket, then what arrives on both sides read and checked.
final class GatewayPlay {
    let script: GatewayScript
    let wire: GatewayWire
    var outcome = GatewayOutcome()
    /// Each flow's last packet as each side got it: what that side's ICMP error quotes.
    var lastGot: [GatewaySide: [Int: [UInt8]]] = [:]
    /// Flows that sent what the router must keep: the server's frames of theirs
    /// from then on are the router's own answers.
    var kept: Set<Int> = []

    init(_ script: GatewayScript, _ lab: RouterLab) throws {
        (self.script, wire) = (script, try GatewayWire(lab))
    }

    func run() throws -> GatewayOutcome {
        var going = script.flows
        for step in 1...5 {
            let failed = try exchange(going.flatMap { flow in flow.messages(step: step).map { (flow, $0) } }, step: step)
            going.removeAll { failed.contains($0.index) }
        }
        _ = try exchange([], step: 6)
        // Flows whose replies would be one tuple (one protocol, server port and
        // gateway address) must have different ports.
        let masqueraded = script.flows.filter(\.masqueraded)
        for (_, flows) in Dictionary(grouping: masqueraded, by: { "\($0.kind) \($0.serverPort)" }) {
            for (port, sharing) in Dictionary(grouping: flows, by: { outcome.ports[$0.index] }) where port != nil && sharing.count > 1 {
                outcome.problems.append("flows \(sharing.map(\.description)) all got port \(port ?? 0)")
            }
        }
        return outcome
    }

    /// The port `flow`'s client end has on the server's side: its NAT's choice, or the fixed one.
    func port(_ flow: Flow) -> UInt16 { flow.gatewayPort ?? outcome.ports[flow.index] ?? 0 }

    /// Sends `messages`, reads what arrives on both sides, and checks it against what
    /// should; returns the flows that went wrong (they go no further). Without
    /// messages: reads what is still on its way.
    func exchange(_ messages: [(Flow, Message)], step: Int) throws -> Set<Int> {
        for (flow, message) in messages {
            let side: GatewaySide = message.towardServer ? .client : .server
            var packet = flow.packet(message, on: side, port: port(flow), ttl: 64)
            if case .error = message.body, let quoted = lastGot[side]?[flow.index] { packet.payload = quoted }
            try wire.send(packet, from: side)
            if !message.crosses { kept.insert(flow.index) }
        }
        let expecting = { (side: GatewaySide) in
            messages.filter { $0.1.crosses && $0.1.towardServer == (side == .server) }.map(\.0.index)
        }
        let received: [GatewaySide: [Frame]] = [
            .server: try wire.collect(at: .server, expecting: expecting(.server), quiet: messages.isEmpty ? 200 : 50),
            .client: try wire.collect(at: .client, expecting: expecting(.client), quiet: 20),
        ]
        var arrived: [GatewaySide: [Int: [Frame]]] = [.client: [:], .server: [:]]
        for (side, frames) in received {
            for frame in frames {
                guard let index = Self.flowIndex(frame.ip), script.flows.indices.contains(index) else {
                    outcome.problems.append("step \(step): the \(side) got a frame of no flow: \(Self.describe(frame.ip, port: nil))")
                    continue
                }
                arrived[side, default: [:]][index, default: []].append(frame)
            }
        }

        var failed: Set<Int> = []
        let byFlow = Dictionary(grouping: messages, by: { $0.0.index })
        for index in Set(byFlow.keys).union(arrived.values.flatMap(\.keys)).sorted() {
            let flow = script.flows[index], sent = byFlow[index]?.map(\.1) ?? []
            let problem = { (text: String) in
                self.outcome.problems.append("step \(step), flow \(flow): \(text)")
                failed.insert(index)
            }
            let (toClient, toServer) = (arrived[.client]?[index] ?? [], arrived[.server]?[index] ?? [])
            if kept.contains(index) {
                // Kept by the router: nothing reaches the client, and what the router
                // answers itself is compared between the gateways.
                if !toClient.isEmpty { problem("forwarded to the client: \(toClient.map { Self.describe($0.ip, port: nil) })") }
                for frame in toServer {
                    if !frame.checksumsHoldOrArePartial { problem("the router's answer has a bad checksum: \(frame)") }
                    let words = Self.describe(frame.ip, port: flow.gatewayPort == nil ? port(flow) : nil)
                    self.outcome.routerAnswers.insert("\(flow.kind) [\(flow.answer)]: \(words)")
                }
                continue
            }
            if flow.masqueraded && step == 1, let first = toServer.first {
                let chosen = flow.kind == .echo ? first.icmpID : first.sourcePort
                self.outcome.ports[index] = chosen
                if !GatewayScript.ports.contains(chosen) { problem("port \(chosen) is outside \(GatewayScript.ports)") }
            }
            for (side, frames) in [(GatewaySide.client, toClient), (.server, toServer)] {
                let expected = sent.filter { $0.towardServer == (side == .server) }.map { message in
                    wire.arriving(flow.packet(message, on: side, port: port(flow), ttl: 63), at: side)
                }
                if expected.map(\.withoutChecksums).sorted(by: Self.ordered) != frames.map(\.withoutChecksums).sorted(by: Self.ordered) {
                    problem("""
                        the \(side) expected \(expected.map { Self.describe($0.ip, port: nil) }), \
                        got \(frames.map { Self.describe($0.ip, port: nil) })\n  expected \(expected)\n  got      \(frames)
                        """)
                }
                for frame in frames where !frame.checksumsHold { problem("a checksum does not hold: \(frame)") }
                if let last = frames.last { lastGot[side, default: [:]][index] = last.ip }
                self.outcome.frames += frames.count
            }
        }
        return failed
    }

    static func ordered(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) }

    /// The flow an IPv4 packet belongs to: a UDP or echo payload's tag, a TCP
    /// sequence number's top bits (the acknowledgment's in a RST answering a SYN),
    /// or the packet an ICMP error quotes.
    static func flowIndex(_ ip: [UInt8]) -> Int? {
        guard ip.count >= 20, ip[0] >> 4 == 4 else { return nil }
        let l4 = Array(ip.dropFirst(Int(ip[0] & 0x0f) * 4))
        switch ip[9] {
        case 17 where l4.count >= 10:
            return Int(Frame.word(l4, 8))
        case 6 where l4.count >= 12:
            let (sequence, acknowledgment) = (Self.word32(l4, 4), Self.word32(l4, 8))
            return Int((sequence != 0 ? sequence : acknowledgment) >> 16)
        case 1 where l4.count >= 10 && [0, 8].contains(l4[0]):
            return Int(Frame.word(l4, 8))
        case 1 where l4.count > 8 && [3, 11].contains(l4[0]):
            return flowIndex(Array(l4.dropFirst(8)))
        default:
            return nil
        }
    }

    static func word32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(Frame.word(bytes, offset)) << 16 | UInt32(Frame.word(bytes, offset + 2))
    }

    /// An IPv4 packet in words that do not depend on the gateway: `port` (the port
    /// a NAT chose) written as P.
    static func describe(_ ip: [UInt8], port: UInt16?) -> String {
        guard ip.count >= 20 else { return "\(ip.count) bytes" }
        let l4 = Array(ip.dropFirst(Int(ip[0] & 0x0f) * 4))
        let (from, to) = (IPAddress.format(Array(ip[12..<16])), IPAddress.format(Array(ip[16..<20])))
        let name = { (value: UInt16) in value == port ? "P" : "\(value)" }
        let ends = l4.count >= 4 ? "\(from):\(name(Frame.word(l4, 0))) > \(to):\(name(Frame.word(l4, 2)))" : "\(from) > \(to)"
        switch ip[9] {
        case 17:
            return "udp \(ends) ttl \(ip[8])"
        case 6 where l4.count >= 14:
            return "tcp \(ends) flags 0x\(String(l4[13], radix: 16)) seq \(word32(l4, 4)) ack \(word32(l4, 8)) ttl \(ip[8])"
        case 1 where l4.count > 8 && [3, 11].contains(l4[0]):
            return "icmp \(l4[0])/\(l4[1]) \(from) > \(to) ttl \(ip[8]) quoting \(describe(Array(l4.dropFirst(8)), port: port))"
        case 1 where l4.count >= 8:
            return "icmp \(l4[0])/\(l4[1]) \(from) > \(to) id \(name(Frame.word(l4, 4))) ttl \(ip[8])"
        default:
            return "proto \(ip[9]) \(from) > \(to)"
        }
    }
}

/// Small sequences where Linux's gateway and the cubes' part ways, and what the
/// client and the server got from each, in order.
struct GatewayDifferences {
    /// A frame the router sent the client or the server.
    struct Arrival {
        let at: GatewaySide
        let frame: Frame
        var words: String { "\(at) got \(GatewayPlay.describe(frame.ip, port: nil))" }
    }

    typealias Arrivals = [Arrival]
    /// A datagram with a TTL of 1.
    var expired: Arrivals = []
    /// 1,328 bytes with DF, to a link of 1,280.
    var tooBig: Arrivals = []
    /// A SYN from the client's port 80 to the server's 33002, then the server's SYN
    /// from 33002 to 10.98.2.1:8080: forwarded to the client's port 80, its reply
    /// would be the first connection's packets.
    var clash: Arrivals = []
    /// Datagrams from one client port to two server ports.
    var sameSource: Arrivals = []

    init(_ lab: RouterLab) throws {
        let wire = try GatewayWire(lab)
        let (client, server, gateway) = (GatewayScript.clients[0], GatewayScript.server, GatewayScript.gateway)
        func send(_ packets: [(GatewaySide, PacketBuilder)]) throws -> Arrivals {
            try packets.flatMap { side, packet in
                try wire.send(packet, from: side)
                return try [GatewaySide.server, .client].flatMap { at in try wire.collect(at: at, quiet: 150).map { Arrival(at: at, frame: $0) } }
            }
        }
        let udp = { (from: String, sport: UInt16, to: String, dport: UInt16) in
            PacketBuilder(from: from, to: to, .udp(sport: sport, dport: dport), payload: [1, 2, 3, 4])
        }
        var expiring = udp(client, 4001, server, 53)
        expiring.ttl = 1
        expired = try send([(.client, expiring)])
        clash = try send([
            (.client, PacketBuilder(from: client, to: server, .tcp(sport: 80, dport: 33002, flags: .syn))),
            (.server, PacketBuilder(from: server, to: gateway, .tcp(sport: 33002, dport: 8080, flags: .syn))),
        ])
        sameSource = try send([(.client, udp(client, 40000, server, 53)), (.client, udp(client, 40000, server, 80))])
        let rs = lab.routerServerSide
        try run("ip", ["-n", rs.namespaceName, "link", "set", rs.interfaceName, "mtu", "1280"])
        var big = udp(client, 4003, server, 53)
        big.payload = [UInt8](repeating: 7, count: 1300)
        tooBig = try send([(.client, big)])
    }
}

/// The client's and the server's packet sockets on a router lab: frames sent as
/// each host sends them, and the frames the router sends each host.
final class GatewayWire {
    let lab: RouterLab
    let clientSocket: PacketSocket
    let serverSocket: PacketSocket

    init(_ lab: RouterLab) throws {
        self.lab = lab
        (clientSocket, serverSocket) = (try PacketSocket(on: lab.client), try PacketSocket(on: lab.server))
        _ = try clientSocket.drain(quiet: .milliseconds(1)) + serverSocket.drain(quiet: .milliseconds(1))
    }

    /// The host on `side`, the router's interface facing it, and the socket there.
    func ends(_ side: GatewaySide) -> (host: VethLab.Side, router: VethLab.Side, socket: PacketSocket) {
        side == .client ? (lab.client, lab.routerClientSide, clientSocket) : (lab.server, lab.routerServerSide, serverSocket)
    }

    /// Sends `packet` from `side`'s host to the router.
    func send(_ packet: PacketBuilder, from side: GatewaySide) throws {
        var packet = packet
        (packet.sourceMAC, packet.destinationMAC) = (ends(side).host.macBytes, ends(side).router.macBytes)
        try ends(side).socket.send(packet.bytes)
    }

    /// `packet` as the router's frame to `side`'s host.
    func arriving(_ packet: PacketBuilder, at side: GatewaySide) -> Frame {
        var packet = packet
        (packet.sourceMAC, packet.destinationMAC) = (ends(side).router.macBytes, ends(side).host.macBytes)
        return Frame(packet.bytes)
    }

    /// The IPv4 frames from the router that reach `side`'s host (whose socket sees its
    /// own too): until one has come for each of `expecting` (flows, once per frame)
    /// or three seconds have passed, then until none has for `quiet` milliseconds.
    /// Waiting for the expected ones, not for a pause, keeps a busy machine from
    /// cutting a step short.
    func collect(at side: GatewaySide, expecting: [Int] = [], quiet: Int) throws -> [Frame] {
        let (_, router, socket) = ends(side)
        let fromRouter = { (bytes: [UInt8]) -> Frame? in
            bytes.count >= 34 && bytes[12...13] == [8, 0] && Array(bytes[6..<12]) == router.macBytes ? Frame(bytes) : nil
        }
        var waiting = Dictionary(expecting.map { ($0, 1) }, uniquingKeysWith: +)
        var frames: [Frame] = []
        let deadline = ContinuousClock.now + .seconds(3)
        while !waiting.isEmpty, ContinuousClock.now < deadline,
              let bytes = try socket.receive(waitingAtMost: deadline - ContinuousClock.now) {
            guard let frame = fromRouter(bytes) else { continue }
            frames.append(frame)
            if let index = GatewayPlay.flowIndex(frame.ip), let count = waiting[index] {
                waiting[index] = count > 1 ? count - 1 : nil
            }
        }
        return frames + (try socket.drain(quiet: .milliseconds(quiet))).compactMap(fromRouter)
    }
}

extension Frame {
    /// The frame with its checksums zeroed (the IPv4 header's, the transport's, and
    /// those of the packet an ICMP error quotes), to compare with one built anew: a
    /// checksum moved by incremental updates may be the other zero of one's
    /// complement (0xffff for 0), and is checked on its own.
    var withoutChecksums: [UInt8] { Array(bytes.prefix(14)) + Self.zeroingChecksums(ip) }

    static func zeroingChecksums(_ packet: [UInt8]) -> [UInt8] {
        var packet = packet
        let headerLength = Int((packet.first ?? 0) & 0x0f) * 4
        guard packet.count >= 20, packet.count >= headerLength + 4 else { return packet }
        packet[10...11] = [0, 0]
        let at: Int? = switch packet[9] {
        case 6: headerLength + 16
        case 17: headerLength + 6
        case 1: headerLength + 2
        default: nil
        }
        if let at, at + 2 <= packet.count { packet[at...(at + 1)] = [0, 0] }
        if packet[9] == 1, packet.count > headerLength + 8, [3, 11].contains(packet[headerLength]) {
            packet = Array(packet[..<(headerLength + 8)]) + zeroingChecksums(Array(packet[(headerLength + 8)...]))
        }
        return packet
    }
}
