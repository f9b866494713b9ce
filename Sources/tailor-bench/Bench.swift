import ArgumentParser
import Foundation
import TailorCommandLine
import TailorKernel
import TailorLab

/// `tailor-bench`: the benchmarks behind docs/benchmarks.md, an executable of their
/// own so that the `tailor` binary carries none of them. Each prints a table with its
/// baseline measured in the same run, or JSON with `--output json`.
@main
struct TailorBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tailor-bench",
        abstract: "Measure tailor against its baselines (needs root for kernel benchmarks).",
        subcommands: [BenchDatapath.self, BenchSpec.self, BenchPlan.self, BenchMigration.self, BenchReconcile.self, BenchCubes.self, BenchFirewall.self, BenchFirewallUpdate.self, BenchGateway.self]
    )
}

/// The `tailor` built beside this executable (`swift build` puts both in one
/// directory), for the benchmarks that time it as an operator runs it: as a process.
func tailorExecutable() throws -> String {
    let bench = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    let tailor = URL(fileURLWithPath: bench).deletingLastPathComponent().appendingPathComponent("tailor").path
    guard FileManager.default.isExecutableFile(atPath: tailor) else {
        throw CommandError("no tailor executable beside \(bench): build both (swift build) or copy tailor there")
    }
    return tailor
}

/// Runs `body` with a lab `create` makes from a namespace prefix and an interface
/// prefix of this process's own, and a pin root of its own; both are removed
/// afterwards (`prefix` keeps interface names of concurrent benchmarks apart).
func withBenchLab<Lab, R>(_ prefix: String, _ create: (String, String) throws -> Lab, destroy: (Lab) -> Void,
                          _ body: (Lab, PinRoot) throws -> R) throws -> R {
    let id = ProcessInfo.processInfo.processIdentifier
    let lab = try create("tailor-bench-\(prefix)\(id)", "\(prefix)\(id)")
    defer { destroy(lab) }
    let pinRoot = try PinRoot("/sys/fs/bpf/tailor-bench-\(prefix)\(id)")
    try pinRoot.makeDirectory(pinRoot.path)
    defer { try? pinRoot.removeTree(pinRoot.path) }
    return try body(lab, pinRoot)
}

/// `withBenchLab` with the two-namespace veth lab the chains attach to.
func withBenchLab<R>(_ prefix: String, _ body: (VethLab, PinRoot) throws -> R) throws -> R {
    try withBenchLab(prefix, { try VethLab.create(namespacePrefix: $0, interfacePrefix: $1) }, destroy: { $0.destroy() },
                     body)
}

/// ns/packet of each program under BPF_PROG_TEST_RUN: the median over `rounds` of
/// wall time / `repeats`, the programs alternating in each round, after a warm-up
/// run of each (the kernel's own figure is in whole nanoseconds).
func nsPerPacket(_ programs: [Program], _ packet: [UInt8], repeats: Int, rounds: Int) throws -> [Double] {
    let time = { (program: Program) throws -> Double in
        try ContinuousClock().measure { _ = try program.testRun(packet, repeat: repeats) }.nanoseconds
            / Double(repeats)
    }
    for program in programs { _ = try time(program) }
    var samples = [[Double]](repeating: [], count: programs.count)
    for _ in 0..<rounds {
        for (index, program) in programs.enumerated() { samples[index].append(try time(program)) }
    }
    return samples.map(median)
}

/// The median of `values`.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

extension Duration {
    var microseconds: Double { Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12 }
    var nanoseconds: Double { Double(components.seconds) * 1e9 + Double(components.attoseconds) / 1e9 }
}
