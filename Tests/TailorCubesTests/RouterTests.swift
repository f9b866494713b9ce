import Foundation
import Testing
@testable import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorReconcile
import TailorSpec
import TailorTestKit

/// The router cube on the gateway lab, where Linux does not forward: whatever
/// crosses the router, the cube sent.
@Suite("router cube", .kernel, .serialized)
struct RouterTests {
    /// Chains `in` (TC ingress of the router's client side) and `out` (of its
    /// server side), each a router with the lab's two interfaces and `routes`.
    static func spec(_ lab: RouterLab, routes: String = "") -> String {
        let (rc, rs) = (lab.routerClientSide, lab.routerServerSide)
        return ["in": rc, "out": rs].sorted { $0.key < $1.key }.map { name, side in
            """
            apiVersion: tailor/v1
            kind: Chain
            metadata: {name: \(name)}
            spec:
              attach: {interface: \(side.interfaceName), namespace: \(side.namespaceName), hook: tc-ingress}
              cubes:
                - name: route
                  type: router
                  config:
                    interfaces:
                      - {name: \(rc.interfaceName), addresses: [\(rc.ipv4)/24, "\(rc.ipv6)/64"]}
                      - {name: \(rs.interfaceName), addresses: [\(rs.ipv4)/24, "\(rs.ipv6)/64"]}
            \(routes.isEmpty ? "" : "        routes:\n" + routes)
            """
        }.joined(separator: "---\n")
    }

    /// Plans and applies `text` (one spec file) under `root`; returns the plan.
    @discardableResult
    static func apply(_ text: String, _ root: PinRoot) throws -> Plan {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-rt-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try text.write(toFile: directory + "/gw.yaml", atomically: true, encoding: .utf8)
        let (desired, diagnostics) = DesiredChain.load([directory])
        #expect(!diagnostics.hasErrors, "\(diagnostics.all)")
        let reconciliation = Reconciliation(desired: desired, executor: Executor(pinRoot: root), prune: .prune)
        let plan = try reconciliation.verified(reconciliation.plan())
        _ = try reconciliation.apply(plan)
        return plan
    }

