import ArgumentParser
import Foundation
import Logging
import TailorCommandLine
import TailorCubes
import TailorDaemon
import TailorDatapath
import TailorKernel
import TailorLab
import TailorReference
import TailorSpec

/// `tailor-bench firewall-update`: how long a firewall rule edit takes to be live,
/// as an operator gets it (`tailor apply` and `tailor plan` as processes on an edited
/// spec directory; the daemon's reconcile in this process), against iptables-nft,
/// iptables-legacy and nft making the same edits to the same rules in a namespace,
/// all in one run (issue 14's goals).
struct BenchFirewallUpdate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "firewall-update",
        abstract: "Firewall edit -> applied, no-op plan and first load: tailor apply/plan, the daemon, iptables, nft."
    )

    @Option(help: "Rule counts (FirewallBenchmarkSet rules).")
    var rules: [Int] = [1000, 10_000]

    @Option(help: "Runs of each edit kind, of each first load and of each no-op plan.")
    var edits = 21

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct Row: Codable {
        var rules: Int
        var operation: String
        var tool: String
        var runs: Int
        var p50Ms: Double
        var p99Ms: Double
        /// p50 over iptables-nft's p50 for the same operation (`-R` for the no-op plan).
        var vsIptablesNft: Double?
    }

    /// The firewall cube's maps as loaded (`bytes_memlock`, the kernel's usage figure).
    struct Memory: Codable {
        var rules: Int
        /// Every table (both generations, the shared port vectors, the generation word).
        var tablesBytes: Int
        /// The versioned tables alone (both generations).
        var versionedBytes: Int
        /// The tables with one generation: the versioned ones halved.
        var oneGenerationBytes: Int
        /// conntrack, outcomes, counters: independent of the rules.
        var stateBytes: Int
        var maps: [MapMemory]
    }

    struct MapMemory: Codable {
        var name: String, role: String, type: String
        var entries: Int, bytes: Int
    }

    struct Goal: Codable {
        var rules: Int
        var goal: String
        var measured: String
        var met: Bool
    }

    struct Report: Codable {
        var rows: [Row]
        var memory: [Memory]
        var goals: [Goal]
    }

    func validate() throws {
        guard edits >= 1, rules.allSatisfy({ $0 >= 2 && $0 <= 10_000 }) else {
            throw ValidationError("--edits must be >= 1 and each --rules between 2 and 10,000 (one is inserted)")
        }
    }

    func run() throws {
        let tailor = try tailorExecutable()
        var report = Report(rows: [], memory: [], goals: [])
        try withBenchLab("bfu") { lab, pinRoot in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-bfu-\(UUID())").path
            try FileManager.default.createDirectory(atPath: directory + "/spec", withIntermediateDirectories: true)
            defer {
                do { try FileManager.default.removeItem(atPath: directory) } catch {
                    FileHandle.standardError.write(Data("warning: cannot remove \(directory): \(error)\n".utf8))
                }
            }
            for count in rules {
                let run = Measurement(tailor: tailor, lab: lab, pinRoot: pinRoot, directory: directory,
                                      edits: edits, set: EditedRuleSet(count: count))
                let (rows, memory) = try run.all()
                report.rows += rows
                report.memory.append(memory)
                report.goals += Self.goals(count, rows)
            }
        }
        if output == .json { return try printJSON(report) }
        print("Firewall rule edits -> applied: \(edits) runs of each, ms (p99: the nearest rank; at 21 runs the slowest)")
        print("tailor apply/plan: processes on the edited spec directory; tailor run: the daemon's reconcile in process,")
        print("file written -> \"chain reconciled\" (debounce excluded); baselines: processes in a namespace of their own\n")
        let f = { (value: Double) in String(format: value < 10 ? "%.2f" : "%.1f", value) }
        for count in rules {
            print("\(count) rules\n")
            print(table(["operation", "tool", "p50 ms", "p99 ms", "vs iptables-nft"],
                        report.rows.filter { $0.rules == count }.map {
                            [$0.operation, $0.tool, f($0.p50Ms), f($0.p99Ms),
                             $0.vsIptablesNft.map { String(format: "%.2fx", $0) } ?? ""]
                        }))
            print("")
        }
        print("Memory of the firewall's maps (bytes_memlock from bpftool): the tables with both generations, and with one")
        print("(the versioned tables halved); growth per 1,000 rules from the row above (arrays are sized for 10,240 rules)\n")
        let mib = { (bytes: Int) in String(format: "%.2f MiB", Double(bytes) / 1_048_576) }
        print(table(["rules", "tables (both gen.)", "one gen. (est.)", "growth per 1,000 rules", "growth, one gen.", "state maps"],
                    report.memory.enumerated().map { index, row in
            let growth = { (bytes: (BenchFirewallUpdate.Memory) -> Int) -> String in
                guard index > 0 else { return "" }
                let previous = report.memory[index - 1]
                let per = Double(bytes(row) - bytes(previous)) / (Double(row.rules - previous.rules) / 1000)
                return String(format: "%.0f KiB", per / 1024)
            }
            return ["\(row.rules)", mib(row.tablesBytes), mib(row.oneGenerationBytes), growth(\.tablesBytes),
                    growth(\.oneGenerationBytes), mib(row.stateBytes)]
        }))
        print("\nGoals (issue 14; set at 10,000 rules)\n")
        print(table(["rules", "goal", "measured", "met"], report.goals.map {
            ["\($0.rules)", $0.goal, $0.measured, $0.met ? "yes" : "no"]
        }))
    }

    /// Issue 14's goals, judged on `rows` of one rule count.
    static func goals(_ count: Int, _ rows: [Row]) -> [Goal] {
        let p50 = { (operation: Operation, tool: String) in
            rows.first { $0.operation == operation.rawValue && $0.tool == tool }?.p50Ms ?? .nan
        }
        let replace = p50(.port, Tool.iptablesNft.name(.port))
        let f = { (value: Double) in String(format: "%.1f", value) }
        var goals: [Goal] = []
        let edits = Operation.edits.map { ($0, p50($0, Tool.tailorApply.name($0))) }
        let worst = edits.max { $0.1 < $1.1 } ?? (.port, .nan)
        goals.append(Goal(rules: count, goal: "CLI edit -> applied p50 <= 0.5x iptables-nft -R p50 (\(f(replace / 2)) ms)",
                          measured: "\(f(worst.1)) ms (\(worst.0.rawValue), the slowest kind)",
                          met: worst.1 <= replace / 2))
        let plan = p50(.noOpPlan, Tool.tailorPlan.name(.noOpPlan))
        goals.append(Goal(rules: count, goal: "CLI no-op plan p50 <= 0.5x iptables-nft -R p50 (\(f(replace / 2)) ms)",
                          measured: "\(f(plan)) ms", met: plan <= replace / 2))
        let daemon = rows.filter { $0.tool == Tool.daemon.name(.port) && Operation(rawValue: $0.operation)?.isEdit == true }
        let slowP50 = daemon.max { $0.p50Ms < $1.p50Ms }, slowP99 = daemon.max { $0.p99Ms < $1.p99Ms }
        goals.append(Goal(rules: count, goal: "daemon edit -> applied p50 <= 10 ms",
                          measured: "\(f(slowP50?.p50Ms ?? .nan)) ms (\(slowP50?.operation ?? "?"), the slowest kind)",
                          met: (slowP50?.p50Ms ?? .infinity) <= 10))
        goals.append(Goal(rules: count, goal: "daemon edit -> applied p99 <= 25 ms",
                          measured: "\(f(slowP99?.p99Ms ?? .nan)) ms (\(slowP99?.operation ?? "?"), the slowest kind)",
                          met: (slowP99?.p99Ms ?? .infinity) <= 25))
        let load = p50(.firstLoad, Tool.tailorApply.name(.firstLoad))
        let restore = p50(.firstLoad, Tool.iptablesNft.name(.firstLoad))
        goals.append(Goal(rules: count, goal: "first load (tailor apply) p50 <= iptables-nft-restore p50 (\(f(restore)) ms)",
                          measured: "\(f(load)) ms", met: load <= restore))
        return goals
    }

    /// What is timed.
    enum Operation: String, CaseIterable {
        case firstLoad = "first load"
        case insert = "insert a rule (middle)"
        case delete = "delete a rule (middle)"
        case port = "change a rule's port"
        case policy = "flip the policy"
        case noOpPlan = "no-op plan"

        static let edits: [Operation] = [.insert, .delete, .port, .policy]
        var isEdit: Bool { Self.edits.contains(self) }
    }

    /// Who does it, named in the table by the command it runs for each operation.
    enum Tool {
        case tailorApply, tailorPlan, daemon, daemonWhole, iptablesNft, iptablesLegacy, nft

        func name(_ operation: Operation) -> String {
            let iptables = { (binary: String) -> String in
                switch operation {
                case .firstLoad: return "\(binary)-restore"
                case .insert: return "\(binary) -I"
                case .delete: return "\(binary) -D"
                case .port: return "\(binary) -R"
                case .policy, .noOpPlan: return "\(binary) -P"
                }
            }
            switch self {
            case .tailorApply: return "tailor apply"
            case .tailorPlan: return "tailor plan"
            case .daemon: return "tailor run: change -> applied"
            case .daemonWhole: return "tailor run: whole reconcile"
            case .iptablesNft: return iptables("iptables-nft")
            case .iptablesLegacy: return iptables("iptables-legacy")
            case .nft:
                switch operation {
                case .firstLoad: return "nft -f"
                case .insert: return "nft insert rule"
                case .delete: return "nft delete rule (handle)"
                case .port: return "nft replace rule"
                case .policy, .noOpPlan: return "nft chain { policy }"
                }
            }
        }
    }
}

