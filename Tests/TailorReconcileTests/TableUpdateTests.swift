import Testing
import TailorCubes
import TailorDatapath
import TailorSpec
import TailorKernel
import TailorLab
@testable import TailorReconcile
import TailorTestKit

/// Entry-safe tables (TAILOR_TABLE_ENTRY_SAFE): a change of their entries alone is
/// made in place, on the live instance, and planned as `~ update`.
@Suite("table entries changed in place", .kernel)
struct TableUpdateTests {
    /// The blocklist object (bpf/bench/blocklist.c) dropping UDP/TCP to `ports`.
    static func blocklist(_ ports: [UInt16], tag: UInt8 = 1) throws -> CubeBlueprint {
        CubeBlueprint(type: "object", object: try Fixtures.testObject("blocklist"),
                      tables: ["blocked": ports.map { TableEntry(key: withUnsafeBytes(of: $0.littleEndian, Array.init), value: [tag]) }])
    }

    static func desired(_ lab: Lab, _ ports: [UInt16], tag: UInt8 = 1) throws -> [DesiredChain] {
        let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
        return [DesiredChain(settings: ChainSettings(name: "bl", hook: hook),
                             topology: .line([("block", try blocklist(ports, tag: tag))]))]
    }

    static func apply(_ desired: [DesiredChain], _ executor: Executor, _ root: PinRoot) throws -> Plan {
        // Deep: the plan counts the entries that change.
        let plan = Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root, deep: true))
        _ = try executor.verify(plan, desired: desired)
        _ = try executor.apply(plan, desired: desired)
        return plan
    }

    @Test("adding and removing entries keeps the instance, changes only those entries, and plans as ~")
    func inPlace() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let executor = Executor(pinRoot: root)
                _ = try Self.apply(Self.desired(lab, [7001, 7002]), executor, root)
                let program = try #require(Observer.observe("bl", pinRoot: root).record?.cubes["block"]?.program)
                #expect(try Traffic.udp(in: lab, count: 3, port: 7001, timeout: .milliseconds(300)) == 0)
                #expect(try Traffic.udp(in: lab, count: 3, port: 7003) == 3)

                let desired = try Self.desired(lab, [7002, 7003])
                let plan = try Self.apply(desired, executor, root)
                let cube = try #require(plan.chains.first?.cubes.first)
                #expect(cube.action == .update)
                #expect(cube.reasons == ["table blocked: +1 ~0 -1 entries"])
                #expect(cube.tables.first?.entries == ["- 591b = 01", "+ 5b1b = 01"])
                #expect(plan.summary == Plan.Summary(change: 1))
                let text = PlanText.render(plan, color: false, verbose: true)
                #expect(text.contains("~ cube \"block\" (object)   # table blocked: +1 ~0 -1 entries"), "\(text)")
                #expect(text.contains("+ 5b1b = 01"), "\(text)")

                let record = try #require(Observer.observe("bl", pinRoot: root).record?.cubes["block"])
                #expect(record.program == program)  // the same instance
                #expect(record.digest == desired[0].cubeDigests["block"])
                #expect(Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root)).isEmpty)
                #expect(try Traffic.udp(in: lab, count: 3, port: 7001) == 3)
                #expect(try Traffic.udp(in: lab, count: 3, port: 7003, timeout: .milliseconds(300)) == 0)

                // A changed value is an update too; a changed object or rodata is not.
                let changed = try Self.apply(Self.desired(lab, [7002, 7003], tag: 0), executor, root)
                #expect(changed.chains.first?.cubes.first?.reasons == ["table blocked: +0 ~2 -0 entries"])
                #expect(try Traffic.udp(in: lab, count: 3, port: 7003) == 3)
                var rodata = try Self.desired(lab, [7002])
                rodata[0] = DesiredChain(settings: rodata[0].settings, topology: .line([("block", CubeBlueprint(
                    type: "object", object: try Fixtures.testObject("blocklist"), rodata: ["tailor_fail_open": [1]]))]))
                let replaced = Planner.plan(desired: rodata, observed: Observer.observe(pinRoot: root))
                #expect(replaced.chains.first?.cubes.first?.action == .replace)
                try Chain.open("bl", pinRoot: root).destroy()
            }
        }
    }

    @Test("an edit reads and writes only the tables whose digest it changes: an entry changed by hand in another is left for the deep check")
    func onlyChangedTables() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                let rules = [Firewall.Rule(Filter.Rule(proto: 6, destinationPorts: 80...80, action: .pass), action: .accept),
                             Firewall.Rule(Filter.Rule(proto: 17, destinationPorts: 53...53, action: .pass), action: .drop)]
                let desired = { (policy: Firewall.Action) throws in
                    [DesiredChain(settings: ChainSettings(name: "fwt", hook: hook), topology: .line([
                        ("fw", try Firewall.blueprint(rules: rules, policy: policy, acceptEstablished: false))]))]
                }
                // Each apply by a fresh executor, as `tailor apply` makes it: nothing known of the tables.
                let apply = { (desired: [DesiredChain], deep: Bool) throws -> Plan in
                    let executor = Executor(pinRoot: root)
                    let plan = Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root, deep: deep))
                    _ = try executor.apply(executor.verify(plan, desired: desired), desired: desired)
                    return plan
                }
                _ = try apply(desired(.accept), false)
                let record = try #require(Observer.observe("fwt", pinRoot: root).record?.cubes["fw"])
                let blueprint = try #require(try desired(.accept)[0].topology.nodes["fw"]?.blueprint)
                #expect(record.tableDigests?.filter { blueprint.tableNames.contains($0.key) } == blueprint.tableDigests)
                // Rule 0 made a drop in both generations of `actions`, by hand.
                let actions = try BPFMap(pinnedAt: root.appending("fwt", "cubes", "fw", "maps", "actions"))
                let half = actions.info.maxEntries / 2
                let key = { (index: Int) in withUnsafeBytes(of: UInt32(index).littleEndian, Array.init) }
                for index in [0, half] { try actions.update(key(index), [1]) }

                let flipped = try apply(desired(.drop), false)
                #expect(flipped.chains.first?.cubes.first?.action == .update, "\(flipped)")
                #expect(try actions.lookup(key(0)) == [1] && actions.lookup(key(half)) == [1], "actions was rewritten")
                let after = try #require(Observer.observe("fwt", pinRoot: root).record?.cubes["fw"])
                #expect(after.program == record.program && after.tableDigests?["policy"] != record.tableDigests?["policy"])
                #expect(after.tableDigests?["actions"] == record.tableDigests?["actions"])

                // The deep check sees the entry and puts it back.
                let deep = Planner.plan(desired: try desired(.drop), observed: Observer.observe(pinRoot: root, deep: true))
                #expect(deep.chains.first?.drift.contains { $0.kind == .tableChanged } == true, "\(deep)")
                _ = try apply(desired(.drop), true)
                #expect(try actions.lookup(key(0)) == [0] && actions.lookup(key(half)) == [0])
                #expect(Planner.plan(desired: try desired(.drop), observed: Observer.observe(pinRoot: root, deep: true)).isEmpty)
                try Chain.open("fwt", pinRoot: root).destroy()
            }
        }
    }

    @Test("a failure while entries are written puts every entry back")
    func rollback() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                _ = try Self.apply(Self.desired(lab, [7001, 7002]), Executor(pinRoot: root), root)
                let before = try KernelSnapshot(root, hooks: Self.desired(lab, []).map(\.settings.hook))
                var failing = Executor(pinRoot: root)
                failing.failpoint = { step in
                    if step.hasPrefix("bl: write record") { throw KernelError(.permissionDenied, operation: "test", object: step) }
                }
                #expect(throws: KernelError.self) { _ = try Self.apply(Self.desired(lab, [7003]), failing, root) }
                #expect(try KernelSnapshot(root, hooks: Self.desired(lab, []).map(\.settings.hook)) == before)
                #expect(try Traffic.udp(in: lab, count: 3, port: 7001, timeout: .milliseconds(300)) == 0)
                try Chain.open("bl", pinRoot: root).destroy()
            }
        }
    }
}
