import Foundation
import Prometheus
import TailorDatapath
import TailorKernel
import TailorReconcile

/// A cube of a live chain, as a scrape names it: the `chain`, `cube` and `type`
/// labels of its series, and where its maps are pinned.
public struct LiveCube: Sendable, Hashable {
    public var chain: String
    public var cube: String
    public var type: String

    public init(chain: String, cube: String, type: String) {
        (self.chain, self.cube, self.type) = (chain, cube, type)
    }

    /// The cubes of the chains `observed` holds records for, in chain and slot order;
    /// leftovers of an interrupted apply are not live.
    public static func all(in observed: [ObservedChain]) -> [LiveCube] {
        observed.filter { !$0.isLeftover }.flatMap { chain in
            (chain.record?.cubes ?? [:]).sorted { $0.value.slot < $1.value.slot }.map { name, cube in
                LiveCube(chain: chain.name, cube: name, type: cube.type)
            }
        }
    }

    /// The pin of this cube's map `name`.
    func mapPin(_ name: String, under pinRoot: PinRoot) -> String {
        ChainPins(chain, under: pinRoot).cube(cube).map(name)
    }

    var labels: [(String, String)] { [("chain", chain), ("cube", cube), ("type", type)] }
}

/// A cube type's own counters: a per-CPU array of u64 indexed by an enum of the
/// cube's C source, one series per index, labelled with the enum's names.
///
/// The layout is declared here because the cube types (TailorCubes) do not yet
/// describe their counter maps, and the enums do not reach the objects' BTF (no
/// variable has their type); Tests/TailorDaemonTests/MetricsTests.swift checks
/// every entry against the enum in bpf/cubes/<type>.c and the map in the compiled
/// object, so a cube that changes either fails the test rather than exporting
/// mislabelled counts. At run time a map of another shape is skipped.
struct CubeCounterMap: Sendable {
    var cubeType: String
    var map: String
    /// The metric's name without its `_total`.
    var metric: String
    var help: String
    var label: String
    /// The label of each index, in index order: the C enum's names, lowercased and
    /// without their common prefix.
    var values: [String]

    static let all = [
        CubeCounterMap(
            cubeType: "firewall", map: "outcomes", metric: "tailor_firewall_packets",
            help: "Packets a firewall cube decided, by outcome (the outcomes map, summed over CPUs).",
            label: "outcome",
            values: ["rule_accept", "rule_drop", "established", "policy_accept", "policy_drop", "not_ip"]),
        CubeCounterMap(
            cubeType: "ratelimit", map: "drops", metric: "tailor_ratelimit_dropped",
            help: "Packets a ratelimit cube dropped, by reason (the drops map, summed over CPUs).",
            label: "reason", values: ["over_limit", "listed"]),
        CubeCounterMap(
            cubeType: "router", map: "outcomes", metric: "tailor_router_packets",
            help: "Packets a router cube routed or handed on, by outcome (the outcomes map, summed over CPUs).",
            label: "outcome", values: ["routed", "local", "no_route", "ttl_expired", "too_big", "no_interface"]),
        CubeCounterMap(
            cubeType: "nat", map: "outcomes", metric: "tailor_nat_packets",
            help: "Packets a nat cube translated or passed on untouched, by outcome (the outcomes map, summed over CPUs).",
            label: "outcome", values: ["flow", "new_dnat", "new_snat", "icmp_error", "untouched"]),
        CubeCounterMap(
            cubeType: "nat", map: "drops", metric: "tailor_nat_dropped",
            help: "Packets a nat cube dropped, by reason (the drops map, summed over CPUs).",
            label: "reason", values: ["no_port", "clash", "rewrite"]),
    ]

    /// The per-index sums over CPUs, or nil when the map is not the per-CPU array
    /// of u64 this declaration describes (an object built from other sources).
    func read(_ map: BPFMap) throws -> [UInt64]? {
        guard map.info.type == .perCPUArray, map.info.valueSize == 8, map.info.maxEntries == values.count else {
            return nil
        }
        return try values.indices.map { index in
            let key = withUnsafeBytes(of: UInt32(index).littleEndian, Array.init)
            guard let buffer = try map.lookup(key) else { return 0 }
            return map.perCPUValues(buffer).reduce(0) { sum, value in
                sum &+ value.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            }
        }
    }
}