/// A benchmark rule set and the edits the benchmark makes to it: rule `middle`'s
/// destination port changed and back, a rule inserted before it and deleted
/// again, the policy flipped between accept and drop.
struct EditedRuleSet {
    let base: [Firewall.Rule]
    let middle: Int
    /// The rule inserted before `middle` (a destination no base rule has).
    let inserted: Firewall.Rule
    /// Rule `middle` with its other port.
    let changed: Firewall.Rule
    var portChanged = false
    var isInserted = false
    var drop = false

    init(count: Int) {
        base = FirewallBenchmarkSet(count: count).set.rules
        middle = count / 2
        var match = Filter.Rule(action: .pass)
        match.destination = IPPrefix(address: [192, 0, 2, 7], length: 32)
        match.proto = 6
        match.destinationPorts = 4444...4444
        inserted = Firewall.Rule(match, action: .drop)
        var other = base[middle]
        let port = other.match.destinationPorts?.lowerBound ?? 0
        other.match.destinationPorts = port == 9999 ? 9998...9998 : 9999...9999
        changed = other
    }

    var rules: [Firewall.Rule] {
        var rules = base
        if portChanged { rules[middle] = changed }
        if isInserted { rules.insert(inserted, at: middle) }
        return rules
    }

    var policy: Firewall.Action { drop ? .drop : .accept }

