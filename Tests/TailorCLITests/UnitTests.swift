import Foundation
import Testing
import TailorDatapath
import TailorKernel
import TailorTestKit

/// dist/tailor.service and its drop-in, read as systemd reads them, and tailor run
/// under exactly their capabilities.
enum Unit {
    static let file = Golden.root.appendingPathComponent("dist/tailor.service")
    static let namespaces = Golden.root.appendingPathComponent("dist/tailor.service.d/namespaces.conf")

    /// The capabilities of every `CapabilityBoundingSet=` line of `files` (systemd merges them).
    static func capabilities(_ files: [URL]) throws -> [String] {
        var names: [String] = []
        for file in files {
            for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n")
            where line.hasPrefix("CapabilityBoundingSet=") {
                names += line.dropFirst("CapabilityBoundingSet=".count).split(separator: " ").map {
                    $0.lowercased().replacingOccurrences(of: "cap_", with: "")
                }
            }
        }
        return Array(Set(names)).sorted()
    }

    /// `setpriv` arguments that leave a root process exactly `capabilities`, as the
    /// unit's bounding and ambient sets do.
    static func setpriv(_ capabilities: [String]) -> [String] {
        let set = "-all," + capabilities.map { "+" + $0 }.joined(separator: ",")
        return ["--inh-caps=\(set)", "--ambient-caps=\(set)", "--bounding-set=\(set)", "--"]
    }

    /// Runs `tailor arguments` with `capabilities` only.
    static func tailor(_ arguments: [String], capabilities: [String], environment: [String: String] = [:]) throws
        -> (status: Int32, stdout: String, stderr: String) {
        try CLI.run(setpriv(capabilities) + [Golden.tailor.path] + arguments, environment: environment,
                    executable: "/usr/bin/setpriv")
    }

    /// The system calls `systemd-analyze` puts in each `@group`, nested groups expanded.
    static func syscallGroups() throws -> [String: Set<String>] {
        let text = try CLI.run(["syscall-filter"], executable: "/usr/bin/systemd-analyze").stdout
        var direct: [String: [String]] = [:]
        var group: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("@") {
                group = String(line)
            } else if let group, line.hasPrefix(" "), let name = line.split(separator: " ").first,
                      !name.hasPrefix("#") {
                direct[group, default: []].append(String(name))
            } else if line.isEmpty {
                group = nil
            }
        }
        func expand(_ group: String, _ seen: Set<String>) -> Set<String> {
            var all: Set<String> = []
            for name in direct[group] ?? [] {
                if name.hasPrefix("@") {
                    if !seen.contains(name) { all.formUnion(expand(name, seen.union([name]))) }
                } else {
                    all.insert(name)
                }
            }
            return all
        }
        return Dictionary(uniqueKeysWithValues: direct.keys.map { ($0, expand($0, [$0])) })
    }

    /// What the unit's `SystemCallFilter=` lets through.
    static func allowedSyscalls() throws -> Set<String> {
        let groups = try syscallGroups()
        var allowed: Set<String> = []
        for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n")
        where line.hasPrefix("SystemCallFilter=") {
            for item in line.dropFirst("SystemCallFilter=".count).split(separator: " ") {
                allowed.formUnion(item.hasPrefix("@") ? groups[String(item)] ?? [] : [String(item)])
            }
        }
        return allowed
    }
}

