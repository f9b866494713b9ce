import Foundation
import Testing
import TailorTestKit

/// The benchmarks run with tiny parameters, so they keep working between the runs
/// that fill docs/benchmarks.md.
@Suite("benchmarks", .kernel)
struct BenchTests {
    struct FirewallUpdateReport: Decodable {
        struct Row: Decodable {
            var operation: String, tool: String
            var runs: Int
            var p50Ms: Double, p99Ms: Double
        }

        struct Memory: Decodable {
            var rules: Int
            var tablesBytes: Int, oneGenerationBytes: Int
        }

        struct Goal: Decodable { var goal: String }

        var rows: [Row]
        var memory: [Memory]
        var goals: [Goal]
    }

    /// What the benchmark leaves in the kernel and on disk if it does not clean up:
    /// namespaces (with the veths in them), pin roots, spec directories.
    static func leftovers() throws -> Set<String> {
        let namespaces = try CLI.run(["netns", "list"], executable: "/usr/sbin/ip").stdout.split(separator: "\n")
            .compactMap { $0.split(separator: " ").first.map(String.init) }
        let pins = try FileManager.default.contentsOfDirectory(atPath: "/sys/fs/bpf")
        let temporary = try FileManager.default.contentsOfDirectory(atPath: FileManager.default.temporaryDirectory.path)
        return Set((namespaces + pins + temporary).filter { $0.hasPrefix("tailor-bench-bfu") || $0.hasPrefix("tailor-bfu-") })
    }

    struct GatewayRow: Decodable {
        var gateway: String
        var packetsPerSecond: Double
    }

    @Test("tailor-bench gateway gets packets through all three gateways and leaves nothing behind")
    func gateway() throws {
        try KernelEnvironment.require()
        let specs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("specs/gateway").path
        let (status, stdout, stderr) = try CLI.run(["gateway", "--specs", specs, "--seconds", "0.2", "--rounds", "1",
                                                    "--output", "json"], executable: Golden.tailorBench.path)
        #expect(status == 0, "exit \(status): \(stderr)")
        let rows = try JSONDecoder().decode([GatewayRow].self, from: Data(stdout.utf8))
        #expect(rows.map(\.gateway) == ["Linux forwarding", "Linux forwarding + iptables NAT",
                                          "tailor gateway (firewall, nat, router; TC)"])
        #expect(rows.allSatisfy { $0.packetsPerSecond > 1000 }, "\(rows)")
        let namespaces = try CLI.run(["netns", "list"], executable: "/usr/sbin/ip").stdout
        let pins = try FileManager.default.contentsOfDirectory(atPath: "/sys/fs/bpf")
        #expect(!namespaces.contains("tailor-bench-gw") && !pins.contains { $0.hasPrefix("tailor-bench-gw") })
    }

    @Test("tailor-bench firewall-update times every tool and operation and leaves nothing behind")
    func firewallUpdate() throws {
        try KernelEnvironment.require()
        let before = try Self.leftovers()
        let (status, stdout, stderr) = try CLI.run(["firewall-update", "--rules", "50", "--edits", "2",
                                                    "--output", "json"], executable: Golden.tailorBench.path)
        #expect(status == 0, "exit \(status): \(stderr)")
        let report = try JSONDecoder().decode(FirewallUpdateReport.self, from: Data(stdout.utf8))
        let pairs = Set(report.rows.map { "\($0.operation) / \($0.tool)" })
        // First load: tailor and the three baselines; each of 4 edit kinds: tailor apply, the
        // daemon (applied, whole reconcile) and the three baselines; no-op: tailor plan, the daemon.
        #expect(pairs.count == 4 + 4 * 6 + 2, "rows: \(pairs.sorted())")
        for tool in ["tailor apply", "tailor plan", "tailor run: change -> applied", "iptables-nft -R",
                     "iptables-legacy -I", "iptables-nft-restore", "nft replace rule", "nft -f"] {
            #expect(report.rows.contains { $0.tool == tool }, "no row for \(tool)")
        }
        for row in report.rows {
            #expect(row.runs == 2 && row.p50Ms > 0 && row.p99Ms >= row.p50Ms, "\(row)")
        }
        #expect(report.memory.count == 1 && report.memory[0].rules == 50)
        #expect(report.memory.allSatisfy { $0.tablesBytes > $0.oneGenerationBytes && $0.oneGenerationBytes > 0 })
        #expect(report.goals.count == 5)
        #expect(try Self.leftovers() == before, "the benchmark left namespaces, pins or files behind")
    }
}
