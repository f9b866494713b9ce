import Foundation
import Testing
import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

/// Pins removed by hand, leftovers recognised by their record, and a hook someone
/// else holds, with the real `tailor` on a real lab (issue 17).
@Suite("self-heal", .kernel, .serialized)
struct SelfHealTests {
    /// A spec directory of the lab's chains: `edge` on TC ingress of side b (drops
    /// UDP to port 9) and, with `other`, `other` on TC egress of side b.
    struct Specs {
        let directory: String

        init(_ lab: Lab, other: Bool = false) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-heal-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try lab.filterChainSpec(droppingUDP: 9).write(toFile: directory + "/edge.yaml", atomically: true, encoding: .utf8)
            if other {
                try lab.filterChainSpec("other", droppingUDP: 10).replacingOccurrences(of: "tc-ingress", with: "tc-egress")
                    .write(toFile: directory + "/other.yaml", atomically: true, encoding: .utf8)
            }
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    static func tailor(_ arguments: [String], _ root: PinRoot) throws -> (status: Int32, stdout: String, stderr: String) {
        try CLI.run(arguments + ["--bpffs", root.path])
    }

    /// The ways to damage chain `edge` by hand, by what they remove.
    static let damages: [(name: String, damage: @Sendable (PinRoot) throws -> Void)] = [
        ("root pin", { try $0.unpin($0.appending("edge", "root")) }),
        ("progs pin", { try $0.unpin($0.appending("edge", "progs")) }),
        ("meta pin", { try $0.unpin($0.appending("edge", "meta")) }),
        ("a cube's prog pin", { try $0.unpin($0.appending("edge", "cubes", "count", "prog")) }),
        ("root and progs pins", { root in
            try root.unpin(root.appending("edge", "root"))
            try root.unpin(root.appending("edge", "progs"))
        }),
        ("the chain directory", { try $0.removeTree($0.appending("edge")) }),
        ("the whole pin root", { try $0.removeTree($0.path) }),
    ]