    /// The spec of chain `fw`: one firewall cube `fw` on TC ingress of the lab's side b.
    func spec(_ lab: VethLab) throws -> String {
        let lines = try rules.map { rule in
            guard let line = FirewallRuleSet.specLine(rule) else { throw CommandError("rule \(rule) has no spec line") }
            return "          - " + line
        }
        return """
        apiVersion: tailor/v1
        kind: Chain
        metadata:
          name: fw
        spec:
          attach: {interface: \(lab.b.interfaceName), namespace: \(lab.b.namespaceName), hook: tc-ingress}
          cubes:
            - name: fw
              type: firewall
              config:
                policy: \(drop ? "drop" : "accept")
                acceptEstablished: false
                rules:

        """ + lines.joined(separator: "\n") + "\n"
    }

    var ruleSet: FirewallRuleSet { FirewallRuleSet(rules: rules, policy: policy, acceptEstablished: false) }
}

/// One rule count's measurements, in the lab's namespaces and pin root.
struct Measurement {
    typealias Operation = BenchFirewallUpdate.Operation
    typealias Tool = BenchFirewallUpdate.Tool

    let tailor: String
    let lab: VethLab
    let pinRoot: PinRoot
    let directory: String
    let edits: Int
    let set: EditedRuleSet

    var specDirectory: String { directory + "/spec" }
    var stderrFile: String { directory + "/stderr" }
    /// Where the baselines run: the lab's side a, which the chain does not use.
    var namespace: NetworkNamespace { lab.a.namespace }

