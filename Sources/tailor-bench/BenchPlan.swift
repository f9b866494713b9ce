import ArgumentParser
import Foundation
import TailorCommandLine
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorObjects
import TailorReconcile

/// `tailor-bench plan`: planning cost at scale (pure: desired digests + plan), and
/// apply latency per action class on a lab.
struct BenchPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Plan time and peak memory for 100 chains x 8 cubes x 1,000 entries; apply latency per action."
    )

    @Option(help: "Chains in the planning benchmark.")
    var chains = 100

    @Option(help: "Cubes per chain.")
    var cubes = 8

    @Option(help: "Table entries per cube.")
    var entries = 1000

    @Option(help: "Runs per measurement; the median is reported.")
    var runs = 5

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct Report: Codable {
        var chains: Int, cubes: Int, entries: Int
        var sha256BaselineMs: Double
        var planNoChangeMs: Double
        var planTenPercentChangedMs: Double
        var peakRSSMB: Double
        var applyMs: [String: Double]
    }

    func run() throws {
        let object = try Tag.blueprint(id: 1).object
        let desired = (0..<chains).map { chain in
            DesiredChain(
                settings: ChainSettings(name: "c\(chain)", hook: ChainHook(interface: "eth\(chain)", kind: .tcIngress)),
                topology: .line((0..<cubes).map { cube in
                    ("k\(cube)", CubeBlueprint(type: "bench", object: object, rodata: ["tag_id": [UInt8(cube), 0]],
                                               tables: ["t": (0..<entries).map { Self.entry($0, chain, cube) }]))
                }))
        }
        let observed = try desired.map(Self.observed)
        var changed = desired
        for index in stride(from: 0, to: changed.count, by: 10) {
            var topology = changed[index].topology
            topology.nodes["k0"]?.blueprint.rodata = ["tag_id": [9, 9]]
            changed[index] = DesiredChain(settings: changed[index].settings, topology: topology)
        }
        // Baseline: hashing every byte the plan digests, once, with nothing else.
        let bytes = desired.flatMap { $0.topology.nodes.values.flatMap { $0.blueprint.tables["t"] ?? [] } }
            .flatMap { $0.key + $0.value }
        let baseline = time { _ = CubeBlueprint(type: "hash", object: bytes).objectDigest }
        // Planning includes computing the desired digests, as a run from specs does.
        let unchanged = time {
            let fresh = desired.map { DesiredChain(settings: $0.settings, topology: $0.topology) }
            precondition(Planner.plan(desired: fresh, observed: observed).isEmpty)
        }
        let tenPercent = time {
            let fresh = changed.map { DesiredChain(settings: $0.settings, topology: $0.topology) }
            // One chain in ten, from the first: (chains + 9) / 10 of them.
            precondition(Planner.plan(desired: fresh, observed: observed).summary.replace == (chains + 9) / 10)
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let report = Report(chains: chains, cubes: cubes, entries: entries, sha256BaselineMs: baseline,
                            planNoChangeMs: unchanged, planTenPercentChangedMs: tenPercent,
                            peakRSSMB: Double(usage.ru_maxrss) / 1024, applyMs: try applyLatencies())
        if output == .json { return try printJSON(report) }
        let f = { (v: Double) in String(format: "%.2f", v) }
        print("Planning \(chains) chains x \(cubes) cubes x \(entries) table entries (median of \(runs), ms)\n")
        print(table(["measure", "ms", "vs sha256 baseline"], [
            ["sha256 of all table bytes (baseline)", f(baseline), "1.00x"],
            ["plan, nothing changed", f(unchanged), String(format: "%.2fx", unchanged / baseline)],
            ["plan, 10% of chains changed", f(tenPercent), String(format: "%.2fx", tenPercent / baseline)],
        ]))
        print("\nPeak RSS: \(f(report.peakRSSMB)) MB\n")
        print("Apply latency on a lab chain of 4 tags (median of \(runs), ms)\n")
        print(table(["action", "ms"], report.applyMs.sorted { $0.key < $1.key }.map { [$0.key, f($0.value)] }))
    }

    func time(_ body: () throws -> Void) rethrows -> Double {
        median(try (0..<runs).map { _ in try ContinuousClock().measure(body).microseconds / 1000 })
    }

    static func entry(_ index: Int, _ chain: Int, _ cube: Int) -> TableEntry {
        TableEntry(key: withUnsafeBytes(of: UInt32(index).littleEndian, Array.init),
                   value: withUnsafeBytes(of: UInt64(chain * 1_000_000 + cube * 1000 + index).littleEndian, Array.init))
    }

    /// The chain as if applied: its record from a fresh slot plan.
    static func observed(_ chain: DesiredChain) throws -> ObservedChain {
        let plan = try SlotPlan.make(live: [:], desired: chain.topology, capacity: 256)
        let records = plan.result.mapValues {
            CubeRecord(type: "bench", slot: $0.slot, next: $0.next, digest: $0.digest,
                       objectDigest: "", program: UInt32($0.slot + 1), maps: [:])
        }
        return ObservedChain(name: chain.settings.name,
                             record: ChainRecord(settings: chain.settings, specDigest: chain.digest, cubes: records),
                             slots: [:], drift: [])
    }

    /// Create, replace one cube (state reused), insert a cube (path copy), change
    /// table entries in place, destroy.
    func applyLatencies() throws -> [String: Double] {
        try withBenchLab("tp") { lab, pinRoot in
            let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
            let tags = try (1...4).map { ("t\($0)", try Tag.blueprint(id: UInt16($0))) }
            var replaced = tags
            replaced[2].1 = try Tag.blueprint(id: 30)
            var inserted = tags
            inserted.insert(("x", try Tag.blueprint(id: 99)), at: 2)
            let executor = Executor(pinRoot: pinRoot)
            func apply(_ cubes: [(String, CubeBlueprint)]?) throws -> Double {
                let desired = cubes.map {
                    [DesiredChain(settings: ChainSettings(name: "b", hook: hook), topology: .line($0))]
                } ?? []
                let plan = Planner.plan(desired: desired, observed: Observer.observe(pinRoot: pinRoot))
                return try ContinuousClock().measure { _ = try executor.apply(plan, desired: desired) }.microseconds / 1000
            }
            // An entry-safe table of 1,000 ports (bpf/bench/blocklist.c) in front of the tags.
            guard let blocklist = benchObjects.bytes(named: "blocklist") else {
                throw CommandError("this tailor-bench binary was built without bpf/bench/blocklist.c")
            }
            let ports = { (shift: Int) in
                CubeBlueprint(type: "object", object: blocklist, tables: ["blocked": (0..<1000).map {
                    TableEntry(key: withUnsafeBytes(of: UInt16(20000 + $0 + shift).littleEndian, Array.init), value: [1])
                }])
            }
            var results: [String: [Double]] = [:]
            for _ in 0..<runs {
                results["create chain", default: []].append(try apply(tags))
                results["replace a cube (state reused)", default: []].append(try apply(replaced))
                results["insert a cube (path copy)", default: []].append(try apply(inserted))
                _ = try apply([("block", ports(0))] + tags)
                results["table entries in place (1 in, 1 out of 1,000)", default: []]
                    .append(try apply([("block", ports(1))] + tags))
                results["destroy chain", default: []].append(try apply(nil))
            }
            return results.mapValues(median)
        }
    }
}