    /// The router's outcome counts of chain `chain` (ROUTED, LOCAL, NO_ROUTE,
    /// TTL_EXPIRED, TOO_BIG, NO_INTERFACE in router.c), summed over CPUs.
    static func outcomes(_ chain: String, _ root: PinRoot) throws -> [UInt64] {
        let map = try BPFMap(pinnedAt: ChainPins(chain, under: root).cube("route").map("outcomes"))
        return try (0..<6).map { (key: UInt32) in
            let values = try map.lookup(withUnsafeBytes(of: key.littleEndian, Array.init)).map(map.perCPUValues) ?? []
            return values.reduce(0) { $0 + $1.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
        }
    }

    /// A UDP frame from the client to `destination`, addressed to the router's MAC.
    static func frame(_ lab: RouterLab, to destination: String, sport: UInt16 = 4000, ttl: UInt8 = 64) -> [UInt8] {
        let v6 = destination.contains(":")
        var packet = PacketBuilder(from: v6 ? lab.client.ipv6 : lab.client.ipv4, to: destination,
                                   .udp(sport: sport, dport: 7000), payload: Array("tailor".utf8))
        (packet.sourceMAC, packet.destinationMAC, packet.ttl) = (lab.client.macBytes, lab.routerClientSide.macBytes, ttl)
        return packet.bytes
    }

    /// The UDP frames from the client to `destination` among `frames`.
    static func arrived(_ frames: [[UInt8]], _ lab: RouterLab, to destination: String) -> [[UInt8]] {
        let v6 = destination.contains(":")
        let address = PacketBuilder.Address(destination).bytes
        return frames.filter { frame in
            v6 ? frame.count > 54 && frame[12...13] == [0x86, 0xdd] && Array(frame[38..<54]) == address
                : frame.count > 34 && frame[12...13] == [0x08, 0x00] && Array(frame[30..<34]) == address && frame[23] == 17
        }
    }

    @Test("forwards IPv4 and IPv6 with Linux forwarding off: TTL down by one, MACs from Linux's neighbours, the first packet kept")
    func forwards() async throws {
        try await RouterLab.with(linuxForwards: false) { lab in
            try await TestPinRoot.with { root in
                let sink = try PacketSocket(on: lab.server)
                let sender = try PacketSocket(on: lab.client)
                try sender.send(Self.frame(lab, to: lab.server.ipv4))
                #expect(Self.arrived(try sink.drain(quiet: .milliseconds(300)), lab, to: lab.server.ipv4).isEmpty,
                        "Linux forwarded: the lab is wrong")

                try Self.apply(Self.spec(lab), root)
                for destination in [lab.server.ipv4, lab.server.ipv6] {
                    // No neighbour entry yet: the router's ARP/ND request goes first, the packet waits for it
                    // (Linux retries an unanswered request after a second: allow for that), and comes once.
                    try sender.send(Self.frame(lab, to: destination))
                    var frames: [[UInt8]] = []
                    let deadline = ContinuousClock.now + .seconds(3)
                    while frames.isEmpty, ContinuousClock.now < deadline,
                          let frame = try sink.receive(waitingAtMost: deadline - ContinuousClock.now) {
                        frames += Self.arrived([frame], lab, to: destination)
                    }
                    frames += Self.arrived(try sink.drain(quiet: .milliseconds(200)), lab, to: destination)
                    try #require(frames.count == 1, "to \(destination)")
                    let frame = frames[0]
                    #expect(Array(frame[0..<6]) == lab.server.macBytes)
                    #expect(Array(frame[6..<12]) == lab.routerServerSide.macBytes)
                    if destination.contains(":") {
                        #expect(frame[21] == 63)
                    } else {
                        #expect(frame[22] == 63)
                        #expect(PacketBuilder.checksum(Array(frame[14..<34])) == 0, "IPv4 header checksum")
                    }
                }
                // The server answers through the router once it has a route back.
                try run("ip", ["-n", lab.server.namespaceName, "route", "add", "10.98.1.0/24", "via", lab.routerServerSide.ipv4])
                #expect(try Traffic.udp(from: lab.client, to: lab.server, count: 5) == 5)
                #expect(try TCPConnection.open(from: lab.client, to: lab.server, port: 7100)?.roundTrip() == true)
                let (inbound, outbound) = (try Self.outcomes("in", root), try Self.outcomes("out", root))
                #expect(inbound[0] + outbound[0] >= 2 + 5 + 3, "\(inbound) \(outbound)")
            }
        }
    }