    /// The timings of every tool, then the memory of the loaded firewall.
    func all() throws -> ([BenchFirewallUpdate.Row], BenchFirewallUpdate.Memory) {
        try checkNamespaceSpawns()
        var samples: [(Operation, Tool, [Double])] = []
        samples += try iptables(.iptablesNft, binary: "/usr/sbin/iptables-nft")
        samples += try iptables(.iptablesLegacy, binary: "/usr/sbin/iptables-legacy")
        samples += try nftables()
        let (cli, memory) = try tailorCLIAndDaemon()
        samples += cli
        let reference = { (operation: Operation) -> Double? in
            let op = operation == .noOpPlan ? Operation.port : operation
            return samples.first { $0.0 == op && $0.1 == .iptablesNft }.map { median($0.2) }
        }
        let order: [Tool] = [.tailorApply, .tailorPlan, .daemon, .daemonWhole, .iptablesNft, .iptablesLegacy, .nft]
        let rows = Operation.allCases.flatMap { operation in
            order.compactMap { tool -> BenchFirewallUpdate.Row? in
                guard let values = samples.first(where: { $0.0 == operation && $0.1 == tool })?.2 else { return nil }
                let p50 = median(values)
                return BenchFirewallUpdate.Row(rules: set.base.count, operation: operation.rawValue, tool: tool.name(operation),
                                               runs: values.count, p50Ms: p50, p99Ms: percentile(values, 0.99),
                                               vsIptablesNft: reference(operation).map { p50 / $0 })
            }
        }
        return (rows, memory)
    }

