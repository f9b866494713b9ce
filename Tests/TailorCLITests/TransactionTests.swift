import Foundation
import Testing
import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

/// `tailor apply` as one transaction over several chains, tested on real processes:
/// a failure or a SIGKILL at every step it takes, and two applies at once.
@Suite("apply transactions", .kernel)
struct TransactionTests {
    /// Specs in a temporary directory for a lab: v1 has chains a (XDP) and z (TC
    /// ingress); v2 changes a (a rule changed, a cube added, one removed), creates b
    /// (TC egress), drops z, and replaces r (TC ingress of side a: its default verdict
    /// changes, which every instance carries). One apply from v1 to v2 thus updates,
    /// creates, replaces and destroys, with staging, a commit write, a grace period
    /// and retiring.
    struct Specs {
        let directory: String
        let lab: Lab

        init(_ lab: Lab) throws {
            self.lab = lab
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-tx-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory + "/v1", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: directory + "/v2", withIntermediateDirectories: true)
            try write("v1/a.yaml", chain("a", hook: "xdp", cubes: [counter("c1"), filter("f", udpPort: 9), counter("c2")]))
            try write("v1/z.yaml", chain("z", hook: "tc-ingress", cubes: [counter("zc")]))
            try write("v1/r.yaml", chain("r", hook: "tc-ingress", cubes: [counter("rc")], side: lab.a))
            try write("v2/r.yaml", chain("r", hook: "tc-ingress", cubes: [counter("rc")], side: lab.a)
                .replacingOccurrences(of: "  cubes:", with: "  defaultVerdict: drop\n  cubes:"))
            try write("v2/a.yaml", chain("a", hook: "xdp", cubes: [counter("c1"), filter("f", udpPort: 10), counter("t")]))
            try write("v2/b.yaml", chain("b", hook: "tc-egress", cubes: [counter("bc")]))
        }