    @Test("routes via several next hops keep each flow on one of them and use them all")
    func ecmp() async throws {
        try await RouterLab.with(linuxForwards: false) { lab in
            try await TestPinRoot.with { root in
                let rs = lab.routerServerSide
                // Two next hops on the server's network, told apart by their MACs.
                let hops = [("10.98.2.3", "02:00:00:00:02:03"), ("10.98.2.4", "02:00:00:00:02:04")]
                for (address, mac) in hops {
                    try run("ip", ["-n", rs.namespaceName, "neigh", "add", address, "lladdr", mac, "nud", "permanent",
                                   "dev", rs.interfaceName])
                }
                try Self.apply(Self.spec(lab, routes: "          - {to: 10.60.0.0/16, via: [10.98.2.3, 10.98.2.4]}\n"), root)
                let sink = try PacketSocket(on: lab.server)
                let sender = try PacketSocket(on: lab.client)
                for round in 0..<2 {
                    for sport in UInt16(5000)..<5032 { try sender.send(Self.frame(lab, to: "10.60.1.1", sport: sport)) }
                    let frames = Self.arrived(try sink.drain(quiet: .milliseconds(300)), lab, to: "10.60.1.1")
                    #expect(frames.count == 32, "round \(round)")
                    var hopOf: [UInt16: [UInt8]] = [:]
                    for frame in frames {
                        let sport = UInt16(frame[34]) << 8 | UInt16(frame[35])
                        #expect(hopOf[sport] == nil || hopOf[sport] == Array(frame[0..<6]), "flow \(sport) moved")
                        hopOf[sport] = Array(frame[0..<6])
                    }
                    let used = Set(hopOf.values)
                    #expect(used == Set(hops.map { hop in hop.1.split(separator: ":").compactMap { UInt8($0, radix: 16) } }),
                            "next hops used: \(used)")
                }
            }
        }
    }

    @Test("what it does not forward goes on unchanged: its own addresses, link-local, no route, a TTL about to run out")
    func handsOn() async throws {
        try await RouterLab.with(linuxForwards: false) { lab in
            try await TestPinRoot.with { root in
                try Self.apply(Self.spec(lab), root)
                let sink = try PacketSocket(on: lab.server)
                let sender = try PacketSocket(on: lab.client)
                let before = try Self.outcomes("in", root)
                try sender.send(Self.frame(lab, to: lab.routerClientSide.ipv4))  // local
                try sender.send(Self.frame(lab, to: lab.routerServerSide.ipv4))  // local, the other interface's
                try sender.send(Self.frame(lab, to: "10.98.2.255"))               // the server network's broadcast
                try sender.send(Self.frame(lab, to: "10.70.0.1"))                 // no route
                try sender.send(Self.frame(lab, to: lab.server.ipv4, ttl: 1))     // TTL would reach 0
                try sender.send(Self.frame(lab, to: "fe80::2"))                   // link-local: never forwarded
                var fromLinkLocal = PacketBuilder(from: "fe80::99", to: lab.server.ipv6, .udp(sport: 4000, dport: 7000))
                (fromLinkLocal.sourceMAC, fromLinkLocal.destinationMAC) = (lab.client.macBytes, lab.routerClientSide.macBytes)
                try sender.send(fromLinkLocal.bytes)                              // from link-local: neither
                #expect(try sink.drain(quiet: .milliseconds(300)).filter { frame in
                    // UDP over IPv4 or IPv6 (the server's own neighbour discovery may come in)
                    frame.count > 54 && (frame[12...13] == [8, 0] ? frame[23] == 17 : frame[20] == 17)
                }.isEmpty)
                // IPv6 neighbour discovery and MLD (multicast: local) may come in between.
                let counted = zip(try Self.outcomes("in", root), before).map { $0 - $1 }
                #expect(counted[0] == 0 && counted[1] >= 5 && counted[2...] == [1, 1, 0, 0], "\(counted)")
            }
        }
    }

    @Test("a route added or changed is one entry written on the live instance, and the plan shows it")
    func routeEdit() async throws {
        try await RouterLab.with(linuxForwards: false) { lab in
            try await TestPinRoot.with { root in
                try Self.apply(Self.spec(lab, routes: "          - {to: 10.60.0.0/16, via: [10.98.2.2]}\n"), root)
                let program = try #require(Observer.observe("in", pinRoot: root).record?.cubes["route"]?.program)
                let plan = try Self.apply(Self.spec(lab, routes: """
                              - {to: 10.60.0.0/16, via: [10.98.2.3]}
                              - {to: "fd00:60::/32", via: ["fd00:98:2::2"]}

                    """), root)
                let cube = try #require(plan.chains.first { $0.name == "in" }?.cubes.first)
                #expect(cube.action == .update)
                let text = PlanText.render(plan, color: false, verbose: false)
                #expect(text.contains("~ routes[\"10.60.0.0/16\"].via: [10.98.2.2] -> [10.98.2.3]"), "\(text)")
                #expect(text.contains("+ routes[\"fd00:60::/32\"]: {via: [fd00:98:2::2]}"), "\(text)")
                #expect(Observer.observe("in", pinRoot: root).record?.cubes["route"]?.program == program)
                let routes = try BPFMap(pinnedAt: ChainPins("in", under: root).cube("route").map("routes_v4"))
                let entry = try #require(try routes.lookup(IPPrefix("10.60.0.0/16")!.lpmKey))
                #expect(Router.Entry(encoded: entry, family: 4)?.words(interfaces: []) == "via 10.98.2.3 (interface 1)")
            }
        }
    }

    @Test("an interface deleted and made again replaces the router with its new index, and says so")
    func interfaceMadeAgain() async throws {
        try await RouterLab.with(linuxForwards: false) { lab in
            try await TestPinRoot.with { root in
                try Self.apply(Self.spec(lab), root)
                let rs = lab.routerServerSide
                let before = try rs.interface().index.rawValue
                try run("ip", ["-n", rs.namespaceName, "link", "delete", rs.interfaceName])
                try VethLab.connect(rs, lab.server, ipv6: true, neighbours: false)
                let after = try rs.interface().index.rawValue
                #expect(after != before)
                let plan = try Self.apply(Self.spec(lab), root)
                let cube = try #require(plan.chains.first { $0.name == "in" }?.cubes.first)
                #expect(cube.action == .replace)
                #expect(cube.reasons == ["interface \(rs.interfaceName): ifindex \(before) -> ifindex \(after)"])
                try run("ip", ["-n", lab.server.namespaceName, "route", "add", "10.98.1.0/24", "via", rs.ipv4])
                #expect(try Traffic.udp(from: lab.client, to: lab.server, count: 3) == 3)
            }
        }
    }
}

