import Testing
import TailorDatapath
import TailorKernel
import TailorLab
@testable import TailorReconcile
import TailorTestKit

/// The plan shows how each state map of a replaced cube is carried over, and
/// refuses what cannot be, before anything changes.
@Suite("state migration in plans", .kernel)
struct MigrationPlanTests {
    static func desired(_ lab: Lab, _ version: String, reset: Set<String> = []) throws -> [DesiredChain] {
        let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
        var blueprint = CubeBlueprint(type: "object", object: try Fixtures.testObject(version))
        blueprint.resetState = reset
        return [DesiredChain(settings: ChainSettings(name: "mig", hook: hook), topology: .line([("m", blueprint)]))]
    }

    @Test("verify lists kept, migrated and reset maps, refuses a narrowed field, and apply carries entries over")
    func plan() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let executor = Executor(pinRoot: root)
                let v1 = try Self.desired(lab, "migrate_v1")
                _ = try executor.apply(Planner.plan(desired: v1, observed: []), desired: v1)
                for port: UInt16 in 7200..<7204 { _ = try Traffic.udp(in: lab, count: 2, port: port) }

                let v2 = try Self.desired(lab, "migrate_v2", reset: ["last"])
                let plan = try executor.verify(Planner.plan(desired: v2, observed: Observer.observe(pinRoot: root)),
                                               desired: v2)
                #expect(plan.refusals.isEmpty)
                let state = try #require(plan.chains.first?.cubes.first?.state)
                #expect(state.map(\.map) == ["flows", "last", "tailor_counters"])
                #expect(state.map(\.action) == [.migrated, .reset, .kept])
                #expect(state[0].detail == "+version -tos ~packets unsigned int->unsigned long long "
                    + "~bytes unsigned int->unsigned long long max_entries 64->128")
                let text = PlanText.render(plan, color: false)
                #expect(text.contains("state \"flows\": migrated 4 entries (+version -tos"), "\(text)")
                #expect(text.contains("state \"last\": reset (migration: reset)"), "\(text)")
                #expect(!text.contains("state \"tailor_counters\""), "kept maps show one by one only with -v")
                #expect(text.contains("state kept: tailor_counters"), "\(text)")

                let narrow = try Self.desired(lab, "migrate_narrow")
                let refused = try executor.verify(
                    Planner.plan(desired: narrow, observed: Observer.observe(pinRoot: root)), desired: narrow)
                #expect(refused.refusals.count == 1)
                #expect(refused.refusals.first?.hasPrefix("chain mig: cube m: state map flows cannot be carried over: "
                    + "value field 'packets' narrows") == true)
                #expect(PlanText.render(refused, color: false).contains("Refused: chain mig: cube m"))

                _ = try executor.apply(plan, desired: v2)
                let flows = try BPFMap(pinnedAt: root.appending("mig", "cubes", "m", "maps", "flows"))
                #expect(try flows.lookupBatch().count == 4)
                #expect(try BPFMap(pinnedAt: root.appending("mig", "cubes", "m", "maps", "last")).lookupBatch().isEmpty)
                #expect(Planner.plan(desired: v2, observed: Observer.observe(pinRoot: root)).isEmpty)
                try Chain.open("mig", pinRoot: root).destroy()
            }
        }
    }
}
