import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

/// The Prometheus text format (0.0.4), read as strictly as a scraper would: every
/// family typed once before its samples, which are contiguous; valid names, labels
/// and values; counters named `_total` and not negative; no series twice;
/// histograms with ascending, cumulative buckets whose `+Inf` equals `_count`.
/// A failure says which line and why.
struct Exposition {
    struct Series: Hashable {
        var name: String
        var labels: [String: String]
    }

    var values: [Series: Double] = [:]
    var types: [String: String] = [:]

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    init(_ text: String) throws {
        var helped: Set<String> = []
        var finished: Set<String> = []
        var current: String?
        var order: [Series] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let fail = { (why: String) in Malformed(description: "line \(number + 1) '\(line)': \(why)") }
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let words = line.split(separator: " ", maxSplits: 3).map(String.init)
                guard words.count >= 3, ["HELP", "TYPE"].contains(words[1]) else { continue }
                let name = words[2]
                guard Self.isMetricName(name) else { throw fail("bad metric name") }
                if words[1] == "HELP" {
                    guard helped.insert(name).inserted else { throw fail("second HELP") }
                } else {
                    guard types[name] == nil, words.count == 4,
                          ["counter", "gauge", "histogram", "summary", "untyped"].contains(words[3])
                    else { throw fail("second or bad TYPE") }
                    types[name] = words[3]
                }
                continue
            }
            let (series, value) = try Self.sample(String(line), fail)
            let family = Self.family(of: series.name, types)
            guard let type = types[family] else { throw fail("no TYPE before the sample") }
            if current != family {
                guard !finished.contains(family) else { throw fail("samples of \(family) are not together") }
                if let current { finished.insert(current) }
                current = family
            }
            if type == "counter" {
                guard family.hasSuffix("_total"), value >= 0 else { throw fail("a counter must be _total and >= 0") }
            }
            guard values.updateValue(value, forKey: series) == nil else { throw fail("series given twice") }
            order.append(series)
        }
        try checkHistograms(order)
    }

    static func isMetricName(_ name: String) -> Bool {
        name.wholeMatch(of: /[a-zA-Z_:][a-zA-Z0-9_:]*/) != nil
    }

    /// The family a sample belongs to: a histogram's `_bucket`, `_sum` and `_count` belong to it.
    static func family(of name: String, _ types: [String: String]) -> String {
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] == "histogram" { return base }
        }
        return name
    }

    /// `name{label="value",...} value`.
    static func sample(_ line: String, _ fail: (String) -> Malformed) throws -> (Series, Double) {
        let characters = Array(line)
        var i = 0
        while i < characters.count, characters[i] != "{", characters[i] != " " { i += 1 }
        let name = String(characters[..<i])
        guard isMetricName(name) else { throw fail("bad metric name") }
        var labels: [String: String] = [:]
        if i < characters.count, characters[i] == "{" {
            i += 1
            while i < characters.count, characters[i] != "}" {
                let start = i
                while i < characters.count, characters[i] != "=" { i += 1 }
                let label = String(characters[start..<i])
                guard label.wholeMatch(of: /[a-zA-Z_][a-zA-Z0-9_]*/) != nil, i + 1 < characters.count,
                      characters[i + 1] == "\"" else { throw fail("bad label \(label)") }
                i += 2
                var value = ""
                while i < characters.count, characters[i] != "\"" {
                    if characters[i] == "\\" {
                        i += 1
                        guard i < characters.count, let escaped = ["\\": "\\", "\"": "\"", "n": "\n"][characters[i]]
                        else { throw fail("bad escape") }
                        value.append(escaped)
                    } else {
                        value.append(characters[i])
                    }
                    i += 1
                }
                guard i < characters.count else { throw fail("unterminated label value") }
                i += 1
                guard labels.updateValue(value, forKey: label) == nil else { throw fail("label \(label) twice") }
                if i < characters.count, characters[i] == "," { i += 1 }
            }
            guard i < characters.count else { throw fail("unterminated labels") }
            i += 1
        }
        let rest = String(characters[i...]).split(separator: " ")
        guard (1...2).contains(rest.count), let value = Self.number(String(rest[0])) else { throw fail("bad value") }
        return (Series(name: name, labels: labels), value)
    }

    static func number(_ text: String) -> Double? {
        switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: Double(text)
        }
    }

    func checkHistograms(_ order: [Series]) throws {
        for (family, type) in types where type == "histogram" {
            let buckets = order.filter { $0.name == family + "_bucket" }
            let groups = Dictionary(grouping: buckets) { $0.labels.filter { $0.key != "le" } }
            for (labels, group) in groups {
                let bounds = try group.map { series in
                    guard let le = series.labels["le"].flatMap(Self.number) else {
                        throw Malformed(description: "\(family): a bucket without le")
                    }
                    return (le, values[series] ?? 0)
                }
                guard bounds.map(\.0) == bounds.map(\.0).sorted(), bounds.last?.0 == .infinity,
                      bounds.map(\.1) == bounds.map(\.1).sorted(),
                      bounds.last?.1 == values[Series(name: family + "_count", labels: labels)],
                      values[Series(name: family + "_sum", labels: labels)] != nil
                else { throw Malformed(description: "\(family)\(labels): buckets \(bounds) do not add up") }
            }
        }
    }

    /// The value of one series, or nil when it is not there.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        values[Series(name: name, labels: labels)]
    }

    /// Every series of `name`, by its labels.
    func series(_ name: String) -> [[String: String]: Double] {
        Dictionary(uniqueKeysWithValues: values.filter { $0.key.name == name }.map { ($0.key.labels, $0.value) })
    }
}