/// Router configs that validation refuses, each at the value at fault.
@Suite("router cube: validation")
struct RouterValidationTests {
    static func errors(_ config: String, hook: String = "tc-ingress") throws -> [String] {
        let text = """
        apiVersion: tailor/v1
        kind: Chain
        metadata: {name: gw}
        spec:
          attach: {interface: eth0, hook: \(hook)}
          cubes:
            - name: route
              type: router
              config:
        \(config.split(separator: "\n").map { "        " + $0 }.joined(separator: "\n"))

        """
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-rtv-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try text.write(toFile: directory + "/r.yaml", atomically: true, encoding: .utf8)
        let (_, diagnostics) = DesiredChain.load([directory])
        return diagnostics.sorted.filter { $0.severity == .error }.map { "\($0.location.line):\($0.location.column): \($0.message)" }
    }

    static let interfaces = """
        interfaces:
          - {name: eth0, addresses: [10.0.1.1/24]}
          - {name: eth1, addresses: [10.0.2.1/24, "fd00:2::1/64"]}
        """

    @Test("a next hop outside every connected network, or of the other IP version, is refused at the next hop")
    func nextHops() throws {
        let errors = try Self.errors(Self.interfaces + """

            routes:
              - {to: 10.60.0.0/16, via: [10.0.2.9, 10.0.3.1]}
              - {to: 10.61.0.0/16, via: ["fd00:2::9"]}
              - {to: 10.62.0.0/16, via: [10.0.1.1]}
            """)
        #expect(errors == [
            "14:48: cube 'route': next hop 10.0.3.1 is outside every connected network (the networks of the interfaces' addresses)",
            "15:38: cube 'route': next hop fd00:2::9 is not of the IP version of 10.61.0.0/16",
            "16:38: cube 'route': next hop 10.0.1.1 is an address of the router itself",
        ])
    }

    @Test("a route or network given twice is refused where it is given again")
    func duplicates() throws {
        let errors = try Self.errors("""
            interfaces:
              - {name: eth0, addresses: [10.0.1.1/24]}
              - {name: eth0, addresses: [10.0.1.2/24]}
            routes:
              - {to: 10.0.1.0/24, via: [10.0.1.9]}
            """)
        #expect(errors == [
            "12:20: cube 'route': interface eth0 is named twice (interfaces[0])",
            "12:38: cube 'route': connected network 10.0.1.0/24 is also the connected network of interfaces[0].addresses[0]",
            "14:13: cube 'route': route 10.0.1.0/24 is also the connected network of interfaces[0].addresses[0]",
        ])
    }

    @Test("a router on XDP is refused: only TC can hand packets to Linux's neighbours")
    func xdp() throws {
        let errors = try Self.errors(Self.interfaces, hook: "xdp")
        #expect(errors == ["7:7: cube 'route': " + Router.xdpRefusal])
    }

    @Test("the table holds the addresses, their networks and broadcast addresses, and the routes")
    func table() throws {
        let config = try Router.Config.read(.object([
            "interfaces": .list([.object(["name": .string("eth0"),
                                          "addresses": .list([.prefix(IPPrefix("10.0.1.1/24")!)])])]),
            "routes": .list([.object(["to": .prefix(IPPrefix("0.0.0.0/0")!), "via": .list([.address([10, 0, 1, 9])])])]),
        ]))
        let table = try Router.table(config).mapValues { $0.words(interfaces: ["eth0"]) }
        #expect(table == [IPPrefix("10.0.1.1/32")!: "local", IPPrefix("10.0.1.255/32")!: "local",
                          IPPrefix("10.0.1.0/24")!: "connected (eth0)", IPPrefix("0.0.0.0/0")!: "via 10.0.1.9 (eth0)"])
    }
}