    @Test("a chain with any of its pins removed by hand is drift: plan shows it (exit 2), apply repairs it, it filters again")
    func pinsRemovedByHand() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let specs = try Specs(lab)
                defer { specs.remove() }
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                #expect(try Self.tailor(["apply", specs.directory], root).status == 0)
                for (name, damage) in Self.damages {
                    let attached = try hook.attachedProgram()
                    try damage(root)
                    let plan = try Self.tailor(["plan", specs.directory, "--detailed-exitcode"], root)
                    #expect(plan.status == 2, "\(name): plan exits \(plan.status): \(plan.stdout)\(plan.stderr)")
                    #expect(!plan.stdout.contains("No changes"), "\(name): \(plan.stdout)")
                    let status = try Self.tailor(["status", specs.directory], root)
                    #expect(status.status == 2 && status.stdout.contains("Drifted"), "\(name): \(status.stdout)")
                    let apply = try Self.tailor(["apply", specs.directory], root)
                    #expect(apply.status == 0, "\(name): apply exits \(apply.status): \(apply.stderr)")
                    let again = try Self.tailor(["plan", specs.directory, "--detailed-exitcode"], root)
                    #expect(again.status == 0, "\(name): after apply, plan exits \(again.status): \(again.stdout)")
                    // Repaired in place, or rebuilt and swapped in: either way tailor's root is on the hook.
                    let now = try hook.attachedProgram()
                    #expect(now == (try Program(pinnedAt: root.appending("edge", "root")).info().id),
                            "\(name): the hook holds \(String(describing: now)), was \(String(describing: attached))")
                    #expect(try Traffic.udp(in: lab, count: 3, port: 9, timeout: .milliseconds(300)) == 0, "\(name)")
                    #expect(try Traffic.udp(in: lab, count: 3, port: 10) == 3, "\(name)")
                }
                #expect(try Self.tailor(["destroy", "edge"], root).status == 0)
            }
        }
    }

    @Test("destroy finds a damaged chain's attachment by its root's identity, detaches it and says what it put back")
    func destroyDamaged() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let specs = try Specs(lab)
                defer { specs.remove() }
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                let damages: [[String]] = [["root", "meta"], ["progs", "cubes/acl/prog"], ["root", "progs", "meta"],
                                           ["meta"]]
                for pins in damages {
                    #expect(try Self.tailor(["apply", specs.directory], root).status == 0)
                    for pin in pins { try root.unpin(root.appending("edge", pin)) }
                    let destroy = try Self.tailor(["destroy", pins.count > 2 ? "--all" : "edge"], root)
                    #expect(destroy.status == 0, "\(pins): \(destroy.stderr)")
                    #expect(destroy.stdout.contains("Destroyed chain edge."), "\(pins): \(destroy.stdout)")
                    #expect(destroy.stdout.contains("Repaired: chain edge:"), "\(pins): \(destroy.stdout)")
                    #expect(try hook.attachedProgram() == nil, "\(pins): the root is still attached")
                    #expect(!root.exists(root.appending("edge")), "\(pins)")
                }
                // The root gone too (detached, unpinned): what is left is removed.
                #expect(try Self.tailor(["apply", specs.directory], root).status == 0)
                let rootID = try Program(pinnedAt: root.appending("edge", "root")).info().id
                try TC.detach(from: lab.b.interface(), direction: .ingress, expected: rootID)
                try root.unpin(root.appending("edge", "root"))
                let destroy = try Self.tailor(["destroy", "edge"], root)
                #expect(destroy.status == 0 && destroy.stdout.contains("was gone"), "\(destroy.stdout)\(destroy.stderr)")
                #expect(!root.exists(root.appending("edge")))
            }
        }
    }

    @Test("directories named like leftovers without tailor's record survive apply, prune and destroy --all")
    func foreignLookalikes() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let specs = try Specs(lab, other: true)
                defer { specs.remove() }
                var pins: [String] = []
                for directory in ["_creating-x", "_removing-y-12", "_creating-edge2", "plain"] {
                    try root.makeDirectory(root.appending(directory))
                    let pin = root.appending(directory, directory == "_removing-y-12" ? "meta" : "data")
                    try BPFMap.create(.array, name: "foreign", keySize: 4, valueSize: 4, maxEntries: 1).pin(at: pin)
                    pins.append(pin)
                }
                try root.makeDirectory(root.appending("_creating-empty"))
                #expect(try Self.tailor(["apply", specs.directory], root).status == 0)
                try FileManager.default.removeItem(atPath: specs.directory + "/other.yaml")
                let prune = try Self.tailor(["apply", specs.directory], root)
                #expect(prune.status == 0 && !root.exists(root.appending("other")), "\(prune.stdout)\(prune.stderr)")
                let destroy = try Self.tailor(["destroy", "--all"], root)
                #expect(destroy.status == 0 && destroy.stdout == "Destroyed chain edge.\n", "\(destroy.stdout)")
                for pin in pins { #expect(root.exists(pin), "\(pin) was removed") }
                #expect(root.exists(root.appending("_creating-empty")))
            }
        }
    }

    @Test("a foreign program on one chain's hook: apply refuses all (or skips it with --skip-blocked), the plan says why")
    func blockedHook() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let specs = try Specs(lab, other: true)
                defer { specs.remove() }
                let foreign = try Self.foreignProgramOnEgress(lab)
                let plan = try Self.tailor(["plan", specs.directory, "--output", "json"], root)
                let json = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])
                let chains = try #require(json["chains"] as? [[String: Any]])
                let blocked = chains.filter { $0["blocked"] != nil }.compactMap { $0["name"] as? String }
                #expect(blocked == ["other"], "\(plan.stdout)")
                let refused = try Self.tailor(["apply", specs.directory], root)
                #expect(refused.status == 1 && refused.stderr.contains("chain other is blocked"), "\(refused.stderr)")
                #expect(!root.exists(root.appending("edge")))
                let skipping = try Self.tailor(["apply", specs.directory, "--skip-blocked"], root)
                #expect(skipping.status == 0 && skipping.stderr.contains("Skipped chain other"), "\(skipping.stderr)")
                #expect(try Traffic.udp(in: lab, count: 3, port: 9, timeout: .milliseconds(300)) == 0)
                let egress = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcEgress)
                #expect(try egress.attachedProgram() == foreign.info().id)
                try TC.detach(from: lab.b.interface(), direction: .egress, expected: foreign.info().id)
                #expect(try Self.tailor(["destroy", "--all"], root).status == 0)
            }
        }
    }

    /// A program that is not tailor's, on TC egress of side b.
    static func foreignProgramOnEgress(_ lab: Lab) throws -> Program {
        var object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "foreign")
        try object.loadOnly(["counter_tc"])
        try object.load()
        let program = try object.program(named: "counter_tc")
        let interface = try lab.b.interface()
        try TC.createHook(on: interface)
        try TC.attach(program, to: interface, direction: .egress, replacing: nil)
        return program
    }

    /// Seconds until `condition` holds, polled every 20 ms; nil after `limit`.
    static func timeUntil(_ limit: Double = 10, _ condition: () throws -> Bool) -> Double? {
        let start = Date()
        return eventually(limit, condition) ? Date().timeIntervalSince(start) : nil
    }
}

