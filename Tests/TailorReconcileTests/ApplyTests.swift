import Testing
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
@testable import TailorReconcile
import TailorTestKit

@Suite("observe, plan and apply on the real kernel", .kernel)
struct ApplyTests {
    func chains(_ lab: Lab, tagID: UInt16 = 1, counters: Bool = true) throws -> [DesiredChain] {
        let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
        var cubes: [(String, CubeBlueprint)] = [("tag", try Tag.blueprint(id: tagID))]
        if counters { cubes.append(("count", try Counter.blueprint())) }
        return [DesiredChain(settings: ChainSettings(name: "edge", hook: hook), topology: .line(cubes))]
    }

    @Test("apply creates, a second plan is empty, a change updates in place keeping state, prune destroys")
    func lifecycle() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let executor = Executor(pinRoot: root)
                var desired = try chains(lab)
                var plan = Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root))
                _ = try executor.verify(plan, desired: desired)
                #expect(try executor.apply(plan, desired: desired) == Executor.Report(added: 2))

                let observed = Observer.observe(pinRoot: root)
                #expect(observed.map(\.name) == ["edge"] && observed[0].drift.isEmpty)
                #expect(observed[0].record?.specDigest == desired[0].digest)
                #expect(Planner.plan(desired: desired, observed: observed).isEmpty)
                #expect(try Traffic.udp(in: lab, count: 10) == 10)

                desired = try chains(lab, tagID: 2)
                plan = Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root))
                #expect(plan.summary == Plan.Summary(replace: 1))
                _ = try executor.verify(plan, desired: desired)
                #expect(try executor.apply(plan, desired: desired) == Executor.Report(replaced: 1))
                #expect(try Traffic.udp(in: lab, count: 5) == 5)
                let counters = try CubeCounters(pinnedAt: root.appending("edge", "cubes", "tag", "maps", "tailor_counters"))
                #expect(counters.packets == 15)  // the replaced tag kept its counters
                #expect(Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root)).isEmpty)

                plan = Planner.plan(desired: [], observed: Observer.observe(pinRoot: root))
                #expect(try executor.apply(plan, desired: []) == Executor.Report(removed: 2))
                #expect(Observer.observe(pinRoot: root).isEmpty)
            }
        }
    }

    @Test("a cube between the commit cube and a change gets a new instance with its maps: the plan says so and counts it")
    func pathCopy() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let executor = Executor(pinRoot: root)
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                // Both tags change (their ids are rodata): the commit writes the first, so the counter between
                // them is loaded again, wired to the second's new slot.
                let chain = { (first: UInt16, second: UInt16) in
                    [DesiredChain(settings: ChainSettings(name: "copy", hook: hook), topology: .line([
                        ("first", try Tag.blueprint(id: first)), ("count", try Counter.blueprint()),
                        ("second", try Tag.blueprint(id: second)),
                    ]))]
                }
                let old = try chain(1, 3), new = try chain(2, 4)
                _ = try executor.apply(Planner.plan(desired: old, observed: Observer.observe(pinRoot: root)), desired: old)
                let pins = { (path: String) in try Program(pinnedAt: root.appending("copy", "cubes", "count", path)).info().id }
                let maps = { try ["counters", "tailor_counters"].map {
                    try BPFMap(pinnedAt: root.appending("copy", "cubes", "count", "maps", $0)).info.id
                } }
                let (program, mapIDs) = (try pins("prog"), try maps())

                let planned = Planner.plan(desired: new, observed: Observer.observe(pinRoot: root))
                #expect(planned.chains[0].cubes.first { $0.name == "count" }?.action == .keep)
                let plan = try executor.verify(planned, desired: new)
                let count = try #require(plan.chains[0].cubes.first { $0.name == "count" })
                #expect(count.action == .relink && count.reasons == [
                    "new instance, maps kept: on the path from cube first to a change (path copy)",
                ], "\(count)")
                #expect(plan.summary == Plan.Summary(change: 1, replace: 2))
                #expect(try executor.apply(plan, desired: new) == Executor.Report(changed: 1, replaced: 2))
                #expect(try pins("prog") != program)
                #expect(try maps() == mapIDs)
                #expect(try Traffic.udp(in: lab, count: 5) == 5)
                _ = try executor.apply(Planner.plan(desired: [], observed: Observer.observe(pinRoot: root),
                                                    prune: .pruneAllowingEmpty), desired: [])
            }
        }
    }

    @Test("a chain whose directory was removed by hand and that no spec names is found by its root's identity; prune and destroy NAME detach it")
    func orphanNotInSpecs() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let executor = Executor(pinRoot: root)
                let desired = try chains(lab)
                let hook = desired[0].settings.hook
                for destroyByName in [false, true] {
                    _ = try executor.apply(Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root)),
                                           desired: desired)
                    let attached = try #require(try hook.attachedProgram())
                    try root.removeTree(root.appending("edge"))

                    // Without the spec, only the identity in the running root says the chain is tailor's
                    // (its slots were emptied by the kernel with the prog_array's last pin: packets miss).
                    let observed = Observer.observe(pinRoot: root)
                    #expect(observed.map(\.name) == ["edge"] && observed.first?.drift == [.orphaned(attached)])
                    if destroyByName {
                        #expect(try Chain.destroy("edge", pinRoot: root).isEmpty == false)
                    } else {
                        let plan = Planner.plan(desired: [], observed: observed, prune: .pruneAllowingEmpty)
                        #expect(plan.chains.map(\.action) == [.destroy] && plan.chains.first?.reasons == ["no longer in the specs"])
                        _ = try executor.apply(plan, desired: [])
                    }
                    #expect(try hook.attachedProgram() == nil)
                    #expect(Observer.observe(pinRoot: root).isEmpty)
                    #expect(!root.exists(root.appending("edge")))
                }
            }
        }
    }

    @Test("a filter's rules edited by hand are found and written back")
    func tableDrift() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                let filter = try Filter.blueprint(rules: [.init(proto: 17, destinationPorts: 9999...9999, action: .drop)],
                                                  defaultAction: .pass)
                let desired = [DesiredChain(settings: ChainSettings(name: "f", hook: hook), topology: .line([("acl", filter)]))]
                let executor = Executor(pinRoot: root)
                _ = try executor.apply(Planner.plan(desired: desired, observed: []), desired: desired)
                #expect(try Traffic.udp(in: lab, count: 5, port: 9999, timeout: .milliseconds(300)) == 0)
                // Someone zeroes the drop rule with bpftool.
                let rules = try BPFMap(pinnedAt: root.appending("f", "cubes", "acl", "maps", "rules"))
                try rules.update([0, 0, 0, 0], [UInt8](repeating: 0, count: rules.info.valueSize))
                #expect(try Traffic.udp(in: lab, count: 5, port: 9999) == 5)
                // Only a deep observe reads the entries; the default takes the record's word.
                #expect(Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root)).isEmpty)
                let plan = Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root, deep: true))
                #expect(plan.chains[0].action == .repair)
                #expect(plan.chains[0].drift.map(\.what) == ["entry rules[0] in table rules of cube acl changed out of band: "
                    + "{match: {proto: udp, dport: 9999}, action: drop} -> {match: {sport: 0, dport: 0}, action: pass}"])
                #expect(try executor.apply(plan, desired: desired) == Executor.Report(repaired: 1))
                #expect(try Traffic.udp(in: lab, count: 5, port: 9999, timeout: .milliseconds(300)) == 0)
                #expect(Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root, deep: true)).isEmpty)
                try Chain.open("f", pinRoot: root).destroy()
            }
        }
    }

    @Test("observe reports an emptied slot, a swapped program and a detached root; apply puts them back")
    func drift() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let desired = try chains(lab)
                _ = try Executor(pinRoot: root).apply(Planner.plan(desired: desired, observed: []), desired: desired)
                let slots = try ProgramArray(pinnedAt: root.appending("edge", "progs"))
                let record = try #require(Observer.observe("edge", pinRoot: root).record)
                let count = try #require(record.cubes["count"]), tag = try #require(record.cubes["tag"])
                try slots.clear(count.slot)
                try slots.set(tag.slot, to: Program(pinnedAt: root.appending("edge", "cubes", "count", "prog")))
                let interface = try lab.b.interface()
                try TC.detach(from: interface, direction: .ingress,
                              expected: try Program(pinnedAt: root.appending("edge", "root")).info().id)
                let drift = Observer.observe("edge", pinRoot: root).drift
                #expect(drift.contains(.slotEmpty(cube: "count", slot: count.slot)))
                #expect(drift.contains(.programSwapped(cube: "tag", slot: tag.slot,
                                                       found: ProgramID(rawValue: count.program))))
                #expect(drift.contains(.rootDetached))

                let plan = Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root))
                #expect(plan.chains.map(\.action) == [.repair] && plan.summary == Plan.Summary(repair: 1))
                #expect(PlanText.render(plan, color: false).contains("~ repair: slot \(count.slot) of cube count is empty"))
                #expect(try Executor(pinRoot: root).apply(plan, desired: desired) == Executor.Report(repaired: 1))
                #expect(Observer.observe("edge", pinRoot: root).drift.isEmpty)
                #expect(Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root)).isEmpty)
                #expect(try Traffic.udp(in: lab, count: 5) == 5)
                let counters = try CubeCounters(pinnedAt: root.appending("edge", "cubes", "count", "maps", "tailor_counters"))
                #expect(counters.packets == 5)
                try Chain.open("edge", pinRoot: root).destroy()
            }
        }
    }
}

