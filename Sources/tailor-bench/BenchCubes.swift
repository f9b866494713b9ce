import ArgumentParser
import Foundation
import TailorCommandLine
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorSpec

/// `tailor-bench cubes`: what each built-in cube type costs per packet, alone in an
/// XDP chain (TC for the types that run only there), against the counter cube on
/// the same hook (the cheapest cube that does something).
struct BenchCubes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cubes",
        abstract: "ns/packet of each built-in cube type alone in an XDP (or TC) chain, against the counter cube."
    )

    @Option(help: "BPF_PROG_TEST_RUN repeats per measurement.")
    var repeats = 1_000_000

    @Option(help: "Measurements per cube; the median is reported.")
    var rounds = 7

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct Row: Codable {
        var cube: String
        var hook: String
        var setup: String
        var ns: Double
        var vsCounter: Double
    }

    /// Each cube as measured (alone, but for nat: two), what the packet meets in it,
    /// and whether it is measured on TC; the two counters are the baselines.
    static func cubes(_ lab: VethLab) throws -> [(String, String, [CubeBlueprint], tc: Bool)] {
        let prefixes = (0..<1000).map { IPPrefix(address: [198, 18, UInt8($0 / 250), UInt8($0 % 250)], length: 32) }
        let routes = prefixes.map { (to: IPPrefix(address: [10, 60] + $0.address[2...3], length: 32), via: [[UInt8]([10, 99, 0, 1])]) }
        let router = try Router.blueprint(interfaces: [(lab.b.interfaceName, [IPPrefix("10.99.0.254/24")!])], routes: routes)
            .bound(to: [lab.b.interfaceName: UInt32(try lab.b.interface().index.rawValue)])
        // Each nat rewrites the source address and the other puts it back, keeping the port: so the
        // same skb, run again and again, is always a packet of a live flow to both.
        let (a, b) = (PacketBuilder.Address(lab.a.ipv4).bytes, [UInt8]([10, 99, 0, 254]))
        let nat = { (from: [UInt8], to: [UInt8]) in
            try NAT.blueprint(snat: [NAT.SNATRule(source: IPPrefix(address: from, length: 32), to: to, ports: 1024...65535)])
        }
        return [
            ("counter", "baseline", [try Counter.blueprint()], tc: false),
            ("counter", "baseline", [try Counter.blueprint()], tc: true),
            ("tag", "records the path", [try Tag.blueprint(id: 1, record: true)], tc: false),
            ("filter", "64 rules, none matches", [try Filter.blueprint(rules: (0..<64).map {
                .init(proto: 6, destinationPorts: UInt16(1000 + $0)...UInt16(1000 + $0), action: .drop)
            }, defaultAction: .pass)], tc: false),
            ("classifier", "64 rules, none matches: the default output", [try Classifier.blueprint(
                rules: (0..<64).map { (.init(proto: 6, destinationPorts: UInt16(1000 + $0)...UInt16(1000 + $0), action: .pass), 0) },
                defaultOutput: 0, outputs: 1)], tc: false),
            ("ratelimit", "1 source under its limit, 1,000 listed /32s", [try RateLimit.blueprint(
                rate: 1_000_000_000, burst: 1_000_000_000, drop: prefixes)], tc: false),
            ("router", "1,000 routes; to a connected network: TTL, MTU, bpf_redirect_neigh", [router], tc: true),
            ("nat x2", "a live UDP flow's source rewritten by one, put back by the other", [try nat(a, b), try nat(b, a)],
             tc: true),
        ]
    }

    func run() throws {
        let rows = try withBenchLab("tk") { lab, pinRoot in
            let packet = BenchDatapath.packet(lab)
            let hook = { (tc: Bool) in
                ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: tc ? .tcIngress : .xdp(.native))
            }
            var measured: [(String, String, Double, tc: Bool)] = []
            for (name, setup, blueprints, tc) in try Self.cubes(lab) {
                let chain = try Chain.create(ChainSettings(name: "cube-\(name.prefix { $0 != " " })", hook: hook(tc)),
                                             topology: .line(blueprints.enumerated().map { ("c\($0.offset)", $0.element) }),
                                             pinRoot: pinRoot)
                defer { try? chain.destroy() }
                let ns = try nsPerPacket([chain.rootProgram], packet, repeats: repeats, rounds: rounds)[0]
                measured.append((name, setup, ns, tc))
            }
            let baseline = { (tc: Bool) in measured.first { $0.0 == "counter" && $0.tc == tc }?.2 ?? .nan }
            return measured.map {
                Row(cube: $0.0, hook: $0.tc ? "tc" : "xdp", setup: $0.1, ns: $0.2, vsCounter: $0.2 / baseline($0.tc))
            }
        }
        if output == .json { return try printJSON(rows) }
        print("One cube in a chain, BPF_PROG_TEST_RUN x \(repeats), median of \(rounds) (ns/packet); "
              + "vs counter: the counter cube on the same hook\n")
        print(table(["cube", "hook", "what the packet meets", "ns", "vs counter"], rows.map {
            [$0.cube, $0.hook, $0.setup, String(format: "%.1f", $0.ns), String(format: "%.2fx", $0.vsCounter)]
        }))
    }
}
