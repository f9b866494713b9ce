import Testing
@testable import TailorDatapath

/// A blueprint whose digest changes with `version`.
func blueprint(_ version: UInt8) -> CubeBlueprint { CubeBlueprint(type: "test", object: [version]) }

/// Applies a plan to a layout the way the chain does, for checking successive plans.
func line(_ names: [String], versions: [String: UInt8] = [:]) -> Topology {
    Topology.line(names.map { ($0, blueprint(versions[$0] ?? 1)) })
}

@Suite("slot plan: path copy and one commit write")
struct SlotPlanTests {
    @Test("a new chain loads every cube and commits slot 0")
    func newChain() throws {
        let plan = try SlotPlan.make(live: [:], desired: line(["a", "b", "c"]), capacity: 16)
        #expect(plan.commitSlot == 0 && plan.commitCube == "a")
        #expect(plan.load["a"] == LiveInstance(slot: 0, digest: blueprint(1).digest, next: [1]))
        #expect(plan.load["b"] == LiveInstance(slot: 1, digest: blueprint(1).digest, next: [2]))
        #expect(plan.load["c"] == LiveInstance(slot: 2, digest: blueprint(1).digest, next: [nil]))
        #expect(plan.retire.isEmpty && plan.slotsToClear.isEmpty)
    }

    @Test("an unchanged chain plans nothing")
    func unchanged() throws {
        let first = try SlotPlan.make(live: [:], desired: line(["a", "b"]), capacity: 16)
        let again = try SlotPlan.make(live: first.result, desired: line(["a", "b"]), capacity: 16)
        #expect(again.isEmpty && again.commitSlot == nil)
        #expect(again.result == first.result)
    }

    @Test("one changed cube is one write to its own slot")
    func singleSlot() throws {
        let live = try SlotPlan.make(live: [:], desired: line(["a", "b", "c"]), capacity: 16).result
        let plan = try SlotPlan.make(live: live, desired: line(["a", "b", "c"], versions: ["b": 2]), capacity: 16)
        #expect(plan.commitCube == "b" && plan.commitSlot == live["b"]?.slot)
        #expect(Array(plan.load.keys) == ["b"])
        #expect(plan.load["b"]?.next == [live["c"]?.slot])
        #expect(plan.slotsToClear.isEmpty)
        #expect(plan.retire.keys.sorted() == ["b"])
    }

    @Test("inserting a cube copies its predecessor and commits the predecessor's slot")
    func insert() throws {
        let live = try SlotPlan.make(live: [:], desired: line(["a", "b"]), capacity: 16).result
        let plan = try SlotPlan.make(live: live, desired: line(["a", "x", "b"]), capacity: 16)
        #expect(plan.commitCube == "a" && plan.commitSlot == 0)
        #expect(plan.load.keys.sorted() == ["a", "x"])
        let x = try #require(plan.load["x"])
        #expect(x.slot != 0 && x.slot != live["b"]?.slot)
        #expect(plan.load["a"]?.next == [x.slot])
        #expect(x.next == [live["b"]?.slot])
        #expect(plan.slotsToClear.isEmpty)
    }

    @Test("removing a cube rewires its predecessor and frees its slot after the commit")
    func remove() throws {
        let live = try SlotPlan.make(live: [:], desired: line(["a", "b", "c"]), capacity: 16).result
        let plan = try SlotPlan.make(live: live, desired: line(["a", "c"]), capacity: 16)
        #expect(plan.commitCube == "a")
        #expect(plan.load.keys.sorted() == ["a"])
        #expect(plan.load["a"]?.next == [live["c"]?.slot])
        #expect(plan.retire.keys.sorted() == ["a", "b"])
        #expect(plan.slotsToClear == [live["b"]?.slot].compactMap { $0 })
    }

    @Test("reordering copies the whole path below the first change")
    func reorder() throws {
        let live = try SlotPlan.make(live: [:], desired: line(["a", "b", "c", "d"]), capacity: 16).result
        let plan = try SlotPlan.make(live: live, desired: line(["a", "c", "b", "d"]), capacity: 16)
        #expect(plan.commitCube == "a")
        #expect(plan.load.keys.sorted() == ["a", "b", "c"])
        let oldSlots = Set(live.values.map(\.slot))
        #expect(!oldSlots.contains(try #require(plan.load["b"]).slot))
        #expect(!oldSlots.contains(try #require(plan.load["c"]).slot))
        #expect(plan.load["b"]?.next == [live["d"]?.slot])  // d is reused where it is
        #expect(Set(plan.slotsToClear) == Set([live["b"]?.slot, live["c"]?.slot].compactMap { $0 }))
    }