        var v1: String { directory + "/v1" }
        var v2: String { directory + "/v2" }
        var hooks: [ChainHook] {
            [.xdp(.native), .tcIngress, .tcEgress].map {
                ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: $0)
            } + [ChainHook(interface: lab.a.interfaceName, namespace: lab.a.namespaceName, kind: .tcIngress)]
        }

        func write(_ name: String, _ text: String) throws {
            try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }

        func chain(_ name: String, hook: String, cubes: [String], side: VethLab.Side? = nil) -> String {
            let side = side ?? lab.b
            return """
            apiVersion: tailor/v1
            kind: Chain
            metadata:
              name: \(name)
            spec:
              attach:
                interface: \(side.interfaceName)
                namespace: \(side.namespaceName)
                hook: \(hook)
              cubes:
            \(cubes.joined(separator: "\n"))

            """
        }

        func counter(_ name: String) -> String { "    - {name: \(name), type: counter}" }

        func filter(_ name: String, udpPort: Int) -> String {
            """
                - name: \(name)
                  type: filter
                  config:
                    rules:
                      - {match: {proto: udp, dport: \(udpPort)}, action: drop}
            """
        }

        /// A firewall cube: UDP to `port` accepted, to `port + 1` dropped, the rest too.
        func firewall(_ name: String, port: Int) -> String {
            """
                - name: \(name)
                  type: firewall
                  config:
                    policy: drop
                    rules:
                      - {match: {proto: udp, dport: \(port)}, action: accept}
                      - {match: {proto: udp, dport: \(port + 1)}, action: drop}
            """
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Runs `body` with a lab, a pin root and specs for them; removes every chain after.
    static func withSpecs(_ body: (Specs, PinRoot) async throws -> Void) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let specs = try Specs(lab)
                defer { specs.remove() }
                try await body(specs, root)
                #expect(try tailor(["destroy", "--all"], root).status == 0)
            }
        }
    }

    static func tailor(_ arguments: [String], _ root: PinRoot, failpoints: String? = nil) throws
        -> (status: Int32, stdout: String, stderr: String) {
        try CLI.run(arguments + ["--bpffs", root.path], environment: failpoints.map { ["TAILOR_FAILPOINTS": $0] } ?? [:])
    }

    /// Applies `specs` and expects success.
    static func apply(_ specs: String, _ root: PinRoot) throws {
        let run = try tailor(["apply", specs], root)
        #expect(run.status == 0, "apply \(specs): \(run.stderr)")
    }

    /// The steps an apply from v1 to v2 takes, in order, from a traced run.
    static func steps(_ specs: Specs, _ root: PinRoot) throws -> [String] {
        try apply(specs.v1, root)
        let traced = try tailor(["apply", specs.v2], root, failpoints: "=trace")
        #expect(traced.status == 0, "\(traced.stderr)")
        #expect(try tailor(["destroy", "--all"], root).status == 0)
        return failpoints(traced.stderr)
    }

    /// The steps a run with `TAILOR_FAILPOINTS==trace` printed on stderr, in order.
    static func failpoints(_ stderr: String) -> [String] {
        stderr.split(separator: "\n").compactMap { line in
            line.hasPrefix("failpoint: ") ? String(line.dropFirst("failpoint: ".count)) : nil
        }
    }

    /// Whether the pin root holds anything but live chains (builds, removals, staged instances).
    static func leftovers(_ root: PinRoot) -> [String] {
        let all = FileManager.default.enumerator(atPath: root.path)?.allObjects as? [String] ?? []
        return all.filter { $0.hasPrefix(ChainPins.buildingPrefix) || $0.hasPrefix(ChainPins.removingPrefix) || $0.contains("/staging") }
    }

    @Test("a failure at any step leaves every chain exactly as it was; a kill at any step is undone or finished by the next apply")
    func everyStep() async throws {
        try await Self.withSpecs { specs, root in
            let steps = try Self.steps(specs, root)
            // Update, create, replace, destroy, and the grace period they share.
            for expected in ["a: stage cube", "a: write pending record", "a: commit slot", "b: attach root of b",
                             "z: detach root of z", "wait for a grace period", "a: promote cube", "a: write record",
                             "z: unpin chain z", "r: move chain r aside", "r: attach root of r", "r: unpin chain r"] {
                #expect(steps.contains { $0.hasPrefix(expected) }, "no step \(expected) in \(steps)")
            }
            // Until a's old instances start to go, a killed apply is undone exactly.
            let pointOfNoReturn = try #require(steps.firstIndex { $0.hasPrefix("a: unpin cube") || $0.hasPrefix("a: promote cube") })
            // Steps after the grace period that retire old chains cannot fail the transaction back.
            let grace = try #require(steps.firstIndex(of: "wait for a grace period"))
            let retiring = { (step: String) in
                steps.firstIndex(of: step)! > grace
                    && ["move chain", "empty slots of", "unpin chain"].contains { step.contains($0) }
            }

            try Self.apply(specs.v1, root)
            for (index, step) in steps.enumerated() {
                let before = try KernelSnapshot(root, hooks: specs.hooks)
                let failed = try Self.tailor(["apply", specs.v2], root, failpoints: "\(step)=EPERM")
                #expect(failed.status == 1 && failed.stderr.contains("failpoint"), "EPERM at \(step): \(failed.stderr)")
                let after = try KernelSnapshot(root, hooks: specs.hooks)
                if !retiring(step) {
                    #expect(after == before, "EPERM at \(step) changed the kernel:\n\(before.changes(to: after))")
                }
                try Self.apply(specs.v1, root)

                let start = try KernelSnapshot(root, hooks: specs.hooks)
                let killed = try Self.tailor(["apply", specs.v2], root, failpoints: "\(step)=kill")
                #expect(killed.status == 128 + SIGKILL, "kill at \(step): \(killed.status) \(killed.stderr)")
                if index < pointOfNoReturn {
                    try Self.apply(specs.v1, root)
                    let end = try KernelSnapshot(root, hooks: specs.hooks)
                    #expect(end == start, "kill at \(step) was not undone exactly:\n\(start.changes(to: end))")
                } else {
                    try Self.apply(specs.v2, root)
                    let plan = try Self.tailor(["plan", specs.v2, "--detailed-exitcode"], root)
                    #expect(plan.status == 0, "after a kill at \(step), v2 did not converge:\n\(plan.stdout)")
                    try Self.apply(specs.v1, root)
                }
                #expect(Self.leftovers(root).isEmpty, "kill at \(step) left \(Self.leftovers(root))")
            }
            // And once nothing fails, v2 applies and holds.
            try Self.apply(specs.v2, root)
            #expect(try Self.tailor(["plan", specs.v2, "--detailed-exitcode"], root).status == 0)
        }
    }

    @Test("an in-place change of a firewall's rules failed or killed at any of its steps is undone exactly by the next apply, and leaves no config pin its record does not name")
    func inPlaceEveryStep() async throws {
        try await Self.withSpecs { specs, root in
            let (old, new) = (specs.directory + "/fw1", specs.directory + "/fw2")
            for (directory, port) in [(old, 53), (new, 54)] {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                try specs.chain("f", hook: "tc-egress", cubes: [specs.firewall("fw", port: port)], side: specs.lab.a)
                    .write(toFile: directory + "/f.yaml", atomically: true, encoding: .utf8)
            }
            let hooks = [ChainHook(interface: specs.lab.a.interfaceName, namespace: specs.lab.a.namespaceName,
                                   kind: .tcEgress)]
            let configs = { Set((try? FileManager.default.contentsOfDirectory(atPath: root.appending("f", "config"))) ?? []) }
            try Self.apply(old, root)
            let oldConfigs = configs()
            #expect(oldConfigs.count == 1)
            let traced = try Self.tailor(["apply", new, "--output", "json"], root, failpoints: "=trace")
            #expect(traced.status == 0 && traced.stdout.contains("\"action\" : \"update\""), "\(traced.stdout)\(traced.stderr)")
            let steps = Self.failpoints(traced.stderr)
            // No cube is loaded: the config is pinned, the tables switched, the record written, the old config removed.
            #expect(steps.filter { $0.hasPrefix("f: ") } == [
                "f: write configs", "f: switch the tables of cube fw to a new generation", "f: write record",
                "f: settle the tables of cube fw", "f: remove unused configs",
            ], "\(steps)")
            try Self.apply(old, root)
            // Once the record names the new config, a killed apply is finished, not undone.
            let written = try #require(steps.firstIndex(of: "f: write record"))

            for (index, step) in steps.enumerated() {
                let before = try KernelSnapshot(root, hooks: hooks)
                let failed = try Self.tailor(["apply", new], root, failpoints: "\(step)=EPERM")
                #expect(failed.status == 1 && failed.stderr.contains("failpoint"), "EPERM at \(step): \(failed.stderr)")
                let after = try KernelSnapshot(root, hooks: hooks)
                #expect(after == before, "EPERM at \(step) changed the kernel:\n\(before.changes(to: after))")

                let killed = try Self.tailor(["apply", new], root, failpoints: "\(step)=kill")
                #expect(killed.status == 128 + SIGKILL, "kill at \(step): \(killed.status) \(killed.stderr)")
                let plan = try Self.tailor(["plan", old, "--detailed-exitcode"], root)
                // The record names one config: another is left over, and the plan says so.
                if configs().count > 1 {
                    #expect(plan.status == 2 && plan.stdout.contains("config pins no record names"),
                            "kill at \(step) left \(configs()), the plan does not say:\n\(plan.stdout)")
                }
                if index <= written {
                    try Self.apply(old, root)
                    let end = try KernelSnapshot(root, hooks: hooks)
                    #expect(end == before, "kill at \(step) was not undone exactly:\n\(before.changes(to: end))")
                } else {
                    try Self.apply(new, root)
                    let converged = try Self.tailor(["plan", new, "--detailed-exitcode"], root)
                    #expect(converged.status == 0, "after a kill at \(step), the new rules did not converge:\n\(converged.stdout)")
                    #expect(configs().count == 1 && configs() != oldConfigs, "kill at \(step): configs \(configs())")
                    try Self.apply(old, root)
                }
                #expect(configs() == oldConfigs, "kill at \(step) left configs \(configs().subtracting(oldConfigs))")
            }
            try Self.apply(new, root)
            #expect(try Self.tailor(["plan", new, "--detailed-exitcode"], root).status == 0)
            #expect(configs().count == 1 && configs() != oldConfigs)
        }
    }

    @Test("a chain whose interface is missing fails the whole apply before anything changes")
    func missingInterface() async throws {
        try await Self.withSpecs { specs, root in
            let lab = specs.lab
            try Self.apply(specs.v1, root)
            let before = try KernelSnapshot(root, hooks: specs.hooks)
            // Chain w's build finds no interface; a, b and z are prepared but none is switched.
            try specs.write("v2/w.yaml", specs.chain("w", hook: "tc-ingress", cubes: [specs.counter("yc")])
                .replacingOccurrences(of: "interface: \(lab.b.interfaceName)", with: "interface: nosuch0"))
            let failed = try Self.tailor(["apply", specs.v2], root)
            #expect(failed.status == 1)
            #expect(failed.stderr.contains("nosuch0"), "\(failed.stderr)")
            #expect(try KernelSnapshot(root, hooks: specs.hooks) == before)
            #expect(Self.leftovers(root).isEmpty)
        }
    }

    @Test("a second apply changes nothing: no mutating bpf() command, no rtnetlink NEW/DEL/SET message")
    func idempotent() async throws {
        try await Self.withSpecs { specs, root in
            try Self.apply(specs.v1, root)
            let trace = specs.directory + "/strace.txt"
            let traced = try CLI.run(["-f", "-e", "trace=bpf,sendto,sendmsg", "-o", trace, Golden.tailor.path,
                                      "apply", specs.v1, "--bpffs", root.path], executable: "/usr/bin/strace")
            #expect(traced.status == 0, "\(traced.stderr)")
            #expect(traced.stdout.contains("No changes."))
            let lines = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n")
            let reads: Set<String> = ["BPF_MAP_LOOKUP_ELEM", "BPF_MAP_LOOKUP_BATCH", "BPF_MAP_GET_NEXT_KEY",
                                      "BPF_OBJ_GET", "BPF_OBJ_GET_INFO_BY_FD", "BPF_PROG_GET_FD_BY_ID",
                                      "BPF_MAP_GET_FD_BY_ID", "BPF_BTF_GET_FD_BY_ID", "BPF_PROG_QUERY", "BPF_PROG_GET_NEXT_ID"]
            var commands = 0, messages = 0
            for line in lines {
                if let range = line.range(of: #"bpf\((BPF_[A-Z_]+)"#, options: .regularExpression) {
                    let command = String(line[range].dropFirst(4))
                    commands += 1
                    #expect(reads.contains(command), "a mutating bpf() command: \(line)")
                }
                // rtnetlink types come in fours from 16: NEW, DEL, GET, SET; only GET reads.
                if let range = line.range(of: #"nlmsg_type=0x[0-9a-f]+"#, options: .regularExpression),
                   let type = Int(line[range].dropFirst("nlmsg_type=0x".count), radix: 16), type >= 16 {
                    messages += 1
                    #expect((type - 16) % 4 == 2, "a mutating netlink message: \(line)")
                }
            }
            #expect(commands > 0 && messages > 0, "the trace saw no bpf() or netlink call")
        }
    }

    @Test("a cube the verifier rejects fails plan and apply with the verifier's log, before anything changes")
    func verifierReject() async throws {
        try await Self.withSpecs { specs, root in
            try Self.apply(specs.v1, root)
            let before = try KernelSnapshot(root, hooks: specs.hooks)
            let object = try Fixtures.testObject("unverifiable")
            try Data(object).write(to: URL(fileURLWithPath: specs.v2 + "/bad.o"))
            try specs.write("v2/r.yaml", specs.chain("r", hook: "tc-ingress", cubes: ["""
                    - name: bad
                      type: object
                      config: {path: bad.o, sha256: \(CubeBlueprint(type: "object", object: object).objectDigest)}
                """]))
            for command in ["plan", "apply"] {
                let failed = try Self.tailor([command, specs.v2], root)
                #expect(failed.status == 1, "\(command): \(failed.stderr)")
                #expect(failed.stderr.contains("verifier log"), "\(command): \(failed.stderr)")
                #expect(try KernelSnapshot(root, hooks: specs.hooks) == before, "\(command) changed the kernel")
            }
            #expect(Self.leftovers(root).isEmpty)
        }
    }

    @Test("state that cannot be migrated makes plan and apply exit 1 with the reason, and nothing changes")
    func migrationRefused() async throws {
        try await Self.withSpecs { specs, root in
            let lab = specs.lab
            let cube = { (version: String, extra: String) throws -> String in
                let object = try Fixtures.testObject(version)
                try Data(object).write(to: URL(fileURLWithPath: specs.v1 + "/\(version).o"))
                return """
                        - name: m
                          type: object
                          config: {path: \(version).o, sha256: \(CubeBlueprint(type: "object", object: object).objectDigest)}
                \(extra)
                """
            }
            try specs.write("v1/m.yaml", specs.chain("m", hook: "tc-egress", cubes: [try cube("migrate_v1", "")]))
            try Self.apply(specs.v1, root)
            _ = try Traffic.udp(in: lab, count: 1)
            try specs.write("v1/m.yaml", specs.chain("m", hook: "tc-egress", cubes: [try cube("migrate_narrow", "")]))
            let before = try KernelSnapshot(root, hooks: specs.hooks)
            for command in ["plan", "apply"] {
                let refused = try Self.tailor([command, specs.v1], root)
                #expect(refused.status == 1, "\(command): \(refused.stdout)")
                #expect(refused.stderr.contains("error: chain m: cube m: state map flows cannot be carried over: "
                    + "value field 'packets' narrows"), "\(command): \(refused.stderr)")
                #expect(refused.stdout.contains("! state \"flows\": refused"), "\(refused.stdout)")
                #expect(try KernelSnapshot(root, hooks: specs.hooks) == before, "\(command) changed the kernel")
            }
            try specs.write("v1/m.yaml", specs.chain("m", hook: "tc-egress", cubes: [
                try cube("migrate_narrow", "          migration: {flows: reset}")]))
            let accepted = try Self.tailor(["apply", specs.v1], root)
            #expect(accepted.status == 0, "\(accepted.stderr)")
            #expect(accepted.stdout.contains("state \"flows\": reset"), "\(accepted.stdout)")
        }
    }

    @Test("a second apply waits for the first, or fails at once with --lock-timeout 0")
    func concurrentApplies() async throws {
        try await Self.withSpecs { specs, root in
            // The first apply announces its commit write, then holds the lock a while.
            let first = Process()
            first.executableURL = Golden.tailor
            first.arguments = ["apply", specs.v1, "--bpffs", root.path]
            first.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                 "TAILOR_FAILPOINTS": "a: commit slot=trace;a: commit slot=sleep:1500"]
            let err = Pipe()
            first.standardError = err
            first.standardOutput = FileHandle.nullDevice
            try first.run()
            var seen = ""
            while !seen.contains("failpoint: a: commit slot") {
                let data = err.fileHandleForReading.availableData
                guard !data.isEmpty else { break }
                seen += String(decoding: data, as: UTF8.self)
            }
            #expect(seen.contains("failpoint: a: commit slot"))
            let impatient = try Self.tailor(["apply", specs.v1, "--lock-timeout", "0"], root)
            #expect(impatient.status == 1)
            #expect(impatient.stderr.contains("another tailor (apply or the daemon) holds it"), "\(impatient.stderr)")
            let patient = try Self.tailor(["apply", specs.v1], root)
            first.waitUntilExit()
            #expect(first.terminationStatus == 0)
            #expect(patient.status == 0)
            #expect(patient.stdout.contains("No changes."), "\(patient.stdout)")
        }
    }
}
