import Foundation
import Testing
import TailorKernel
import TailorObjects
@testable import TailorReconcile
@testable import TailorDaemon

/// The daemon's metrics as values (docs/daemon.md, "Metrics"): the listen address,
/// how a reconcile's outcome becomes series, and the cube counter maps' layouts
/// against the C sources they describe. The served text is tested end to end in
/// Tests/TailorCLITests/MetricsTests.swift.
@Suite("daemon metrics")
struct DaemonMetricsTests {
    @Test("HOST:PORT: IPv4 addresses, names and bracketed IPv6 addresses are taken, and print as given")
    func listenAddresses() throws {
        for (text, host, port) in [("127.0.0.1:9842", "127.0.0.1", 9842), ("[::1]:9842", "::1", 9842),
                                   ("localhost:1024", "localhost", 1024), ("0.0.0.0:65535", "0.0.0.0", 65535),
                                   ("[::]:1", "::", 1)] {
            let address = try ListenAddress(text)
            #expect(address.host == host && address.port == port, "\(text): \(address)")
            #expect(address.description == text)
        }
    }

    @Test("a malformed HOST:PORT is refused with what to write instead")
    func malformedListenAddresses() {
        for (text, message) in [
            ("9842", "'9842' has no port"), ("127.0.0.1:", "is not a port"), ("127.0.0.1:0", "is not a port"),
            ("127.0.0.1:65536", "is not a port"), ("127.0.0.1:+80", "is not a port"),
            ("::1:9842", "an IPv6 address goes in brackets: '[::1]:9842'"),
            (":9842", "has no host: give 127.0.0.1:9842 for this host only"),
            ("[10.0.0.1]:80", "'10.0.0.1' in '[10.0.0.1]:80' is not an IPv6 address"),
            ("a b:80", "'a b' in 'a b:80' is not an IP address or host name"),
            ("10.0.0.256:80", "'10.0.0.256' in '10.0.0.256:80' is not an IPv4 address"),
        ] {
            let error = #expect(throws: ListenAddressError.self) { try ListenAddress(text) }
            #expect(error?.description.contains(message) == true, "\(text): \(error.map(String.init(describing:)) ?? "accepted")")
        }
    }

    @Test("a reconcile ends failed, then spec_error, then refused, else ok; pending chains are ok")
    func conclusions() {
        var aborted = Reconciler.Outcome(synced: 1)
        aborted.aborted = true
        let cases: [(Reconciler.Outcome, Reconciler.Outcome.Conclusion)] = [
            (Reconciler.Outcome(synced: 1, pending: 1), .ok),
            (Reconciler.Outcome(keptByRefusal: 2), .refused),
            (Reconciler.Outcome(specErrors: 1, keptByRefusal: 2), .specError),
            (Reconciler.Outcome(synced: 1, failed: 1, specErrors: 1), .failed),
            (aborted, .failed),
        ]
        for (outcome, expected) in cases {
            #expect(outcome.conclusion == expected, "\(outcome)")
        }
    }

