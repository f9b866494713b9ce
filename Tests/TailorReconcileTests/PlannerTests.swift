import Foundation
import Testing
import TailorDatapath
import TailorKernel
@testable import TailorReconcile

let hook = ChainHook(interface: "eth0", kind: .xdp(.native))

/// A test blueprint: object bytes, an optional rodata value, and one entry in its
/// entry-safe table `e` (the value is `entries`).
func blueprint(_ object: UInt8, config: UInt8 = 0, entries: UInt8 = 0, type: String = "test") -> CubeBlueprint {
    CubeBlueprint(type: type, object: [object], rodata: config == 0 ? [:] : ["x": [config]],
                  tables: ["e": [TableEntry(key: [0], value: [entries])]])
}

func desired(_ name: String, _ cubes: [(String, CubeBlueprint)], settings: ChainSettings? = nil,
             suspend: Bool = false) -> DesiredChain {
    DesiredChain(settings: settings ?? ChainSettings(name: name, hook: hook), topology: .line(cubes), suspend: suspend)
}

func desired(_ cubes: [(String, CubeBlueprint)], settings: ChainSettings? = nil, suspend: Bool = false) -> DesiredChain {
    desired("c", cubes, settings: settings, suspend: suspend)
}

/// The chain as tailor would have committed `chain`: its record, no drift.
func observed(_ chain: DesiredChain, drift: [Drift] = []) throws -> ObservedChain {
    let plan = try SlotPlan.make(live: [:], desired: chain.topology, capacity: 256)
    let cubes = plan.result.mapValues { live in
        let blueprint = chain.topology.nodes.values.first { $0.blueprint.digest == live.digest }?.blueprint
        return CubeRecord(type: "test", slot: live.slot, next: live.next, digest: live.digest,
                          objectDigest: blueprint?.objectDigest ?? "", fixedDigest: blueprint?.digest(excluding: ["e"]),
                          program: UInt32(100 + live.slot), maps: ["e": .entrySafeTable])
    }
    return ObservedChain(
        name: chain.settings.name,
        record: ChainRecord(settings: chain.settings, specDigest: chain.digest, cubes: cubes),
        slots: Dictionary(uniqueKeysWithValues: cubes.values.map { ($0.slot, ProgramID(rawValue: $0.program)) }),
        drift: drift, tables: chain.topology.nodes.mapValues { $0.blueprint.tables })
}

@Suite("planner: desired x observed -> plan")
struct PlannerTests {
    @Test("a chain not in the kernel is created with all its cubes")
    func create() {
        let plan = Planner.plan(desired: [desired([("a", blueprint(1)), ("b", blueprint(2))])], observed: [])
        #expect(plan.chains.map(\.action) == [.create])
        #expect(plan.chains[0].cubes.map(\.action) == [.add, .add])
        #expect(plan.summary == Plan.Summary(add: 2))
        #expect(!plan.isEmpty)
    }

    @Test("the applied state plans nothing")
    func idempotent() throws {
        let chain = desired([("a", blueprint(1)), ("b", blueprint(2))])
        let plan = Planner.plan(desired: [chain], observed: [try observed(chain)])
        #expect(plan.isEmpty && plan.chains.map(\.action) == [.none])
        #expect(plan.summary == Plan.Summary())
    }

    @Test("a changed object or config replaces the cube and says which")
    func replace() throws {
        let live = try observed(desired([("a", blueprint(1)), ("b", blueprint(2))]))
        let code = Planner.plan(desired: [desired([("a", blueprint(1)), ("b", blueprint(3))])], observed: [live])
        #expect(code.chains[0].cubes[1] == CubeChange(name: "b", type: "test", action: .replace, reasons: ["object changed"]))
        let config = Planner.plan(desired: [desired([("a", blueprint(1)), ("b", blueprint(2, config: 9))])],
                                  observed: [live])
        #expect(config.chains[0].cubes[1].reasons == ["config changed (rodata or tables)"])
        #expect(config.summary == Plan.Summary(replace: 1))
    }

