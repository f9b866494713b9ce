import ArgumentParser
import Foundation
import TailorCommandLine
import TailorDatapath
import TailorKernel
import TailorLab
import TailorReconcile

/// `tailor-bench reconcile`: how long an edit of a spec file takes to be live with
/// `tailor run` watching the directory, against running `tailor apply` by hand.
struct BenchReconcile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Edit -> applied latency of tailor run (debounce included) vs a tailor apply process."
    )

    @Option(help: "Edits timed per way.")
    var edits = 21

    @Option(help: "The daemon's debounce in milliseconds.")
    var debounce = 100

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct Row: Codable {
        var way: String
        var p50Ms: Double, p90Ms: Double, maxMs: Double
    }

    func run() throws {
        let rows = try withBenchLab("tr") { lab, pinRoot in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-bench-\(UUID())").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let file = directory + "/edge.yaml"
            let write = { (port: Int) throws -> String in
                // Another port for the filter: each edit replaces the filter cube.
                try lab.filterChainSpec(droppingUDP: port).write(toFile: file, atomically: true, encoding: .utf8)
                return DesiredChain.load([directory]).chains.first?.digest ?? ""
            }
            let live = { (digest: String) in
                ((try? MetaRecordReader.read(ChainPins("edge", under: pinRoot)[.meta])) ?? nil)?.specDigest == digest
            }
            let tailor = try tailorExecutable()

            // Baseline: each edit applied by a tailor apply process.
            var applied: [Double] = []
            for edit in 0..<edits {
                let digest = try write(1000 + edit)
                applied.append(try ContinuousClock().measure {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: tailor)
                    process.arguments = ["apply", directory, "--bpffs", pinRoot.path]
                    process.standardOutput = FileHandle.nullDevice
                    try process.run()
                    process.waitUntilExit()
                    guard live(digest) else { throw CommandError("tailor apply did not apply edit \(edit)") }
                }.milliseconds)
            }

            // tailor run: from the file written to the new digest in the chain's meta record.
            let daemon = Process()
            daemon.executableURL = URL(fileURLWithPath: tailor)
            daemon.arguments = ["run", directory, "--bpffs", pinRoot.path, "--debounce", "\(debounce)", "--interval", "600"]
            daemon.standardError = FileHandle.nullDevice
            try daemon.run()
            defer {
                daemon.terminate()
                daemon.waitUntilExit()
                try? Chain.open("edge", pinRoot: pinRoot).destroy()
            }
            var watched: [Double] = []
            for edit in 0..<edits {
                Thread.sleep(forTimeInterval: 0.3)
                let start = ContinuousClock.now
                let digest = try write(2000 + edit)
                while !live(digest) {
                    guard ContinuousClock.now - start < .seconds(10) else {
                        throw CommandError("tailor run did not apply edit \(edit) within 10 s")
                    }
                    usleep(500)
                }
                watched.append((ContinuousClock.now - start).milliseconds)
            }
            let row = { (way: String, values: [Double]) -> Row in
                let sorted = values.sorted()
                return Row(way: way, p50Ms: median(sorted), p90Ms: sorted[Int(Double(sorted.count - 1) * 0.9)],
                           maxMs: sorted.last ?? 0)
            }
            return [row("tailor apply, a process per edit (baseline)", applied),
                    row("tailor run, watching (debounce \(debounce) ms)", watched)]
        }
        if output == .json { return try printJSON(rows) }
        let f = { (v: Double) in String(format: "%.1f", v) }
        print("Edit of a spec file -> live in the kernel (\(edits) edits each, ms)\n")
        print(table(["way", "p50", "p90", "max", "p50 vs baseline"], rows.map { row in
            [row.way, f(row.p50Ms), f(row.p90Ms), f(row.maxMs), String(format: "%.2fx", row.p50Ms / rows[0].p50Ms)]
        }))
    }
}