/// The per-cube counters of the datapath, read from the kernel when Prometheus
/// scrapes (or `tailor status --output prometheus` runs), not kept in the process:
/// the kernel's counters are the truth and only a scrape needs them.
///
/// Each read fills a registry of its own, the counterpart of client_golang's
/// constant metrics: a cube that is gone has no series any more instead of a
/// stale one, and a cube replaced by a new instance without its state (a counter
/// cube re-created, say) starts again from zero, which Prometheus reads as a
/// counter reset. A cube whose maps cannot be read (a commit in progress moved a
/// pin) is left out of that scrape.
public enum CubeMetrics {
    /// The `tailor_counters` fields every cube has, in the ABI's terms (metric names without `_total`).
    static let abi: [(metric: String, help: String, value: @Sendable (CubeCounters) -> UInt64)] = [
        ("tailor_cube_packets", "Packets that entered the cube.", { $0.packets }),
        ("tailor_cube_bytes", "Bytes of the packets that entered the cube.", { $0.bytes }),
        ("tailor_cube_passed", "Packets whose path through the chain ended in this cube with pass.",
         { $0.passed }),
        ("tailor_cube_dropped", "Packets whose path through the chain ended in this cube with drop.",
         { $0.dropped }),
        ("tailor_cube_missed_tail_calls",
         "Tail calls from this cube that found the next slot empty (the chain's onMissingCube verdict applied).",
         { $0.missed }),
    ]

    /// Adds the counters of `cubes` to `registry`.
    static func add(_ cubes: [LiveCube], pinRoot: PinRoot, to registry: PrometheusCollectorRegistry) {
        let ownCounters = Dictionary(grouping: CubeCounterMap.all, by: \.cubeType)
        for cube in cubes {
            guard let counters = try? CubeCounters(pinnedAt: cube.mapPin("tailor_counters", under: pinRoot)) else {
                continue
            }
            for field in abi {
                registry.makeCounter(descriptor: .counter(field.metric, field.help), labels: cube.labels)
                    .increment(by: Int64(clamping: field.value(counters)))
            }
            for declared in ownCounters[cube.type] ?? [] {
                guard let map = try? BPFMap(pinnedAt: cube.mapPin(declared.map, under: pinRoot)),
                      let sums = try? declared.read(map) else { continue }
                for (value, sum) in zip(declared.values, sums) {
                    registry.makeCounter(descriptor: .counter(declared.metric, declared.help),
                                         labels: [("chain", cube.chain), ("cube", cube.cube), (declared.label, value)])
                        .increment(by: Int64(clamping: sum))
                }
            }
        }
    }

    /// `tailor status --output prometheus`, for node_exporter's textfile collector:
    /// the counters of `cubes` and how many of the chains shown are in each state.
    public static func statusExposition(_ cubes: [LiveCube], chainStates: [(state: String, count: Int)],
                                        pinRoot: PinRoot) -> String {
        let registry = PrometheusCollectorRegistry()
        add(cubes, pinRoot: pinRoot, to: registry)
        ChainStates.set(chainStates, in: registry)
        return registry.emitToString()
    }
}

/// `tailor_chains{state}`: how many chains are in each state, one help text for
/// every writer of it.
enum ChainStates {
    static func set(_ counts: [(state: String, count: Int)], in registry: PrometheusCollectorRegistry) {
        for (state, count) in counts {
            registry.makeGauge(descriptor: .gauge("tailor_chains", "Chains in each state (docs/daemon.md, Metrics)."),
                               labels: [("state", state)])
                .set(Int64(count))
        }
    }
}

extension MetricNameDescriptor {
    /// A counter: `name` gets its `_total`.
    static func counter(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "total", helpText: help)
    }

    /// A gauge or histogram named `name` whole (its unit, if any, written into it).
    static func gauge(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
