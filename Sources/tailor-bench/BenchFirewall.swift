import ArgumentParser
import Foundation
import TailorCommandLine
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorReference

/// `tailor-bench firewall`: the firewall cube's cost per packet as rule sets grow
/// (BPF_PROG_TEST_RUN), and its throughput against iptables and nftables with the
/// same rules on the same veth path (real packets through a router namespace).
struct BenchFirewall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "firewall",
        abstract: "Firewall ns/packet at 10 to 10,000 rules; packets/s against iptables and nftables on a veth router."
    )

    @Option(help: "BPF_PROG_TEST_RUN repeats per measurement.")
    var repeats = 200_000

    @Option(help: "Measurements per packet; the median is reported.")
    var rounds = 5

    @Option(help: "Rule counts for the per-packet cost.")
    var rules: [Int] = [10, 100, 1000, 10_000]

    @Option(help: "Rule counts for the real-packet comparison.")
    var realRules: [Int] = [10, 100, 1000, 10_000]

    @Option(help: "Seconds each contender is flooded in the real-packet comparison.")
    var seconds = 2.0

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct CostRow: Codable {
        var rules: Int
        var packet: String
        var ns: Double
        var vsTenRules: Double
        var loadMs: Double
    }

    struct ThroughputRow: Codable {
        var rules: Int
        var filter: String
        var packetsPerSecond: Double
        var vsIptables: Double?
    }

    struct Report: Codable {
        var cost: [CostRow]
        var throughput: [ThroughputRow]
    }

    func run() throws {
        let report = Report(cost: try cost(), throughput: try throughput())
        if output == .json { return try printJSON(report) }
        print("Firewall cube alone in an XDP chain, BPF_PROG_TEST_RUN x \(repeats), median of \(rounds) (ns/packet)")
        print("(\"none\": a rule's destination, another protocol: every lookup hits, the AND is empty)\n")
        print(table(["rules", "packet", "ns", "vs 10 rules", "load ms"], report.cost.map {
            ["\($0.rules)", $0.packet, String(format: "%.1f", $0.ns), String(format: "%.2fx", $0.vsTenRules),
             String(format: "%.0f", $0.loadMs)]
        }))
        print("\nUDP through a router namespace (veth in and out), \(seconds) s flood per row; "
            + "the packet matches no rule (every rule is walked by iptables)\n")
        print(table(["rules", "filter", "packets/s", "vs iptables"], report.throughput.map {
            ["\($0.rules)", $0.filter, String(format: "%.0f", $0.packetsPerSecond),
             $0.vsIptables.map { String(format: "%.2fx", $0) } ?? ""]
        }))
    }

    /// ns/packet at each rule count for packets matching early, late and none, and
    /// for "none" with every stage kept (what the load-time specialisation saves).
    func cost() throws -> [CostRow] {
        try withBenchLab("fw") { lab, pinRoot in
            let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .xdp(.native))
            var rows: [CostRow] = []
            for count in rules {
                let bench = FirewallBenchmarkSet(count: count)
                let variants: [(String, CubeBlueprint, [(String, PacketBuilder)])] = [
                    ("specialised", try bench.set.blueprint, [("early", bench.early), ("late", bench.late), ("none", bench.none)]),
                    ("all stages", try Firewall.blueprint(rules: bench.set.rules, policy: .accept, acceptEstablished: false,
                                                          specialised: false), [("none, all stages", bench.none)]),
                ]
                for (name, blueprint, packets) in variants {
                    let start = ContinuousClock.now
                    let chain = try Chain.create(ChainSettings(name: "fw-\(count)-\(name.prefix(3))", hook: hook),
                                                 topology: .line([("fw", blueprint)]), pinRoot: pinRoot)
                    let loadMs = (ContinuousClock.now - start).microseconds / 1000
                    defer { try? chain.destroy() }
                    for (packet, builder) in packets {
                        let ns = try nsPerPacket([chain.rootProgram], builder.bytes, repeats: repeats, rounds: rounds)[0]
                        rows.append(CostRow(rules: count, packet: packet, ns: ns, vsTenRules: 0, loadMs: loadMs))
                    }
                }
            }
            return rows.map { row in
                var row = row
                let base = rows.first { $0.packet == row.packet }?.ns ?? row.ns
                row.vsTenRules = row.ns / base
                return row
            }
        }
    }

    /// Packets/s through the router lab with each filter holding the same rules.
    func throughput() throws -> [ThroughputRow] {
        try withBenchLab("bf", { try RouterLab.create(namespacePrefix: $0, interfacePrefix: $1, linuxForwards: true) },
                         destroy: { $0.destroy() }) { lab, pinRoot in try throughput(lab, pinRoot) }
    }

    func throughput(_ lab: RouterLab, _ pinRoot: PinRoot) throws -> [ThroughputRow] {
        let sender = try PacketSocket(on: lab.client)
        let router = lab.routerClientSide.namespaceName
        let duration = Duration.milliseconds(Int(seconds * 1000))
        var rows: [ThroughputRow] = []
        for count in realRules {
            let bench = FirewallBenchmarkSet(count: count)
            var packet = bench.none
            packet.sourceMAC = lab.client.macBytes
            packet.destinationMAC = lab.routerClientSide.macBytes
            let frame = packet.bytes
            let measure = { () throws -> Double in
                let before = try lab.serverPackets()
                let start = ContinuousClock.now
                _ = try sender.flood(frame, for: duration)
                let elapsed = (ContinuousClock.now - start).microseconds / 1e6
                return Double(try lab.serverPackets() - before) / elapsed
            }
            let iptables = { (tool: String, script: String) throws -> Double in
                try TailorLab.run("ip", ["netns", "exec", router, tool], input: script)
                defer {
                    let open = FirewallRuleSet(rules: [], policy: .accept, acceptEstablished: false)
                    _ = try? TailorLab.run("ip", ["netns", "exec", router, tool], input: open.iptablesRestore(ipv6: false))
                }
                return try measure()
            }
            let tailor = { (kind: ChainHook.Kind, name: String) throws -> Double in
                let chain = try Chain.create(
                    ChainSettings(name: "fw-\(count)-\(name)",
                                  hook: ChainHook(interface: lab.routerClientSide.interfaceName, namespace: router, kind: kind)),
                    topology: .line([("fw", try bench.set.blueprint)]), pinRoot: pinRoot)
                defer { try? chain.destroy() }
                return try measure()
            }
            var measured: [(String, Double)] = [("no filter", try measure())]
            let restore = bench.set.iptablesRestore(ipv6: false)
            measured.append(("iptables (nft)", try iptables("iptables-restore", restore)))
            measured.append(("iptables-legacy", try iptables("iptables-legacy-restore", restore)))
            try TailorLab.run("ip", ["netns", "exec", router, "nft", "-f", "-"], input: bench.set.nftScript(table: "bench"))
            measured.append(("nftables", try measure()))
            try TailorLab.run("ip", ["netns", "exec", router, "nft", "delete", "table", "inet", "bench"])
            measured.append(("tailor (tc)", try tailor(.tcIngress, "tc")))
            measured.append(("tailor (xdp)", try tailor(.xdp(.native), "xdp")))
            let baseline = measured.first { $0.0 == "iptables (nft)" }?.1
            rows += measured.map { name, pps in
                ThroughputRow(rules: count, filter: name, packetsPerSecond: pps,
                              vsIptables: baseline.map { pps / $0 })
            }
        }
        return rows
    }
}