/// Metrics in the Prometheus text format: `tailor run --metrics-address` and
/// `tailor status --output prometheus` (docs/daemon.md, "Metrics").
@Suite("metrics", .serialized)
struct MetricsTests {
    /// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice for port 0).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let found = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        try #require(fd >= 0 && found, "no free port: errno \(errno)")
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// GET (or `method`) `url`: the status and the body, within 5 s.
    static func get(_ url: String, method: String = "GET") async throws -> (status: Int, body: String) {
        var request = URLRequest(url: try #require(URL(string: url)))
        request.httpMethod = method
        request.timeoutInterval = 5
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// `promtool check metrics` on `text` when promtool is installed (scripts/setup
    /// installs it); nil when it is not.
    static func promtool(_ text: String) throws -> (status: Int32, output: String)? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else { return nil }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-metrics-\(UUID().uuidString)")
        try text.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let run = try CLI.run(["-c", "/usr/bin/promtool check metrics < \(file.path)"], executable: "/bin/sh")
        return (run.status, run.stdout + run.stderr)
    }

    /// Parses `text` and, where promtool is installed, has promtool check it too.
    static func check(_ text: String) throws -> Exposition {
        if let (status, output) = try promtool(text) {
            #expect(status == 0 && output.isEmpty, "promtool check metrics: \(output)")
        }
        return try Exposition(text)
    }

    /// A chain on TC ingress of the lab's side b: a counter, a firewall dropping UDP
    /// to port 9, and a ratelimit letting a burst of 5 through per source.
    static func spec(_ lab: Lab) -> String {
        """
        apiVersion: tailor/v1
        kind: Chain
        metadata: {name: metered}
        spec:
          attach: {interface: \(lab.b.interfaceName), namespace: \(lab.b.namespaceName), hook: tc-ingress}
          cubes:
            - {name: count, type: counter}
            - name: fw
              type: firewall
              config:
                policy: accept
                rules:
                  - {match: {proto: udp, dport: 9}, action: drop}
            - name: rl
              type: ratelimit
              config: {rate: 1, burst: 5, drop: [192.0.2.0/24]}

        """
    }

    /// The cubes' counters as `tailor status --output json` gives them: cube -> field -> value.
    static func statusCounters(_ root: PinRoot) throws -> [String: [String: Double]] {
        let run = try CLI.run(["status", "--output", "json", "--bpffs", root.path])
        #expect(run.status == 0, "\(run.stderr)")
        let chains = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [[String: Any]])
        var counters: [String: [String: Double]] = [:]
        for cube in chains.flatMap({ $0["cubes"] as? [[String: Any]] ?? [] }) {
            guard let name = cube["name"] as? String else { continue }
            for field in ["packets", "passed", "dropped", "missed"] {
                counters[name, default: [:]][field] = (cube[field] as? NSNumber)?.doubleValue
            }
        }
        return counters
    }

