import Testing
@testable import TailorDatapath
import TailorKernel
@testable import TailorReconcile

/// What the planner makes of chains whose own pins are damaged: the record, the
/// directory or the root gone, config pins no record names. Pure: observed
/// chains are written as values.
@Suite("planner: damaged chains")
struct PlannerDriftTests {
    static let chain = desired([("a", blueprint(1))])

    /// A chain with no directory or record, known only by the identity in its running root.
    static func orphan(_ drift: Drift) throws -> ObservedChain {
        var orphan = ObservedChain(name: chain.settings.name, record: nil, slots: [:], drift: [drift])
        orphan.identity = ChainIdentity(settings: chain.settings, pinRoot: try PinRoot("/sys/fs/bpf/tailor"))
        return orphan
    }

    @Test("a chain of the specs whose directory or record is gone while its root runs is rebuilt and swapped in; its state starts empty",
          arguments: [Drift.orphaned(ProgramID(rawValue: 7)), .recordLost])
    func rebuilt(drift: Drift) throws {
        let plan = Planner.plan(desired: [Self.chain], observed: [try Self.orphan(drift)])
        #expect(plan.chains.map(\.action) == [.replace] && plan.chains[0].repairsDrift)
        #expect(plan.chains[0].reasons == ["its pins are gone while its root still runs: the chain is rebuilt from the "
            + "spec and swapped in atomically; its state starts empty"])
        #expect(plan.chains[0].cubes.map(\.action) == [.add])
        #expect(plan.summary == Plan.Summary(add: 1, repair: 1))
    }

    @Test("a chain of the specs whose root is gone is built again")
    func rootGone() throws {
        let plan = Planner.plan(desired: [Self.chain], observed: [try observed(Self.chain, drift: [.rootGone])])
        #expect(plan.chains.map(\.action) == [.create] && plan.chains[0].drift.map(\.kind) == [.rootGone])
    }

    @Test("a chain no spec names, known only by its running root's identity, is destroyed; kept with --no-prune")
    func orphanNotInSpecs() throws {
        let orphan = try Self.orphan(.orphaned(ProgramID(rawValue: 7)))
        let pruned = Planner.plan(desired: [], observed: [orphan], prune: .pruneAllowingEmpty)
        #expect(pruned.chains.map(\.action) == [.destroy] && pruned.chains[0].reasons == ["no longer in the specs"])
        #expect(pruned.chains[0].drift.map(\.kind) == [.directoryMissing] && pruned.chains[0].hook == ChainHook(interface: "eth0", kind: .xdp(.native)))
        let kept = Planner.plan(desired: [], observed: [orphan], prune: .keep)
        #expect(kept.chains.map(\.action) == [.skip] && kept.isEmpty)
    }

    @Test("config pins no record names are repaired, named by digest in the plan's drift")
    func configsUnreferenced() throws {
        let drift = Drift.configsUnreferenced(["ab12"])
        let plan = Planner.plan(desired: [Self.chain], observed: [try observed(Self.chain, drift: [drift])])
        #expect(plan.chains.map(\.action) == [.repair] && plan.chains[0].drift.map(\.kind) == [.interruptedApply])
        #expect(plan.chains[0].drift.map(\.what) == ["config pins no record names, left by an interrupted apply: ab12"])
        #expect(drift.isRecovered && !Drift.rootDetached.isRecovered)
    }
}