/// The daemon and pins removed by hand; serialized with the other daemon tests, which
/// read the daemon's log from its stderr.
extension DaemonTests {
    @Test("the daemon repairs every kind of pin removal within an interval, also after kill -9, and converges the chains a foreign program does not block")
    func daemon() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                do {
                    let specs = try SelfHealTests.Specs(lab, other: true)
                    defer { specs.remove() }
                    let foreign = try SelfHealTests.foreignProgramOnEgress(lab)
                    let log = specs.directory + ".log"
                    try Data().write(to: URL(fileURLWithPath: log))
                    defer { try? FileManager.default.removeItem(atPath: log) }
                    let lines = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
                    let start = { try Daemon(specs.directory, root, log: log) }
                    var daemon = try start()
                    defer { _ = daemon.stop() }
                    let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                    // Edge is attached with its pinned root, and status finds no drift in it.
                    let synced = {
                        try hook.attachedProgram() == Program(pinnedAt: root.appending("edge", "root")).info().id
                            && SelfHealTests.tailor(["status", "edge"], root).status == 0
                    }
                    // The blocked chain does not hold the other.
                    #expect(eventually(10, synced))
                    let egress = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcEgress)
                    #expect(try egress.attachedProgram() == foreign.info().id)
                    #expect(eventually { lines().contains("chain blocked") && lines().contains("CHAIN=other") }, "\(lines())")
                    var times: [String] = []
                    for (index, (name, damage)) in SelfHealTests.damages.enumerated() {
                        // Every other damage happens while no daemon runs: killed, then started again.
                        let killed = index % 2 == 1
                        if killed {
                            kill(daemon.process.processIdentifier, SIGKILL)
                            daemon.process.waitUntilExit()
                        }
                        try damage(root)
                        if killed { daemon = try start() }
                        let time = SelfHealTests.timeUntil(10, synced)
                        #expect(time != nil, "\(name): not repaired")
                        times.append("\(name)\(killed ? " (daemon killed)" : ""): \(time.map { String(format: "%.2f s", $0) } ?? "never")")
                        #expect(try Traffic.udp(in: lab, count: 3, port: 9, timeout: .milliseconds(300)) == 0, "\(name)")
                    }
                    print("repair times with --interval 1:\n  " + times.joined(separator: "\n  "))
                    #expect(daemon.stop() == 0)
                    try TC.detach(from: lab.b.interface(), direction: .egress, expected: foreign.info().id)
                    #expect(try SelfHealTests.tailor(["destroy", "--all"], root).status == 0)
                }
            }
        }
    }
}