@Suite("foreign programs on a hook", .kernel)
struct TakeoverTests {
    @Test("a hook used by a foreign program is not taken without --takeover, and is with it")
    func takeover() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                var foreignObject = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "foreign")
                try foreignObject.loadOnly(["counter_xdp"])
                try foreignObject.load()
                let foreign = try foreignObject.program(named: "counter_xdp")
                let interface = try lab.b.interface()
                try XDP.attach(foreign, to: interface, mode: .native, replacing: nil)
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .xdp(.native))
                let desired = [DesiredChain(settings: ChainSettings(name: "x", hook: hook),
                                            topology: .line([("t", try Tag.blueprint(id: 1))]))]
                let plan = Planner.plan(desired: desired, observed: Observer.observe(pinRoot: root))
                let refused = #expect(throws: KernelError.self) {
                    _ = try Executor(pinRoot: root).apply(plan, desired: desired)
                }
                #expect(refused?.code == .staleExpectation)
                #expect(try XDP.query(interface).native == foreign.info().id)
                #expect(!root.exists(root.appending("x")))
                _ = try Executor(pinRoot: root, takeover: true).apply(plan, desired: desired)
                #expect(try XDP.query(interface).native == Program(pinnedAt: root.appending("x", "root")).info().id)
                try Chain.open("x", pinRoot: root).destroy()
            }
        }
    }
}