    /// The `tailor_cube_*` series of `exposition` in the shape of `statusCounters`.
    static func scrapedCounters(_ exposition: Exposition, chain: String) -> [String: [String: Double]] {
        var counters: [String: [String: Double]] = [:]
        for (field, metric) in [("packets", "tailor_cube_packets_total"), ("passed", "tailor_cube_passed_total"),
                                ("dropped", "tailor_cube_dropped_total"),
                                ("missed", "tailor_cube_missed_tail_calls_total")] {
            for (labels, value) in exposition.series(metric) where labels["chain"] == chain {
                counters[labels["cube"] ?? "?", default: [:]][field] = value
            }
        }
        return counters
    }

    /// SIGTERM, then the exit status within `seconds`; SIGKILL and nil when it does not exit in time.
    static func stop(_ process: Process, within seconds: Double = 30) -> Int32? {
        process.terminate()
        let exited = eventually(seconds) { !process.isRunning }
        if !exited { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return exited ? process.terminationStatus : nil
    }

    @Test("tailor run --metrics-address serves the cubes' counters (as status shows them), the firewall's and ratelimit's own, and the reconcile loop's; a port in use stops a second daemon before it applies anything; SIGTERM stops it cleanly",
          .kernel, .timeLimit(.minutes(2)))
    func daemonServesMetrics() async throws {
        try await TransactionTests.withSpecs { specs, root in
            let lab = specs.lab
            let directory = specs.directory + "/metered"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Self.spec(lab).write(toFile: directory + "/metered.yaml", atomically: true, encoding: .utf8)
            for arguments in [["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "m"]] {
                #expect(try CLI.run(["-C", directory] + arguments, executable: "/usr/bin/git").status == 0)
            }
            let commit = try CLI.run(["-C", directory, "rev-parse", "HEAD"], executable: "/usr/bin/git").stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let port = try Self.freePort()
            let url = "http://127.0.0.1:\(port)/metrics"
            let notify = try NotifySocket()
            let log = specs.directory + "/daemon.log"
            try Data().write(to: URL(fileURLWithPath: log))
            let lines = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            let process = try Daemon(directory, root, environment: ["NOTIFY_SOCKET": notify.path], log: log,
                                     arguments: ["--metrics-address", "127.0.0.1:\(port)"]).process
            var stopped = false
            defer { if !stopped { _ = Self.stop(process) } }
            #expect(notify.wait(for: "READY=1", within: 15) != nil)

            let first = try Self.check(try await Self.get(url).body)
            #expect(first.value("tailor_reconciles_total", ["reason": "start", "outcome": "ok"]) == 1)
            #expect(first.value("tailor_chains", ["state": "synced"]) == 1)
            #expect(first.value("tailor_chains", ["state": "failing"]) == 0)
            #expect(first.value("tailor_spec_info", ["revision": commit]) == 1, "\(first.series("tailor_spec_info"))")
            #expect((first.value("tailor_reconcile_duration_seconds_count") ?? 0) >= 1)
            #expect((first.value("tailor_last_successful_apply_timestamp_seconds") ?? 0) > Date().timeIntervalSince1970 - 60)
            let labels = { (cube: String, type: String) in ["chain": "metered", "cube": cube, "type": type] }
            let before = first.value("tailor_cube_packets_total", labels("count", "counter")) ?? -1
            #expect(before >= 0, "\(first.series("tailor_cube_packets_total"))")

            // Three datagrams the firewall drops; twenty the ratelimit lets five through of.
            #expect(try Traffic.udp(in: lab, count: 3, port: 9, timeout: .milliseconds(300)) == 0)
            let received = try Traffic.udp(in: lab, count: 20, port: 9999, timeout: .milliseconds(500))
            #expect((5...6).contains(received), "\(received) of 20 through a burst of 5")

            // The counters grow, and agree with status, read before and after the scrape.
            let statusBefore = try Self.statusCounters(root)
            let scraped = try Self.check(try await Self.get(url).body)
            let statusAfter = try Self.statusCounters(root)
            let counters = Self.scrapedCounters(scraped, chain: "metered")
            #expect(Set(counters.keys) == ["count", "fw", "rl"], "\(counters)")
            for (cube, fields) in counters {
                for (field, value) in fields {
                    let low = statusBefore[cube]?[field] ?? .infinity, high = statusAfter[cube]?[field] ?? -1
                    #expect(low <= value && value <= high, "\(cube).\(field): scraped \(value), status \(low)...\(high)")
                }
            }
            let packets = scraped.value("tailor_cube_packets_total", labels("count", "counter")) ?? 0
            #expect(packets >= before + 23, "packets \(before) -> \(packets)")
            let outcomes = scraped.series("tailor_firewall_packets_total")
            #expect((outcomes[["chain": "metered", "cube": "fw", "outcome": "rule_drop"]] ?? 0) >= 3, "\(outcomes)")
            #expect(outcomes.values.reduce(0, +) == scraped.value("tailor_cube_packets_total", labels("fw", "firewall")),
                    "the firewall's outcomes add up to its packets: \(outcomes)")
            let drops = scraped.series("tailor_ratelimit_dropped_total")
            #expect(drops[["chain": "metered", "cube": "rl", "reason": "over_limit"]] == Double(20 - received), "\(drops)")
            #expect(drops[["chain": "metered", "cube": "rl", "reason": "listed"]] == 0, "\(drops)")
            #expect(drops.values.reduce(0, +) == scraped.value("tailor_cube_dropped_total", labels("rl", "ratelimit")))

            // Drift repaired is counted by kind.
            let rootID = try Program(pinnedAt: root.appending("metered", "root")).info().id
            try TC.detach(from: lab.b.interface(), direction: .ingress, expected: rootID)
            var repaired: Exposition?
            // Reconciles take seconds on a loaded machine: the repair may come a few intervals later.
            let counted = await eventuallyAsync(30) {
                repaired = try Self.check(try await Self.get(url).body)
                return repaired?.value("tailor_drift_repairs_total", ["chain": "metered", "kind": "root-detached"]) == 1
            }
            #expect(counted, "\(repaired?.series("tailor_drift_repairs_total") ?? [:]): \(lines())")
            #expect((repaired?.value("tailor_reconciles_total", ["reason": "interval", "outcome": "ok"]) ?? 0) >= 1)

            // Anything but /metrics is not found, and only GET and HEAD read it.
            #expect(try await Self.get("http://127.0.0.1:\(port)/").status == 404)
            #expect(try await Self.get(url, method: "POST").status == 405)
            let head = try await Self.get(url, method: "HEAD")
            #expect(head.status == 200 && head.body.isEmpty)

            // A second daemon on the same address: exits 1 with the reason, before READY=1, having applied nothing.
            try await TestPinRoot.with { other in
                let secondNotify = try NotifySocket()
                let secondLog = specs.directory + "/second.log"
                try Data().write(to: URL(fileURLWithPath: secondLog))
                let second = try Daemon(directory, other, environment: ["NOTIFY_SOCKET": secondNotify.path], log: secondLog,
                                        arguments: ["--metrics-address", "127.0.0.1:\(port)"]).process
                let status = eventually(10) { !second.isRunning } ? second.terminationStatus : Self.stop(second)
                let stderr = try String(contentsOfFile: secondLog, encoding: .utf8)
                #expect(status == 1, "a daemon whose port is taken ran on: \(stderr)")
                #expect(stderr.contains("cannot serve metrics on 127.0.0.1:\(port) (--metrics-address): "
                                        + "the port is in use by another process"), "\(stderr)")
                #expect(secondNotify.receive(within: 0.2) == nil)
                #expect(try FileManager.default.contentsOfDirectory(atPath: other.path).isEmpty)
            }

            // SIGTERM with a keep-alive connection open: the daemon still exits 0, and stops listening.
            let stopping = Date()
            #expect(Self.stop(process) == 0, "\(lines())")
            #expect(Date().timeIntervalSince(stopping) < 15, "SIGTERM took \(Date().timeIntervalSince(stopping)) s: \(lines())")
            stopped = true
            await #expect(throws: (any Error).self) { try await Self.get(url) }
        }
    }

    @Test("a malformed --metrics-address is a usage error that says what to write")
    func malformedAddress() throws {
        for (address, message) in [("localhost", "has no port"), ("127.0.0.1:99999", "is not a port"),
                                   ("::1:9842", "an IPv6 address goes in brackets: '[::1]:9842'")] {
            let run = try CLI.run(["run", "/tmp", "--metrics-address", address])
            #expect(run.status == 64 && run.stderr.contains(message), "\(address): \(run)")
        }
    }

    @Test("tailor status --output prometheus gives the counters status --output json shows, and the chains by state, also when one drifted (exit 2)",
          .kernel, .timeLimit(.minutes(2)))
    func statusInPrometheusFormat() async throws {
        try await TransactionTests.withSpecs { specs, root in
            let lab = specs.lab
            let file = specs.directory + "/metered.yaml"
            try Self.spec(lab).write(toFile: file, atomically: true, encoding: .utf8)
            try TransactionTests.apply(file, root)
            _ = try Traffic.udp(in: lab, count: 10, port: 9999, timeout: .milliseconds(300))

            let statusBefore = try Self.statusCounters(root)
            let run = try CLI.run(["status", file, "--output", "prometheus", "--bpffs", root.path])
            let statusAfter = try Self.statusCounters(root)
            #expect(run.status == 0 && run.stderr.isEmpty, "\(run)")
            let exposition = try Self.check(run.stdout)
            let counters = Self.scrapedCounters(exposition, chain: "metered")
            #expect(Set(counters.keys) == ["count", "fw", "rl"], "\(counters)")
            for (cube, fields) in counters {
                for (field, value) in fields {
                    let low = statusBefore[cube]?[field] ?? .infinity, high = statusAfter[cube]?[field] ?? -1
                    #expect(low <= value && value <= high, "\(cube).\(field): \(value), status \(low)...\(high)")
                }
            }
            #expect((counters["count"]?["packets"] ?? 0) >= 10)
            #expect(exposition.series("tailor_firewall_packets_total").count == 6)
            #expect(exposition.series("tailor_ratelimit_dropped_total").count == 2)
            #expect(exposition.series("tailor_chains") == [
                ["state": "synced"]: 1, ["state": "out_of_sync"]: 0, ["state": "missing"]: 0,
                ["state": "not_in_specs"]: 0, ["state": "drifted"]: 0,
            ])

            let rootID = try Program(pinnedAt: root.appending("metered", "root")).info().id
            try TC.detach(from: lab.b.interface(), direction: .ingress, expected: rootID)
            let drifted = try CLI.run(["status", "--output", "prometheus", "--bpffs", root.path])
            #expect(drifted.status == 2, "\(drifted)")
            #expect(try Self.check(drifted.stdout).value("tailor_chains", ["state": "drifted"]) == 1)
        }
    }
}

/// Polls `condition` every 100 ms for up to `seconds`; an error counts as not yet.
func eventuallyAsync(_ seconds: Double, _ condition: () async throws -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if (try? await condition()) == true { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return false
}