    /// The sample lines of `text` (no comments).
    static func samples(_ text: String) -> Set<String> {
        Set(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init))
    }

    @Test("each reconcile is counted by reason and conclusion with its duration, failed applies, drift repairs, chains by state, spec errors, the last success and the revision; a new revision replaces the info series")
    func reconcileMetrics() throws {
        let metrics = DaemonMetrics(pinRoot: try PinRoot())
        let start = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(Self.samples(start).isSuperset(of: [
            "tailor_chains{state=\"synced\"} 0.0", "tailor_chains{state=\"failing\"} 0.0",
            "tailor_last_successful_apply_timestamp_seconds 0.0", "tailor_reconcile_duration_seconds_count 0",
        ]), "\(start)")
        #expect(start.contains("# HELP tailor_chains "))

        let commit = String(repeating: "a", count: 40)
        var ok = Reconciler.Outcome(chains: 2, synced: 1, drifted: 0, failed: 0, pending: 1)
        ok.revision = GitRevision(commit: commit, dirty: false)
        ok.repairs = [.init(chain: "edge", kind: .rootDetached), .init(chain: "edge", kind: .slotEmpty)]
        // A cube whose pins are not there: its series are left out, the scrape still answers.
        ok.cubes = [LiveCube(chain: "tailor-metrics-test-\(UUID().uuidString)", cube: "c", type: "counter")]
        metrics.record(ok, reason: "start", elapsed: .milliseconds(30), now: Date(timeIntervalSince1970: 1_700_000_000))
        var failing = Reconciler.Outcome(chains: 2, synced: 1, failed: 1)
        failing.revision = GitRevision(commit: commit, dirty: true)
        failing.failedApplies = ["fw"]
        failing.specErrors = 2
        metrics.record(failing, reason: "interval", elapsed: .seconds(2), now: Date(timeIntervalSince1970: 1_700_000_100))
        metrics.record(failing, reason: "interval", elapsed: .seconds(2))

        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        let samples = Self.samples(text)
        for line in [
            "tailor_reconciles_total{reason=\"start\",outcome=\"ok\"} 1",
            "tailor_reconciles_total{reason=\"interval\",outcome=\"failed\"} 2",
            "tailor_reconcile_duration_seconds_count 3",
            "tailor_reconcile_duration_seconds_bucket{le=\"0.05\"} 1",
            "tailor_reconcile_duration_seconds_bucket{le=\"2.5\"} 3",
            "tailor_chain_apply_errors_total{chain=\"fw\"} 2",
            "tailor_drift_repairs_total{chain=\"edge\",kind=\"root-detached\"} 1",
            "tailor_drift_repairs_total{chain=\"edge\",kind=\"slot-empty\"} 1",
            "tailor_chains{state=\"synced\"} 1.0", "tailor_chains{state=\"failing\"} 1.0",
            "tailor_chains{state=\"pending\"} 0.0", "tailor_chains{state=\"drifted\"} 0.0",
            "tailor_spec_errors 2.0",
            "tailor_last_successful_apply_timestamp_seconds 1700000000.0",
            "tailor_spec_info{revision=\"\(commit)+dirty\"} 1.0",
        ] {
            #expect(samples.contains(line), "no \(line) in\n\(text)")
        }
        #expect(!text.contains("revision=\"\(commit)\""), "the old revision's series stays: \(text)")
        #expect(!text.contains("tailor_cube_"), "a cube without pins has series: \(text)")

        // Specs outside git: no revision, no info series.
        metrics.record(Reconciler.Outcome(chains: 1, synced: 1), reason: "change", elapsed: .milliseconds(1))
        #expect(!String(decoding: metrics.exposition(), as: UTF8.self).contains("tailor_spec_info{"))
    }

    /// The enum `name` of the C source `file`: its names in order of value.
    static func cEnum(_ name: String, in file: URL) throws -> [String] {
        let source = try String(contentsOf: file, encoding: .utf8)
        let body = try #require(source.firstMatch(of: Regex("enum \(name) \\{([^}]*)\\}"))?.output[1].substring)
        let uncommented = body.replacing(/\/\*.*?\*\//, with: "")
        var values: [(String, Int)] = []
        for item in uncommented.split(separator: ",") {
            let parts = item.split(separator: "=").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            guard let name = parts.first, !name.isEmpty else { continue }
            let value = try parts.count == 2 ? #require(Int(parts[1])) : (values.last?.1 ?? -1) + 1
            values.append((name, value))
        }
        return values.sorted { $0.1 < $1.1 }.map(\.0)
    }

    @Test("each cube counter map's labels are its C enum's names, and the compiled map has one u64 per CPU for each")
    func counterMapsMatchTheirSources() throws {
        // The enum each cube type's declared map is indexed by, in bpf/cubes/<type>.c.
        let enums = ["firewall/outcomes": "fw_outcome", "ratelimit/drops": "drop_reason", "router/outcomes": "router_outcome",
                     "nat/outcomes": "nat_outcome", "nat/drops": "nat_drop"]
        let cubes = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("bpf/cubes")
        for declared in CubeCounterMap.all {
            let name = try #require(enums["\(declared.cubeType)/\(declared.map)"],
                                    "no enum named for \(declared.cubeType)'s \(declared.map)")
            let names = try Self.cEnum(name, in: cubes.appendingPathComponent("\(declared.cubeType).c"))
            // The names share a prefix up to an underscore (FW_, NAT_DROP_); a last one past the map's
            // end counts them (FW_OUTCOMES).
            let labelled = names.prefix(declared.values.count)
            var common = labelled.first ?? ""
            for name in labelled { while !name.hasPrefix(common) { common.removeLast() } }
            let prefix = String(common[...(common.lastIndex(of: "_") ?? common.startIndex)])
            #expect(prefix.hasSuffix("_") && names.allSatisfy { $0.hasPrefix(prefix.prefix { $0 != "_" }) })
            let labels = labelled.map { $0.dropFirst(prefix.count).lowercased() }
            #expect(labels == declared.values, "\(declared.cubeType): enum \(name) has \(names)")
            #expect(names.count == declared.values.count || names.count == declared.values.count + 1)

            let bytes = try #require(DatapathObjects.all.bytes(named: declared.cubeType))
            let object = try BPFObject(bytes: bytes, name: declared.cubeType)
            let map = try #require(object.maps.first { $0.name == declared.map })
            #expect(map.type == .perCPUArray && map.valueSize == 8 && map.maxEntries == declared.values.count,
                    "\(declared.cubeType)'s \(declared.map): \(map)")
        }
    }
}