    @Test("adding, removing and reordering cubes update the chain in place")
    func topologyChanges() throws {
        let live = try observed(desired([("a", blueprint(1)), ("b", blueprint(2)), ("c", blueprint(3))]))
        let insert = Planner.plan(desired: [desired([("a", blueprint(1)), ("x", blueprint(9)), ("b", blueprint(2)),
                                                     ("c", blueprint(3))])], observed: [live])
        #expect(insert.chains[0].action == .update)
        #expect(insert.chains[0].cubes.map(\.action) == [.relink, .add, .keep, .keep])
        #expect(insert.chains[0].cubes[0].reasons == ["next: b -> x"])
        let remove = Planner.plan(desired: [desired([("a", blueprint(1)), ("c", blueprint(3))])], observed: [live])
        #expect(remove.chains[0].cubes.map(\.action) == [.relink, .keep, .remove])
        #expect(remove.summary == Plan.Summary(change: 1, destroy: 1))
        let reorder = Planner.plan(desired: [desired([("a", blueprint(1)), ("c", blueprint(3)), ("b", blueprint(2))])],
                                   observed: [live])
        #expect(reorder.chains[0].cubes.map(\.action) == [.relink, .relink, .relink])
    }

    @Test("a new entry cube is called out")
    func newEntry() throws {
        let live = try observed(desired([("a", blueprint(1))]))
        let plan = Planner.plan(desired: [desired([("x", blueprint(9)), ("a", blueprint(1))])], observed: [live])
        #expect(plan.chains[0].reasons == ["entry: a -> x"])
        #expect(plan.chains[0].cubes.map(\.action) == [.add, .keep])
    }

    @Test("a hook or verdict change replaces the whole chain, and says its state starts empty")
    func settingsForceReplacement() throws {
        let live = try observed(desired([("a", blueprint(1)), ("b", blueprint(2))]))
        var moved = ChainSettings(name: "c", hook: ChainHook(interface: "eth1", kind: .tcIngress))
        let plan = Planner.plan(desired: [desired([("a", blueprint(1))], settings: moved)], observed: [live])
        #expect(plan.chains[0].action == .replace)
        #expect(plan.chains[0].reasons.first?.hasPrefix("hook: xdp (native) on eth0 -> tc-ingress on eth1") == true)
        #expect(plan.chains[0].cubes.map(\.action) == [.replace, .remove])
        moved = ChainSettings(name: "c", hook: hook, defaultVerdict: .drop)
        let verdict = Planner.plan(desired: [desired([("a", blueprint(1)), ("b", blueprint(2))], settings: moved)],
                                   observed: [live])
        #expect(verdict.chains[0].reasons.first?.hasPrefix("defaultVerdict: pass -> drop") == true)
    }

    @Test("chains gone from the specs are destroyed, or kept with --no-prune")
    func prune() throws {
        let stays = desired("stays", [("a", blueprint(1))])
        let live = [try observed(desired("old", [("a", blueprint(1))])), try observed(stays)]
        let pruned = Planner.plan(desired: [stays], observed: live)
        #expect(pruned.chains.map(\.action) == [.destroy, .none] && pruned.summary == Plan.Summary(destroy: 1))
        #expect(pruned.refusals.isEmpty)
        let kept = Planner.plan(desired: [stays], observed: live, prune: .keep)
        #expect(kept.chains.map(\.action) == [.skip, .none] && kept.isEmpty)
        #expect(kept.chains[0].reasons == ["no longer in the specs; kept (--no-prune)"])
    }

    /// Live chains named `names`, as tailor committed them.
    static func live(_ names: [String]) throws -> [ObservedChain] {
        try names.map { try observed(desired($0, [("a", blueprint(1))])) }
    }