    @Test("changes in two branches commit at the classifier that dominates both")
    func branches() throws {
        func topology(x: UInt8, y: UInt8) -> Topology {
            Topology(entry: "in", nodes: [
                "in": .init(blueprint: blueprint(1), next: ["k"]),
                "k": .init(blueprint: CubeBlueprint(type: "classifier", object: [9], outputs: 2), next: ["x", "y"]),
                "x": .init(blueprint: blueprint(x), next: ["out"]),
                "y": .init(blueprint: blueprint(y), next: ["out"]),
                "out": .init(blueprint: blueprint(1), next: [nil]),
            ])
        }
        let live = try SlotPlan.make(live: [:], desired: topology(x: 1, y: 1), capacity: 16).result
        let plan = try SlotPlan.make(live: live, desired: topology(x: 2, y: 2), capacity: 16)
        #expect(plan.commitCube == "k" && plan.commitSlot == live["k"]?.slot)
        #expect(plan.load.keys.sorted() == ["k", "x", "y"])
        #expect(plan.load["x"]?.next == [live["out"]?.slot])
        // Only one branch changes: that branch's cube alone, in place.
        let one = try SlotPlan.make(live: live, desired: topology(x: 2, y: 1), capacity: 16)
        #expect(one.commitCube == "x" && one.load.keys.sorted() == ["x"])
    }

    @Test("a new entry takes slot 0 and the old entry moves to a fresh slot")
    func newEntry() throws {
        let live = try SlotPlan.make(live: [:], desired: line(["a", "b"]), capacity: 16).result
        let plan = try SlotPlan.make(live: live, desired: line(["x", "a", "b"]), capacity: 16)
        #expect(plan.commitCube == "x" && plan.commitSlot == 0)
        #expect(plan.load.keys.sorted() == ["a", "x"])
        let a = try #require(plan.load["a"])
        #expect(a.slot != 0 && plan.load["x"]?.next == [a.slot])
        #expect(plan.slotsToClear.isEmpty)  // slot 0 is overwritten by the commit
    }

    @Test("an emptied chain clears slot 0 and retires everything")
    func emptied() throws {
        let live = try SlotPlan.make(live: [:], desired: line(["a", "b"]), capacity: 16).result
        let plan = try SlotPlan.make(live: live, desired: Topology(entry: nil, nodes: [:]), capacity: 16)
        #expect(plan.load.isEmpty && plan.retire.keys.sorted() == ["a", "b"])
        #expect(plan.slotsToClear == [0, 1])
    }

    @Test("a change that needs more free slots than the chain has is refused")
    func capacity() throws {
        let live = try SlotPlan.make(live: [:], desired: line(["a", "b", "c"]), capacity: 4).result
        #expect(throws: SlotPlanError.self) {
            try SlotPlan.make(live: live, desired: line(["a", "c", "b"]), capacity: 4)
        }
    }

    @Test("a next cube that is not in the chain is refused")
    func danglingNext() {
        let topology = Topology(entry: "a", nodes: ["a": .init(blueprint: blueprint(1), next: ["ghost"])])
        let error = #expect(throws: SlotPlanError.self) { try SlotPlan.make(live: [:], desired: topology, capacity: 8) }
        #expect(error?.message == "cube a continues to ghost, which is not in the chain")
    }
}

@Suite("desired chain digest")
struct DigestTests {
    let hook = ChainHook(interface: "eth0", kind: .xdp(.native))

    @Test("the digest changes with settings, blueprints and wiring, and with nothing else")
    func digest() {
        let settings = ChainSettings(name: "c", hook: hook)
        let base = line(["a", "b"]).digest(settings: settings)
        #expect(line(["a", "b"]).digest(settings: settings) == base)
        #expect(line(["b", "a"]).digest(settings: settings) != base)
        #expect(line(["a", "b"], versions: ["b": 2]).digest(settings: settings) != base)
        var dropping = settings
        dropping.defaultVerdict = .drop
        #expect(line(["a", "b"]).digest(settings: dropping) != base)
        // A cube no path reaches is not part of the datapath.
        var extra = line(["a", "b"])
        extra.nodes["orphan"] = .init(blueprint: blueprint(9), next: [nil])
        #expect(extra.digest(settings: settings) == base)
    }
}
