import ArgumentParser
import Foundation
import TailorCommandLine
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorSpec

/// `tailor-bench cubes`: what each built-in cube type costs per packet, alone in an
/// XDP chain, against the counter cube (the cheapest cube that does something).
struct BenchCubes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cubes",
        abstract: "ns/packet of each built-in cube type alone in an XDP chain, against the counter cube."
    )

    @Option(help: "BPF_PROG_TEST_RUN repeats per measurement.")
    var repeats = 1_000_000

    @Option(help: "Measurements per cube; the median is reported.")
    var rounds = 7

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct Row: Codable {
        var cube: String
        var setup: String
        var ns: Double
        var vsCounter: Double
    }

    /// Each cube as measured, and what the packet meets in it.
    static func cubes() throws -> [(String, String, CubeBlueprint)] {
        let prefixes = (0..<1000).map { IPPrefix(address: [198, 18, UInt8($0 / 250), UInt8($0 % 250)], length: 32) }
        return [
            ("counter", "baseline", try Counter.blueprint()),
            ("tag", "records the path", try Tag.blueprint(id: 1, record: true)),
            ("filter", "64 rules, none matches", try Filter.blueprint(rules: (0..<64).map {
                .init(proto: 6, destinationPorts: UInt16(1000 + $0)...UInt16(1000 + $0), action: .drop)
            }, defaultAction: .pass)),
            ("classifier", "64 rules, none matches: the default output", try Classifier.blueprint(
                rules: (0..<64).map { (.init(proto: 6, destinationPorts: UInt16(1000 + $0)...UInt16(1000 + $0), action: .pass), 0) },
                defaultOutput: 0, outputs: 1)),
            ("ratelimit", "1 source under its limit, 1,000 listed /32s", try RateLimit.blueprint(
                rate: 1_000_000_000, burst: 1_000_000_000, drop: prefixes)),
        ]
    }

    func run() throws {
        let rows = try withBenchLab("tk") { lab, pinRoot in
            let packet = BenchDatapath.packet(lab)
            let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .xdp(.native))
            var measured: [(String, String, Double)] = []
            for (name, setup, blueprint) in try Self.cubes() {
                let chain = try Chain.create(ChainSettings(name: "cube-\(name)", hook: hook),
                                             topology: .line([(name, blueprint)]), pinRoot: pinRoot)
                defer { try? chain.destroy() }
                let ns = try nsPerPacket([chain.rootProgram], packet, repeats: repeats, rounds: rounds)[0]
                measured.append((name, setup, ns))
            }
            let baseline = measured[0].2
            return measured.map { Row(cube: $0.0, setup: $0.1, ns: $0.2, vsCounter: $0.2 / baseline) }
        }
        if output == .json { return try printJSON(rows) }
        print("One cube in an XDP chain, BPF_PROG_TEST_RUN x \(repeats), median of \(rounds) (ns/packet)\n")
        print(table(["cube", "what the packet meets", "ns", "vs counter"], rows.map {
            [$0.cube, $0.setup, String(format: "%.1f", $0.ns), String(format: "%.2fx", $0.vsCounter)]
        }))
    }
}