    /// The nearest-rank percentile.
    func percentile(_ values: [Double], _ fraction: Double) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count) * fraction).rounded(.up)) - 1))]
    }

    /// `executable arguments` timed, in the baseline namespace when `isolated`; ms.
    func time(_ executable: String, _ arguments: [String], isolated: Bool = true) throws -> Double {
        let run = { try timedRun(executable, arguments, stderrFile: stderrFile).microseconds / 1000 }
        return isolated ? try namespace.run(run) : try run()
    }

    /// A process spawned from a thread inside the namespace runs there (a child
    /// takes its namespaces from the thread that spawns it): checked before any
    /// baseline writes a firewall, so the host's is never touched.
    func checkNamespaceSpawns() throws {
        let probe = directory + "/netns"
        _ = try namespace.run { try timedRun("/bin/sh", ["-c", "readlink /proc/self/ns/net > \(probe)"], stderrFile: stderrFile) }
        var info = stat()
        guard stat(namespace.path, &info) == 0 else { throw CommandError("cannot stat \(namespace.path)") }
        let seen = try String(contentsOfFile: probe, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard seen == "net:[\(info.st_ino)]" else {
            throw CommandError("a process spawned in \(namespace) ran in \(seen): refusing to touch a firewall")
        }
    }

    /// The edits, in the same order for every tool: the port changed and back, a
    /// rule inserted and deleted (each `edits` times), the policy flipped.
    func editSequence() -> [Operation] {
        Array(repeating: Operation.port, count: edits) + (0..<edits).flatMap { _ in [Operation.insert, .delete] }
            + Array(repeating: Operation.policy, count: edits)
    }

    /// Applies `operation` to `state` (what the edit leads to).
    static func advance(_ state: inout EditedRuleSet, _ operation: Operation) {
        switch operation {
        case .port: state.portChanged.toggle()
        case .insert: state.isInserted = true
        case .delete: state.isInserted = false
        case .policy: state.drop.toggle()
        case .firstLoad, .noOpPlan: break
        }
    }

    /// iptables (nf_tables or legacy backend) on the FORWARD chain: restore from a
    /// flushed table, then `-R`, `-I`, `-D`, `-P` at rule `middle`.
    func iptables(_ tool: Tool, binary: String) throws -> [(Operation, Tool, [Double])] {
        let script = directory + "/iptables.rules"
        try set.ruleSet.iptablesRestore(ipv6: false).write(toFile: script, atomically: true, encoding: .utf8)
        let flush = {
            if tool == .iptablesNft {
                _ = try self.time("/usr/sbin/nft", ["flush", "ruleset"])
            } else {
                _ = try self.time(binary, ["-F", "FORWARD"])
                _ = try self.time(binary, ["-P", "FORWARD", "ACCEPT"])
            }
        }
        defer {
            do { try flush() } catch { FileHandle.standardError.write(Data("warning: cannot flush \(binary): \(error)\n".utf8)) }
        }
        var loads: [Double] = []
        for _ in 0..<edits {
            try flush()
            loads.append(try time(binary + "-restore", [script]))
        }
        var state = set
        var times: [Operation: [Double]] = [:]
        let position = "\(set.middle + 1)"
        for operation in editSequence() {
            let arguments: [String]
            switch operation {
            case .port:
                arguments = ["-R", "FORWARD", position]
                    + FirewallRuleSet.iptablesArguments(state.portChanged ? set.base[set.middle] : set.changed)
            case .insert: arguments = ["-I", "FORWARD", position] + FirewallRuleSet.iptablesArguments(set.inserted)
            case .delete: arguments = ["-D", "FORWARD", position]
            default: arguments = ["-P", "FORWARD", state.drop ? "ACCEPT" : "DROP"]
            }
            times[operation, default: []].append(try time(binary, arguments))
            Self.advance(&state, operation)
        }
        return [(.firstLoad, tool, loads)] + Operation.edits.map { ($0, tool, times[$0] ?? []) }
    }

    /// nftables: `nft -f` into a flushed ruleset, then `replace rule`, `insert
    /// rule`, `delete rule` by handle, the chain's policy.
    func nftables() throws -> [(Operation, Tool, [Double])] {
        let nft = "/usr/sbin/nft"
        let script = directory + "/nft.rules"
        try set.ruleSet.nftScript(table: "tailor_bfu").write(toFile: script, atomically: true, encoding: .utf8)
        defer {
            do { _ = try time(nft, ["flush", "ruleset"]) } catch {
                FileHandle.standardError.write(Data("warning: cannot flush nft: \(error)\n".utf8))
            }
        }
        var loads: [Double] = []
        for _ in 0..<edits {
            _ = try time(nft, ["flush", "ruleset"])
            loads.append(try time(nft, ["-f", script]))
        }
        // The rules' handles in order, read once (untimed); an inserted rule takes the next one.
        let listing = try namespace.run { try TailorLab.run(nft, ["-a", "list", "chain", "inet", "tailor_bfu", "forward"]) }
        let handles = listing.split(separator: "\n").filter { $0.contains(" accept # handle") || $0.contains(" drop # handle") }
            .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
        guard handles.count == set.base.count, var next = handles.max().map({ $0 + 1 }) else {
            throw CommandError("nft listed \(handles.count) rule handles for \(set.base.count) rules")
        }
        let chain = ["inet", "tailor_bfu", "forward"]
        var state = set
        var times: [Operation: [Double]] = [:]
        for operation in editSequence() {
            let arguments: [String]
            switch operation {
            case .port:
                arguments = ["replace", "rule"] + chain + ["handle", "\(handles[set.middle])"]
                    + FirewallRuleSet.nftArguments(state.portChanged ? set.base[set.middle] : set.changed)
            case .insert:
                arguments = ["insert", "rule"] + chain + ["position", "\(handles[set.middle])"]
                    + FirewallRuleSet.nftArguments(set.inserted)
            case .delete:
                arguments = ["delete", "rule"] + chain + ["handle", "\(next)"]
                next += 1
            default:
                arguments = ["chain"] + chain + ["{", "policy", state.drop ? "accept" : "drop", ";", "}"]
            }
            times[operation, default: []].append(try time(nft, arguments))
            Self.advance(&state, operation)
        }
        return [(.firstLoad, .nft, loads)] + Operation.edits.map { ($0, .nft, times[$0] ?? []) }
    }

    /// tailor: `tailor apply` on a fresh pin root `edits` times (first load); then
    /// on the last one, each edit written to the spec and applied by `tailor apply`,
    /// `tailor plan` with nothing changed, and the same edits through the daemon's
    /// `Reconciler`.
    func tailorCLIAndDaemon() throws -> ([(Operation, Tool, [Double])], BenchFirewallUpdate.Memory) {
        var state = set
        let file = specDirectory + "/fw.yaml"
        let write = { (state: EditedRuleSet) in try state.spec(lab).write(toFile: file, atomically: true, encoding: .utf8) }
        try write(state)
        var loads: [Double] = []
        var root = pinRoot
        for load in 0..<edits {
            root = try PinRoot(pinRoot.appending("load\(load)"))
            loads.append(try time(tailor, ["apply", specDirectory, "--bpffs", root.path], isolated: false))
            if load < edits - 1 { try destroy(root) }
        }
        defer {
            do { try destroy(root) } catch {
                FileHandle.standardError.write(Data("warning: cannot destroy the firewall under \(root.path): \(error)\n".utf8))
            }
        }
        let memory = try self.memory(root)
        let record = { () throws -> CubeRecord? in try MetaRecordReader.read(ChainPins("fw", under: root)[.meta])?.cubes["fw"] }
        guard let loaded = try record() else { throw CommandError("tailor apply left no firewall under \(root.path)") }

        var times: [Operation: [Double]] = [:]
        var previous = loaded.digest
        for operation in editSequence() {
            Self.advance(&state, operation)
            try write(state)
            times[operation, default: []].append(try time(tailor, ["apply", specDirectory, "--bpffs", root.path], isolated: false))
            guard let now = try record(), now.digest != previous else {
                throw CommandError("tailor apply did not apply the edit (\(operation.rawValue))")
            }
            guard now.program == loaded.program else {
                throw CommandError("tailor apply replaced the firewall for an edit (\(operation.rawValue)): not in place")
            }
            previous = now.digest
        }
        let plans = try (0..<edits).map { _ in
            try time(tailor, ["plan", specDirectory, "--bpffs", root.path, "--detailed-exitcode"], isolated: false)
        }

        // The daemon: its Reconciler, driven as ReconcileService drives it after a file change.
        let clock = ReconcileClock()
        let reconciler = Reconciler(.init(specDirectory: specDirectory, pinRoot: root),
                                    logger: Logger(label: "tailor.bench", factory: { _ in clock }))
        let reconcile = { () throws -> (applied: Double?, whole: Double) in
            clock.reset()
            let start = ContinuousClock.now
            let outcome = reconciler.reconcile(reason: "change")
            let whole = (ContinuousClock.now - start).microseconds / 1000
            guard outcome.conclusion == .ok, outcome.synced == 1 else {
                throw CommandError("the daemon's reconcile did not sync the firewall: \(outcome.status); \(clock.errors)")
            }
            return (clock.reconciled.map { ($0 - start).microseconds / 1000 }, whole)
        }
        let idle = try (0..<edits).map { _ in try reconcile() }
        guard idle.allSatisfy({ $0.applied == nil }) else { throw CommandError("a no-op reconcile applied something") }
        var applied: [Operation: [Double]] = [:], whole: [Operation: [Double]] = [:]
        for operation in editSequence() {
            Self.advance(&state, operation)
            try write(state)
            let (change, all) = try reconcile()
            guard let change else { throw CommandError("the daemon applied nothing for an edit (\(operation.rawValue))") }
            applied[operation, default: []].append(change)
            whole[operation, default: []].append(all)
        }
        guard try record()?.program == loaded.program else {
            throw CommandError("the daemon replaced the firewall for an edit: not in place")
        }
        var samples: [(Operation, Tool, [Double])] = [(.firstLoad, .tailorApply, loads)]
        samples += Operation.edits.map { ($0, .tailorApply, times[$0] ?? []) }
        samples.append((.noOpPlan, .tailorPlan, plans))
        samples += Operation.edits.map { ($0, .daemon, applied[$0] ?? []) }
        samples.append((.noOpPlan, .daemonWhole, idle.map(\.whole)))
        samples += Operation.edits.map { ($0, .daemonWhole, whole[$0] ?? []) }
        return (samples, memory)
    }

    /// Removes the chain under `root` (`tailor destroy --all`) and the pin root.
    func destroy(_ root: PinRoot) throws {
        _ = try time(tailor, ["destroy", "--all", "--bpffs", root.path], isolated: false)
        try root.removeTree(root.path)
    }

    /// The firewall's maps under `root` as the kernel counts them (`bpftool`'s
    /// `bytes_memlock`), by the role the chain's record gives each.
    func memory(_ root: PinRoot) throws -> BenchFirewallUpdate.Memory {
        guard let cube = try MetaRecordReader.read(ChainPins("fw", under: root)[.meta])?.cubes["fw"] else {
            throw CommandError("no firewall under \(root.path)")
        }
        struct Program: Decodable { var map_ids: [Int] }
        struct Map: Decodable { var id: Int, type: String, name: String?, max_entries: Int, bytes_memlock: Int }
        let decoder = JSONDecoder()
        let program = try decoder.decode(Program.self, from: Data(
            try TailorLab.run("bpftool", ["prog", "show", "id", "\(cube.program)", "--json"]).utf8))
        var maps: [BenchFirewallUpdate.MapMemory] = []
        for id in program.map_ids {
            let map = try decoder.decode(Map.self, from: Data(try TailorLab.run("bpftool", ["map", "show", "id", "\(id)", "--json"]).utf8))
            let name = map.name ?? ""
            // The kernel keeps 15 characters of a name.
            guard let (full, role) = cube.maps.first(where: { !name.isEmpty && $0.key.prefix(15) == name }),
                  role != .chain else { continue }
            maps.append(.init(name: full, role: role.rawValue, type: map.type, entries: map.max_entries, bytes: map.bytes_memlock))
        }
        let bytes = { (roles: [MapRole]) in maps.filter { roles.map(\.rawValue).contains($0.role) }.map(\.bytes).reduce(0, +) }
        let tables = bytes([.table, .entrySafeTable, .versionedTable, .contentKeyedTable, .generation])
        let versioned = bytes([.versionedTable])
        return .init(rules: set.base.count, tablesBytes: tables, versionedBytes: versioned,
                     oneGenerationBytes: tables - versioned / 2, stateBytes: bytes([.state]),
                     maps: maps.sorted { $0.bytes > $1.bytes })
    }
}

/// A log handler that notes when the Reconciler logs "chain reconciled" (the
/// chain's apply returned: the edit is live) and what it logs as errors.
final class ReconcileClock: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var reconciledAt: ContinuousClock.Instant?
    private var errorLines: [String] = []

    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let now = ContinuousClock.now
        lock.withLock {
            if event.message.description == "chain reconciled" { reconciledAt = now }
            if event.level >= .error { errorLines.append("\(event.message) \(event.metadata ?? [:])") }
        }
    }

    func reset() { lock.withLock { (reconciledAt, errorLines) = (nil, []) } }
    var reconciled: ContinuousClock.Instant? { lock.withLock { reconciledAt } }
    var errors: String { lock.withLock { errorLines.joined(separator: "; ") } }
}
