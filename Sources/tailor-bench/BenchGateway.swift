import ArgumentParser
import Foundation
import TailorCommandLine
import TailorDatapath
import TailorKernel
import TailorLab
import TailorReconcile

/// `tailor-bench gateway`: UDP packets/s from the client to the server of a router
/// lab through three gateways in one run: Linux forwarding alone, Linux forwarding
/// with iptables NAT (the gateway's masquerade and port forward), and the cube
/// gateway of specs/gateway/ (firewall, nat, router) with Linux forwarding off.
struct BenchGateway: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "UDP packets/s through the cube gateway of specs/gateway vs Linux forwarding with iptables NAT and alone."
    )

    @Option(help: "The gateway's specs (written for `tailor lab up --topology gateway`).")
    var specs = "specs/gateway"

    @Option(help: "Seconds each gateway is flooded per round.")
    var seconds = 2.0

    @Option(help: "Rounds; the gateways take turns in each, and the median is reported.")
    var rounds = 3

    @Option(help: "Which gateways to measure (linux, iptables, tailor); the ratio needs iptables.")
    var gateway: [String] = ["linux", "iptables", "tailor"]

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct Row: Codable {
        var gateway: String
        var packetsPerSecond: Double
        var vsIptablesNAT: Double
        /// Each round's packets/s, to show the spread.
        var rounds: [Double]
    }

    /// The lab's iptables NAT: what specs/gateway's nat cubes do, as Linux's rules (a
    /// port range needs a protocol: TCP and UDP get ports of the range, ICMP its id).
    static func iptablesNAT(_ lab: RouterLab) -> String {
        let (rs, client) = (lab.routerServerSide, lab.client)
        return """
            *nat
            -A POSTROUTING -o \(rs.interfaceName) -s 10.98.1.0/24 -p udp -j SNAT --to-source \(rs.ipv4):20000-29999
            -A POSTROUTING -o \(rs.interfaceName) -s 10.98.1.0/24 -p tcp -j SNAT --to-source \(rs.ipv4):20000-29999
            -A POSTROUTING -o \(rs.interfaceName) -s 10.98.1.0/24 -j SNAT --to-source \(rs.ipv4)
            -A PREROUTING -i \(rs.interfaceName) -d \(rs.ipv4) -p tcp --dport 8080 -j DNAT --to-destination \(client.ipv4):80
            COMMIT

            """
    }

    func run() throws {
        guard FileManager.default.fileExists(atPath: specs) else {
            throw CommandError("no spec directory \(specs): run from the repository or give --specs")
        }
        let rows = try withBenchLab("gw", { try RouterLab.create(namespacePrefix: $0, interfacePrefix: $1, linuxForwards: true) },
                                    destroy: { $0.destroy() }) { lab, pinRoot in try measure(lab, pinRoot, desired(lab)) }
        if output == .json { return try printJSON(rows) }
        print("UDP from the client to the server through the router namespace (veth in and out), one flow, "
              + "sent by the kernel (XDP live frames) and dropped by XDP on the server's veth, \(seconds) s per gateway "
              + "per round, median of \(rounds) rounds\n")
        print(table(["gateway", "packets/s", "vs iptables NAT", "rounds"], rows.map {
            [$0.gateway, String(format: "%.0f", $0.packetsPerSecond), String(format: "%.2fx", $0.vsIptablesNAT),
             $0.rounds.map { String(format: "%.0f", $0) }.joined(separator: " ")]
        }))
    }

    /// The gateway's chains for `lab`: the specs with the lab's names.
    func desired(_ lab: RouterLab) throws -> [DesiredChain] {
        let (chains, diagnostics) = try lab.withAdaptedSpecs(from: specs) { DesiredChain.load([$0]) }
        guard !diagnostics.hasErrors, !chains.isEmpty else {
            throw CommandError("no chains in \(specs) (run from the repository or give --specs)\n"
                               + diagnostics.sorted.map(\.description).joined(separator: "\n"))
        }
        return chains
    }

    func measure(_ lab: RouterLab, _ pinRoot: PinRoot, _ desired: [DesiredChain]) throws -> [Row] {
        let router = lab.routerClientSide.namespaceName
        let sysctl = { (forwarding: Bool) in
            try TailorLab.run("ip", ["netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=\(forwarding ? 1 : 0)"])
        }
        var frame = PacketBuilder(from: lab.client.ipv4, to: lab.server.ipv4, .udp(sport: 40000, dport: 9),
                                  payload: [UInt8](repeating: 0x5a, count: 64))
        (frame.sourceMAC, frame.destinationMAC) = (lab.client.macBytes, lab.routerClientSide.macBytes)
        let generator = try TrafficGenerator(frame.bytes, on: lab.client, peer: lab.routerClientSide)
        // The server's veth drops what it gets at once: the gateway is what is measured.
        let sink = try TrafficSink(on: lab.server)
        defer { withExtendedLifetime(sink) {} }
        let duration = Duration.milliseconds(Int(seconds * 1000))
        let flood = { () throws -> Double in
            let before = try lab.serverPackets()
            let elapsed = try generator.flood(for: duration)
            return Double(try lab.serverPackets() - before) / elapsed
        }
        let all: [(String, String, () throws -> Double)] = [
            ("linux", "Linux forwarding", { try sysctl(true); return try flood() }),
            ("iptables", "Linux forwarding + iptables NAT", {
                try sysctl(true)
                try TailorLab.run("ip", ["netns", "exec", router, "iptables-restore"], input: Self.iptablesNAT(lab))
                // The nat table and the connection tracking it brought go with it.
                defer { _ = try? TailorLab.run("ip", ["netns", "exec", router, "nft", "flush", "ruleset"]) }
                return try flood()
            }),
            ("tailor", "tailor gateway (firewall, nat, router; TC)", {
                try sysctl(false)
                defer { _ = try? sysctl(true) }
                let reconciliation = Reconciliation(desired: desired, executor: Executor(pinRoot: pinRoot), prune: .prune)
                _ = try reconciliation.apply(try reconciliation.verified(reconciliation.plan()))
                defer { for chain in desired { try? Chain.open(chain.settings.name, pinRoot: pinRoot).destroy() } }
                return try flood()
            }),
        ]
        let gateways = all.filter { gateway.contains($0.0) }
        var samples = [[Double]](repeating: [], count: gateways.count)
        for _ in 0..<rounds {
            for (index, gateway) in gateways.enumerated() { samples[index].append(try gateway.2()) }
        }
        let baseline = zip(gateways, samples).first { $0.0.0 == "iptables" }.map { median($0.1) } ?? .nan
        return zip(gateways, samples).map { gateway, rounds in
            Row(gateway: gateway.1, packetsPerSecond: median(rounds), vsIptablesNAT: median(rounds) / baseline, rounds: rounds)
        }
    }
}
