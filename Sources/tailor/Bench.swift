import ArgumentParser
import Foundation
import TailorKernel
import TailorLab

/// `tailor bench`: the benchmarks behind docs/benchmarks.md. Each prints a table
/// with its baseline measured in the same run, or JSON with `--output json`.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure tailor against its baselines (needs root for kernel benchmarks).",
        subcommands: [BenchDatapath.self, BenchSpec.self, BenchPlan.self, BenchMigration.self, BenchReconcile.self, BenchCubes.self, BenchFirewall.self, BenchFirewallUpdate.self]
    )
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

/// How a command prints its data.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
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

/// Writes `value` as pretty JSON with sorted keys on stdout.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Formats rows as a plain table with right-aligned numeric columns.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    let line = { (row: [String]) in
        row.enumerated().map { index, cell in
            index == 0 ? cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[index] - cell.count) + cell
        }.joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}