@Suite("the systemd unit", .kernel, .serialized)
struct UnitTests {
    @Test("the unit and its drop-in pass systemd-analyze verify; exposure at most 2.5; optional paths marked")
    func verify() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("tailor.service.d"),
                                                withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // The unit names the installed binary; verify it against the one just built.
        let text = try String(contentsOf: Unit.file, encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/tailor", with: Golden.tailor.path)
        let copy = directory.appendingPathComponent("tailor.service")
        try text.write(to: copy, atomically: true, encoding: .utf8)
        let security = try CLI.run(["security", "--offline=yes", copy.path], executable: "/usr/bin/systemd-analyze")
        let exposure = security.stdout.split(separator: "\n").last { $0.contains("Overall exposure level") }
            .flatMap { line in line.split(separator: " ").compactMap { Double($0) }.first }
        #expect(exposure.map { $0 <= 2.5 } == true, "\(security.stdout.suffix(300))")

        try FileManager.default.copyItem(at: Unit.namespaces,
                                         to: directory.appendingPathComponent("tailor.service.d/namespaces.conf"))
        let verified = try CLI.run(["verify", copy.path], executable: "/usr/bin/systemd-analyze")
        #expect(verified.status == 0 && verified.stderr.isEmpty && verified.stdout.isEmpty,
                "\(verified.stdout)\(verified.stderr)")
        #expect(text.contains("Type=notify") && text.contains("NoNewPrivileges=yes") && text.contains("ProtectSystem=strict"))
        // A host without `ip netns` has no /run/netns: a path without "-" would stop the unit (226/NAMESPACE).
        #expect(text.contains("ReadWritePaths=/sys/fs/bpf -/run/netns"))
        #expect(text.contains("Before=network-pre.target") && text.contains("Wants=network-pre.target"))
    }

    /// Chain `fw` (a firewall on XDP) and `count` (a counter on TC ingress) of a host interface.
    static func specs(_ interface: String, dport: Int) -> [String: String] {
        let header = { (name: String, hook: String) in
            "apiVersion: tailor/v1\nkind: Chain\nmetadata: {name: \(name)}\nspec:\n"
                + "  attach: {interface: \(interface), hook: \(hook)}\n  cubes:\n"
        }
        return [
            "fw.yaml": header("fw", "xdp") + "    - name: filter\n      type: firewall\n      config:\n"
                + "        policy: accept\n        rules:\n"
                + "          - {match: {proto: tcp, dport: 22}, action: accept}\n"
                + "          - {match: {proto: tcp, dport: \(dport)}, action: drop}\n",
            "count.yaml": header("count", "tc-ingress") + "    - {name: c, type: counter}\n",
        ]
    }

    @Test("with exactly the unit's capabilities and system calls, tailor run creates, replaces, re-attaches and re-pins host chains; apply recovers a killed apply; destroy works with pins removed")
    func hostChainsEveryPath() async throws {
        let capabilities = try Unit.capabilities([Unit.file])
        #expect(capabilities == ["bpf", "net_admin", "perfmon"])
        try await TestPinRoot.with { root in
            let name = "tu\(UniqueName.make(""))"
            _ = try CLI.run(["link", "add", name + "a", "type", "veth", "peer", "name", name + "b"], executable: "/sbin/ip")
            defer { _ = try? CLI.run(["link", "del", name + "a"], executable: "/sbin/ip") }
            _ = try CLI.run(["link", "set", name + "b", "up"], executable: "/sbin/ip")
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-unit-\(name)").path
            try FileManager.default.createDirectory(atPath: directory + "/specs", withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let write = { (dport: Int) in
                for (file, text) in Self.specs(name + "b", dport: dport) {
                    try text.write(toFile: directory + "/specs/" + file, atomically: true, encoding: .utf8)
                }
            }
            try write(80)

            // The daemon under strace (outside the capability drop), so its system calls can be checked.
            // Only calls outside the unit's filter stop it (seccomp-bpf), so it runs at full speed;
            // execve is always traced, to show the tracing works.
            let allowed = try Unit.allowedSyscalls()
            let untraced = allowed.subtracting(["execve"]).sorted().map { "?" + $0 }.joined(separator: ",")
            let log = directory + "/run.log", trace = directory + "/strace.txt"
            let metricsPort = try MetricsTests.freePort()
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let daemon = Process()
            daemon.executableURL = URL(fileURLWithPath: "/usr/bin/strace")
            daemon.arguments = ["-f", "-qq", "--seccomp-bpf", "-e", "trace=!" + untraced, "-o", trace, "/usr/bin/setpriv"]
                + Unit.setpriv(capabilities)
                + [Golden.tailor.path, "run", directory + "/specs", "--bpffs", root.path, "--interval", "1",
                   "--debounce", "50", "--metrics-address", "127.0.0.1:\(metricsPort)", "--log-to", "stderr"]
            daemon.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
            daemon.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            daemon.standardOutput = FileHandle.nullDevice
            try daemon.run()
            let lines = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            let count = { (text: String) in lines().components(separatedBy: text).count - 1 }
            let attached = { (chain: String) in (try? Chain.open(chain, pinRoot: root).isAttached) == true }
            var stopped = false
            defer {
                if !stopped {
                    _ = try? CLI.run(["-TERM", "-P", "\(daemon.processIdentifier)"], executable: "/usr/bin/pkill")
                    daemon.waitUntilExit()
                }
            }

            #expect(eventually(30) { attached("fw") && attached("count") }, "create: \(lines())")
            // Scrapes: the metrics server's calls (accepting, reading the cubes' maps) are traced too.
            let scraped = await eventuallyAsync(30) {
                try await MetricsTests.get("http://127.0.0.1:\(metricsPort)/metrics").body.contains("tailor_cube_packets_total")
            }
            #expect(scraped, "no cube counters served: \(lines())")
            // One rule changes: the firewall cube is replaced, its conntrack kept (the layouts come from the record).
            try write(81)
            #expect(eventually(30) { count("ACTION=update CHAIN=fw") >= 2 && lines().contains("reconcile finished") },
                    "replace: \(lines())")
            let synced = { (try? CLI.run(["plan", directory + "/specs", "--bpffs", root.path, "--detailed-exitcode"]))?.status == 0 }
            #expect(eventually(10) { synced() })
            // Detached by hand: attached again.
            _ = try CLI.run(["link", "set", "dev", name + "b", "xdp", "off"], executable: "/sbin/ip")
            #expect(eventually(30) { count("DRIFT_KIND=root-detached") >= 2 && attached("fw") }, "re-attach: \(lines())")
            // A cube's pins removed by hand: pinned again from the descriptors the daemon holds.
            try root.removeTree(root.appending("fw", "cubes", "filter"))
            #expect(eventually(30) { root.exists(root.appending("fw", "cubes", "filter", "maps", "conntrack"))
                && root.exists(root.appending("fw", "cubes", "filter", "prog")) }, "re-pin: \(lines())")
            #expect(eventually(10) { synced() })
            #expect(!lines().contains("chain failed"), "\(lines())")

            _ = try CLI.run(["-TERM", "-P", "\(daemon.processIdentifier)"], executable: "/usr/bin/pkill")
            daemon.waitUntilExit()
            stopped = true
            let traced = try String(contentsOfFile: trace, encoding: .utf8)
            let regex = /^\d+\s+([a-z0-9_]+)\(/.anchorsMatchLineEndings()
            let made = Set(traced.matches(of: regex).map { String($0.1) })
            // setpriv itself drops the capabilities before it runs tailor; the unit does that in systemd.
            let setpriv: Set<String> = ["capset", "prctl", "execve"]
            #expect(made.contains("execve") && made.isSubset(of: allowed.union(setpriv)),
                    "outside SystemCallFilter: \(made.subtracting(allowed).sorted())")

            // A CLI apply of a rule edit killed between the switch of generations and the
            // second write; the next one sees the tables between two generations and repairs them.
            try write(82)
            let killed = try Unit.tailor(["apply", directory + "/specs", "--bpffs", root.path], capabilities: capabilities,
                                         environment: ["TAILOR_FAILPOINTS": "fw: settle the tables of cube filter=kill"])
            #expect(killed.status == 128 + SIGKILL, "\(killed.stderr)")
            let recovered = try Unit.tailor(["apply", directory + "/specs", "--bpffs", root.path], capabilities: capabilities)
            #expect(recovered.status == 0 && recovered.stdout.contains("left between two generations"),
                    "\(recovered.stdout)\(recovered.stderr)")
            let plan = try Unit.tailor(["plan", directory + "/specs", "--bpffs", root.path, "--detailed-exitcode"],
                                       capabilities: capabilities)
            #expect(plan.status == 0 && plan.stdout.contains("No changes."), "\(plan.stdout)\(plan.stderr)")

            // Destroy needs none of the cube pins, so a chain missing one goes too.
            try root.removeTree(root.appending("count", "cubes", "c"))
            let destroyed = try Unit.tailor(["destroy", "--all", "--bpffs", root.path], capabilities: capabilities)
            #expect(destroyed.status == 0, "\(destroyed.stdout)\(destroyed.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty)
            let link = try CLI.run(["link", "show", name + "b"], executable: "/sbin/ip").stdout
            let filters = try CLI.run(["filter", "show", "dev", name + "b", "ingress"], executable: "/sbin/tc").stdout
            #expect(!link.contains("xdp") && filters.isEmpty, "\(link)\(filters)")
        }
    }

    @Test("chains in network namespaces need the drop-in's CAP_SYS_ADMIN: with it they apply and destroy, without it apply fails and names the cause")
    func namespacedChains() async throws {
        let unit = try Unit.capabilities([Unit.file])
        let dropIn = try Unit.capabilities([Unit.file, Unit.namespaces])
        #expect(dropIn == ["bpf", "net_admin", "perfmon", "sys_admin"])
        try await TransactionTests.withSpecs { specs, root in
            let refused = try Unit.tailor(["apply", specs.v1, "--bpffs", root.path], capabilities: unit)
            #expect(refused.status == 1 && refused.stderr.contains("Operation not permitted"), "\(refused.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty)
            let applied = try Unit.tailor(["apply", specs.v1, "--bpffs", root.path], capabilities: dropIn)
            #expect(applied.status == 0, "\(applied.stderr)")
            let destroyed = try Unit.tailor(["destroy", "--all", "--bpffs", root.path], capabilities: dropIn)
            #expect(destroyed.status == 0, "\(destroyed.stderr)")
        }
    }
}