    @Test("specs with no chain while chains are live: refused with prune, destroyed with allow-empty, kept with no-prune",
          arguments: [(Prune.prune, [ChainChange.Action.destroy, .destroy, .destroy], true),
                      (.pruneAllowingEmpty, [.destroy, .destroy, .destroy], false),
                      (.keep, [.skip, .skip, .skip], false)])
    func emptySpecs(prune: Prune, actions: [ChainChange.Action], refused: Bool) throws {
        let plan = Planner.plan(desired: [], observed: try Self.live(["lb", "edge", "fw"]), prune: prune)
        #expect(plan.chains.map(\.name) == ["edge", "fw", "lb"])
        #expect(plan.chains.map(\.action) == actions)
        #expect(plan.refusals == (refused ? [
            "the specs hold no chains while 3 chains are live (edge, fw, lb); refusing to destroy them all: an empty, "
                + "missing or half-synced spec directory looks like this. Give --allow-empty to remove every chain, "
                + "or --no-prune to keep them.",
        ] : []))
    }

    @Test("the refusal of empty specs names one chain as one, and many chains as the first ten")
    func emptySpecsWording() throws {
        let one = Planner.plan(desired: [], observed: try Self.live(["edge"]))
        #expect(one.refusals.first?.hasPrefix("the specs hold no chains while 1 chain is live (edge); "
            + "refusing to destroy it: ") == true, "\(one.refusals)")
        #expect(one.refusals.first?.hasSuffix("or --no-prune to keep it.") == true, "\(one.refusals)")
        let names = (10..<22).map { "c\($0)" }
        let many = Planner.plan(desired: [], observed: try Self.live(names))
        #expect(many.refusals.first?.contains("while 12 chains are live (c10, c11, c12, c13, c14, c15, c16, c17, c18, "
            + "c19, and 2 more); refusing to destroy them all") == true, "\(many.refusals)")
    }

    @Test("no chain in the specs and none live: no refusal, no changes")
    func emptySpecsNothingLive() {
        let plan = Planner.plan(desired: [], observed: [])
        #expect(plan.refusals.isEmpty && plan.isEmpty)
        #expect(PlanText.render(plan, color: false) == "No changes. The kernel matches the specs.")
    }

    @Test("leftovers and unreadable chains are not live chains: empty specs remove the leftovers without a refusal")
    func emptySpecsLeftovers() throws {
        var leftover = try observed(desired("_creating-edge", [("a", blueprint(1))]))
        leftover.drift = [.leftover]
        let unreadable = ObservedChain(name: "weird", record: nil, slots: [:], drift: [.metaMissing("empty")])
        let plan = Planner.plan(desired: [], observed: [leftover, unreadable])
        #expect(plan.refusals.isEmpty)
        #expect(plan.chains.map(\.action) == [.destroy, .skip])
        #expect(!plan.chains[0].destroysChain)
        #expect(Planner.liveChains([leftover, unreadable]).isEmpty)
    }

    @Test("destroys come first in the plan and under a loud line in its text")
    func destroysFirst() throws {
        let keep = desired("a", [("x", blueprint(1))])
        let plan = Planner.plan(desired: [keep, desired("n", [("x", blueprint(4))])],
                                observed: [try observed(keep), try observed(desired("z", [("y", blueprint(2))]))])
        #expect(plan.chains.map(\.name) == ["z", "a", "n"])
        #expect(plan.chains.map(\.action) == [.destroy, .none, .create])
        #expect(PlanText.render(plan, color: false) == """
            Symbols: + create  ~ update in place  -/+ replace  - destroy

            1 chain will be DESTROYED:
              # chain "z" will be destroyed (xdp (native) on eth0)
              # no longer in the specs
              - chain "z" {
                  - cube "y" (test)
                }

              # chain "n" will be created (xdp (native) on eth0)
              + chain "n" {
                  + cube "x" (test)
                }

            Plan: 1 to add, 0 to change, 0 to replace, 1 to destroy.
            """)
        #expect(PlanText.render(plan, color: true).contains("\u{1b}[1;31m1 chain will be DESTROYED:\u{1b}[0m"))
    }

    @Test("suspended chains and unreadable pinned state are left alone")
    func skipped() throws {
        let chain = desired([("a", blueprint(1))], suspend: true)
        #expect(Planner.plan(desired: [chain], observed: []).chains.map(\.action) == [.skip])
        let foreign = ObservedChain(name: "weird", record: nil, slots: [:], drift: [.metaMissing("empty")])
        let plan = Planner.plan(desired: [], observed: [foreign])
        #expect(plan.chains.map(\.action) == [.skip] && plan.isEmpty)
        #expect(plan.chains[0].drift.map(\.what) == ["meta record unreadable: empty"])
    }

    @Test("several chains are planned independently and listed by name")
    func severalChains() throws {
        let keep = desired("b", [("a", blueprint(1))])
        let plan = Planner.plan(desired: [desired("c", [("a", blueprint(1))]), keep],
                                observed: [try observed(keep), try observed(desired("a", [("z", blueprint(5))]))])
        #expect(plan.chains.map(\.name) == ["a", "b", "c"])
        #expect(plan.chains.map(\.action) == [.destroy, .none, .create])
    }

    @Test("drift is carried into the plan and shown first")
    func drift() throws {
        let chain = desired([("a", blueprint(1))])
        let plan = Planner.plan(desired: [chain], observed: [try observed(chain, drift: [.slotEmpty(cube: "a", slot: 0)])])
        #expect(plan.chains[0].drift.map(\.what) == ["slot 0 of cube a is empty"])
        let text = PlanText.render(plan, color: false)
        #expect(text.hasPrefix("Drift found in the kernel:\n  chain c: slot 0 of cube a is empty"))
    }

    @Test("with repairDrift: false, drift is reported with its kind and left alone")
    func reportOnly() throws {
        var chain = desired([("a", blueprint(1))])
        let drift: [Drift] = [.slotEmpty(cube: "a", slot: 0), .rootDetached]
        var plan = Planner.plan(desired: [chain], observed: [try observed(chain, drift: drift)])
        #expect(plan.chains[0].action == .repair && plan.chains[0].repairsDrift)
        #expect(plan.chains[0].drift.map(\.kind) == [.slotEmpty, .rootDetached])
        chain.repairDrift = false
        plan = Planner.plan(desired: [chain], observed: [try observed(chain, drift: drift)])
        #expect(plan.chains[0].action == .none && !plan.chains[0].repairsDrift && plan.isEmpty)
        #expect(plan.chains[0].reasons == ["drift is reported, not repaired (repairDrift: false)"])
        #expect(plan.chains[0].drift.map(\.kind) == [.slotEmpty, .rootDetached])
    }

    @Test("the text plan has a legend, the reasons and a summary line")
    func text() throws {
        let live = try observed(desired([("a", blueprint(1)), ("b", blueprint(2))]))
        let plan = Planner.plan(desired: [desired([("a", blueprint(1)), ("b", blueprint(3))]),
                                          desired("n", [("x", blueprint(4))])], observed: [live])
        #expect(PlanText.render(plan, color: false) == """
            Symbols: + create  ~ update in place  -/+ replace  - destroy

              # chain "c" will be updated in place (xdp (native) on eth0)
              ~ chain "c" {
                  -/+ cube "b" (test)   # object changed (forces replacement)
                    (1 unchanged cube hidden)
                }

              # chain "n" will be created (xdp (native) on eth0)
              + chain "n" {
                  + cube "x" (test)
                }

            Plan: 1 to add, 0 to change, 1 to replace, 0 to destroy.
            """)
        #expect(PlanText.render(Planner.plan(desired: [], observed: []), color: false)
                == "No changes. The kernel matches the specs.")
    }
}

@Suite("table drift")
struct TableDriftTests {
    let entry = { (k: UInt8, v: UInt8) in TableEntry(key: [k, 0, 0, 0], value: [v, 0]) }

    @Test("entries added, changed and removed by hand are listed (in hex without the cube's words); zero entries of array maps are not")
    func entries() {
        let desired = ["t": [entry(0, 1), entry(1, 2), entry(2, 3)]]
        let live = ["t": [entry(0, 1), entry(1, 9), entry(5, 7), entry(6, 0)]]
        #expect(Planner.tableDrift("c", desired: desired, live: live) == [
            .tableEntryChanged(cube: "c", map: "t", key: "01000000", change: "changed out of band: 0200 -> 0900"),
            .tableEntryChanged(cube: "c", map: "t", key: "02000000", change: "removed out of band (was 0300)"),
            .tableEntryChanged(cube: "c", map: "t", key: "05000000", change: "added out of band: 0700"),
        ])
        #expect(Planner.tableDrift("c", desired: desired, live: ["t": desired["t"]! + [entry(9, 0)]]).isEmpty)
    }

    @Test("past five entries of a table, its counts come first, then the first five")
    func counts() {
        let live = ["t": (1...7).map { entry($0, $0) }]
        let drift = Planner.tableDrift("c", desired: ["t": [entry(1, 9)]], live: live)
        #expect(drift.first == .tableChanged(cube: "c", map: "t", added: 6, changed: 1, removed: 0))
        #expect(drift.count == 6 && drift.dropFirst().allSatisfy { $0.kind == .tableChanged })
    }

    @Test("a chain whose table drifted is planned as a repair")
    func repairPlanned() throws {
        let bp = CubeBlueprint(type: "t", object: [1], tables: ["t": [entry(0, 1)]])
        let chain = desired([("a", bp)])
        var live = try observed(chain)
        live.tables = ["a": ["t": [entry(0, 2)]]]
        let plan = Planner.plan(desired: [chain], observed: [live])
        #expect(plan.chains[0].action == .repair)
        #expect(plan.chains[0].drift.map(\.what) == ["entry 00000000 in table t of cube a changed out of band: 0100 -> 0200"])
    }
}

@Suite("saved plans")
struct PlanFileTests {
    @Test("a saved plan applies only to the same specs and the same live state")
    func staleness() throws {
        let chain = desired([("a", blueprint(1))])
        let live = [try observed(chain)]
        let file = PlanFile(paths: ["specs"], prune: .prune, desired: [chain], observed: live,
                            plan: Planner.plan(desired: [chain], observed: live))
        #expect(file.staleness(desired: [chain], observed: live) == nil)
        let edited = desired([("a", blueprint(2))])
        #expect(file.staleness(desired: [edited], observed: live)?.hasPrefix("the specs changed since the plan was made (chains: c)") == true)
        var tampered = live
        tampered[0].slots = [0: ProgramID(rawValue: 999)]
        #expect(file.staleness(desired: [chain], observed: tampered) == "the live state changed since the plan was made; plan again")
        var tableEdited = live
        tableEdited[0].tables = ["a": ["t": [TableEntry(key: [1], value: [1])]]]
        #expect(file.staleness(desired: [chain], observed: tableEdited) != nil)
    }

    @Test("a saved plan keeps its prune choice; files from before allowEmpty read as plain prune",
          arguments: [(Prune.keep, false, false), (.prune, true, false), (.pruneAllowingEmpty, true, true)])
    func pruneChoice(prune: Prune, prunes: Bool, allowEmpty: Bool) throws {
        let file = PlanFile(paths: ["specs"], prune: prune, desired: [], observed: [],
                            plan: Planner.plan(desired: [], observed: [], prune: prune))
        let json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(file)) as? [String: Any]
        #expect(json?["prune"] as? Bool == prunes && json?["allowEmpty"] as? Bool == allowEmpty, "\(json ?? [:])")
        #expect(try JSONDecoder().decode(PlanFile.self, from: try JSONEncoder().encode(file)).prune == prune)
        var old = try #require(json)
        old["allowEmpty"] = nil
        let decoded = try JSONDecoder().decode(PlanFile.self, from: try JSONSerialization.data(withJSONObject: old))
        #expect(decoded.prune == (prune == .keep ? .keep : .prune))
    }
    @Test("a saved plan reads back as the plan it saved, hooks and drift included")
    func roundTrip() throws {
        let hooks: [ChainHook] = [ChainHook(interface: "eth0", kind: .xdp(.native)),
                                  ChainHook(interface: "tl-b", namespace: "tailor-lab-b", kind: .tcIngress),
                                  ChainHook(interface: "veth1", kind: .xdp(.generic)),
                                  ChainHook(interface: "e", namespace: "n", kind: .tcEgress)]
        for hook in hooks { #expect(ChainHook(description: hook.description) == hook) }
        #expect(ChainHook(description: "?") == nil && ChainHook(description: "xdp (fast) on eth0") == nil)
        let chain = desired([("a", blueprint(1))], settings: ChainSettings(name: "c", hook: hooks[1]))
        let plan = Planner.plan(desired: [chain], observed: [try observed(chain, drift: [.rootDetached, .slotEmpty(cube: "a", slot: 0)])])
        let file = PlanFile(paths: ["specs"], prune: .prune, desired: [chain], observed: [], plan: plan)
        let decoded = try JSONDecoder().decode(PlanFile.self, from: try JSONEncoder().encode(file))
        #expect(decoded.plan == plan && plan.chains[0].hook == hooks[1] && plan.chains[0].drift.count == 2)
    }
}
