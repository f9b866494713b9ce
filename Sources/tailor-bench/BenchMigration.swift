import ArgumentParser
import Foundation
import TailorCommandLine
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab

/// `tailor-bench migration`: what carrying state into a replacement costs.
struct BenchMigration: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migration",
        abstract: "Replacement with reused state end to end; migration of 10k-1M entries vs a plain batch copy."
    )

    @Option(help: "Entry counts to migrate.")
    var sizes: [Int] = [10_000, 100_000, 1_000_000]

    @Option(help: "Runs per measurement; the median is reported.")
    var runs = 3

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct Row: Codable {
        var entries: Int
        var batchCopyMs: Double
        var migrateMs: Double
        var migrateEntriesPerSecond: Double
        var ratio: Double
        var finalPassUnchangedMs: Double
    }

    struct Report: Codable {
        var replaceReusedStateMs: Double
        var rows: [Row]
    }

    /// v1 `{ u32 packets; u32 bytes; u8 tos; }` (12 bytes) to v2 `{ u64 packets;
    /// u64 bytes; u32 version; }` (24 bytes): two fields widened, one removed, one
    /// added with a default, keyed by a u32.
    static func layouts(_ entries: Int) -> (MapLayout, MapLayout) {
        let field = { (name: String, offset: Int, size: Int) in
            MapLayout.Field(name: name, offset: offset, size: size, type: "__u\(size * 8)", isInteger: true)
        }
        let key = [field("", 0, 4)]
        return (MapLayout(type: .hash, keySize: 4, valueSize: 12, maxEntries: entries, key: key,
                          value: [field("packets", 0, 4), field("bytes", 4, 4), field("tos", 8, 1)]),
                MapLayout(type: .hash, keySize: 4, valueSize: 24, maxEntries: entries, key: key,
                          value: [field("packets", 0, 8), field("bytes", 8, 8), field("version", 16, 4)],
                          defaults: ["version": 2]))
    }

    func run() throws {
        var rows: [Row] = []
        for entries in sizes {
            let (old, new) = Self.layouts(entries)
            guard case .migrate(let translation) = StateCarry.between(old, new, reset: false) else {
                throw CommandError("the benchmark's layouts do not migrate")
            }
            let source = try BPFMap.create(.hash, name: "bench_old", keySize: 4, valueSize: 12, maxEntries: entries)
            var keys = [UInt8](), values = [UInt8]()
            keys.reserveCapacity(entries * 4)
            values.reserveCapacity(entries * 12)
            for i in 0..<entries {
                keys += withUnsafeBytes(of: UInt32(i).littleEndian, Array.init)
                values += withUnsafeBytes(of: UInt32(i).littleEndian, Array.init)
                    + withUnsafeBytes(of: UInt32(i * 64).littleEndian, Array.init) + [7, 0, 0, 0]
            }
            try source.writeAll(FlatEntries(keys: keys, values: values, keySize: 4, valueSize: 12))
            var copy: [Double] = [], migrate: [Double] = [], final: [Double] = []
            for _ in 0..<runs {
                let plain = try BPFMap.create(.hash, name: "bench_copy", keySize: 4, valueSize: 12, maxEntries: entries)
                copy.append(try ContinuousClock().measure { try plain.writeAll(try source.readAll()) }.milliseconds)
                let target = try BPFMap.create(.hash, name: "bench_new", keySize: 4, valueSize: 24, maxEntries: entries)
                var copied = FlatEntries(keySize: 4, valueSize: 12)
                migrate.append(try ContinuousClock().measure {
                    copied = try source.readAll()
                    try target.writeAll(translation.translate(copied, cpus: 1))
                }.milliseconds)
                final.append(try ContinuousClock().measure {
                    let pass = translation.finalPass(before: copied, after: try source.readAll(),
                                                     current: try target.readAll(), cpus: 1)
                    precondition(pass.updates.count == 0 && pass.deletes.isEmpty)
                }.milliseconds)
            }
            let migrateMs = median(migrate), copyMs = median(copy)
            rows.append(Row(entries: entries, batchCopyMs: copyMs, migrateMs: migrateMs,
                            migrateEntriesPerSecond: Double(entries) / migrateMs * 1000, ratio: migrateMs / copyMs,
                            finalPassUnchangedMs: median(final)))
        }
        let report = Report(replaceReusedStateMs: try replaceWithReusedState(), rows: rows)
        if output == .json { return try printJSON(report) }
        let f = { (v: Double) in String(format: "%.2f", v) }
        print("Replacing a cube with its state reused, end to end (median of \(runs * 5)): "
              + "\(f(report.replaceReusedStateMs)) ms\n")
        print("Migrating a hash map: u32 counters widened to u64, a field removed, one added (median of \(runs))\n")
        print(table(["entries", "batch copy ms", "migrate ms", "entries/s", "vs copy", "final pass, unchanged ms"],
                    rows.map { row in
                        [String(row.entries), f(row.batchCopyMs), f(row.migrateMs),
                         String(format: "%.2fM", row.migrateEntriesPerSecond / 1e6), String(format: "%.2fx", row.ratio),
                         f(row.finalPassUnchangedMs)]
                    }))
    }

    /// A tag cube's config changed on a lab chain: a new instance that takes over
    /// the old one's counters, one slot write, no grace period.
    func replaceWithReusedState() throws -> Double {
        try withBenchLab("tm") { lab, pinRoot in
            let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
            let chain = try Chain.create(ChainSettings(name: "m", hook: hook),
                                         topology: .line([("t", try Tag.blueprint(id: 1))]), pinRoot: pinRoot)
            defer { try? chain.destroy() }
            var times: [Double] = []
            for round in 0..<(runs * 5) {
                let blueprint = try Tag.blueprint(id: UInt16(2 + round))
                times.append(try ContinuousClock().measure { try chain.apply(.line([("t", blueprint)])) }.milliseconds)
            }
            return median(times)
        }
    }
}

extension Duration {
    var milliseconds: Double { microseconds / 1000 }
}
