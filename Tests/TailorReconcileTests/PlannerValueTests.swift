import Foundation
import Testing
import TailorDatapath
@testable import TailorReconcile

/// A blueprint of cube type `type` with `config`: object `object`, rodata `rodata`,
/// and `entries` in its entry-safe table `e`.
func configured(_ type: String, _ config: ConfigDocument, object: UInt8 = 1, rodata: UInt8 = 0,
                entries: [TableEntry] = []) -> CubeBlueprint {
    var blueprint = CubeBlueprint(type: type, object: [object], rodata: rodata == 0 ? [:] : ["x": [rodata]],
                                  tables: ["e": entries])
    blueprint.config = config
    return blueprint
}

/// A ratelimit-like config: `rate`, and `drop` as a set of prefixes.
func limits(_ rate: Int, _ drop: [String]) -> ConfigDocument {
    .attributes(["rate": .int(rate), "drop": .set(drop.map(ConfigDocument.string))])
}

/// The chain as tailor would have committed `chain`, each cube's config recorded.
func observedRecording(_ chain: DesiredChain) throws -> ObservedChain {
    var live = try observed(chain)
    for (name, node) in chain.topology.nodes {
        guard let json = node.blueprint.config?.canonicalJSON else { continue }
        live.record?.cubes[name]?.configDigest = ConfigDocument.digest(of: json)
        live.configs[name] = .json(json)
    }
    return live
}

@Suite("planner: config values")
struct PlannerValueTests {
    static let entry = TableEntry(key: [10], value: [1])

    static func plan(_ from: [(String, CubeBlueprint)], _ to: [(String, CubeBlueprint)],
                     edit: (inout ObservedChain) -> Void = { _ in }) throws -> Plan {
        var live = try observedRecording(desired(from))
        edit(&live)
        return Planner.plan(desired: [desired(to)], observed: [live])
    }

    @Test("a replaced cube shows its changed attributes; those its type cannot change in place force the replacement")
    func replaced() throws {
        let plan = try Self.plan([("rl", configured("ratelimit", limits(10, ["a"]), rodata: 1))],
                                 [("rl", configured("ratelimit", limits(20, ["a", "b"]), rodata: 2, entries: [Self.entry]))])
        let cube = try #require(plan.chains.first?.cubes.first)
        #expect(cube.action == .replace && cube.reasons == ["config changed (rodata or tables)"])
        #expect(cube.changes == [
            AttributeChange(path: "rate", action: .change, before: .int(10), after: .int(20), forcesReplacement: true),
            AttributeChange(path: #"drop["b"]"#, action: .add, after: .string("b")),
        ])
        #expect(cube.unchanged == ["drop": 1] && cube.valuesUnavailable == nil)
    }

    @Test("entries changed in place show as attributes, none forcing anything")
    func inPlace() throws {
        let plan = try Self.plan([("rl", configured("ratelimit", limits(10, ["a"])))],
                                 [("rl", configured("ratelimit", limits(10, []), entries: [Self.entry]))])
        let cube = try #require(plan.chains.first?.cubes.first)
        #expect(cube.action == .update)
        #expect(cube.changes == [AttributeChange(path: #"drop["a"]"#, action: .remove, before: .string("a"))])
    }

    @Test("a created cube, in a new chain or an old one, lists its config")
    func created() throws {
        let config = limits(10, ["a"])
        let new = Planner.plan(desired: [desired([("rl", configured("ratelimit", config))])], observed: [])
        #expect(new.chains[0].cubes[0].changes.map(\.path) == ["rate", "drop"])
        let added = try Self.plan([("a", configured("tag", .attributes(["id": .int(1)])))],
                                  [("a", configured("tag", .attributes(["id": .int(1)]))),
                                   ("rl", configured("ratelimit", config, object: 2))])
        #expect(added.chains[0].cubes[1].action == .add)
        #expect(added.chains[0].cubes[1].changes == ConfigDiff.created(config))
    }

    @Test("without a trustworthy recorded config the cube-level change stands, and the plan says why", arguments: [
        ("missing", "it was committed by a tailor that did not record configs"),
        ("tampered", "its recorded config at /x does not match its digest (changed outside tailor)"),
        ("garbled", "its recorded config cannot be read: invalid config JSON at byte 1: expected a string"),
    ])
    func unavailable(_ kind: String, _ why: String) throws {
        let plan = try Self.plan([("t", configured("tag", .attributes(["id": .int(1)]), rodata: 1))],
                                 [("t", configured("tag", .attributes(["id": .int(2)]), rodata: 2))]) { live in
            switch kind {
            case "missing": live.configs = [:]
            case "tampered": live.configs["t"] = .unavailable(why)
            default: live.configs["t"] = .json(Array("{1}".utf8))
            }
        }
        let cube = try #require(plan.chains.first?.cubes.first)
        #expect(cube.action == .replace && cube.changes.isEmpty && cube.valuesUnavailable == why)
    }

    @Test("a chain replacement compares its cubes' configs without marking them: the chain forces it")
    func chainReplaced() throws {
        let from = [("t", configured("tag", .attributes(["id": .int(1)]), rodata: 1))]
        var live = try observedRecording(desired(from))
        live.record?.settings.defaultVerdict = .drop
        let plan = Planner.plan(desired: [desired([("t", configured("tag", .attributes(["id": .int(2)]), rodata: 2))])],
                                observed: [live])
        #expect(plan.chains[0].action == .replace)
        #expect(plan.chains[0].cubes[0].changes == [AttributeChange(path: "id", action: .change, before: .int(1),
                                                                    after: .int(2))])
    }

    @Test("drift names a table entry in the cube type's words")
    func driftWords() throws {
        let bp = configured("ratelimit", limits(10, []))
        let chain = desired([("rl", bp)])
        var live = try observedRecording(chain)
        live.tables = ["rl": ["drop_v4": [TableEntry(key: [8, 0, 0, 0, 10, 0, 0, 0], value: [1])]]]
        let plan = Planner.plan(desired: [chain], observed: [live])
        #expect(plan.chains[0].drift.map(\.what) == ["entry 10.0.0.0/8 in table drop_v4 of cube rl added out of band"])
        #expect(plan.chains[0].drift.map(\.kind) == [.tableChanged] && plan.chains[0].action == .repair)
    }

    @Test("the text plan shows attributes under their cube: changes, counts, collapsed and capped lists")
    func text() throws {
        let rules = (0..<300).map { rule(1000 + $0) }
        var edited = rules
        edited[5] = rule(5)
        edited.insert(rule(443), at: 100)
        let plan = try Self.plan(
            [("fw", configured("firewall", firewallConfig(rules), rodata: 1))],
            [("fw", configured("firewall", firewallConfig(edited, policy: "accept"), rodata: 2)),
             ("rl", configured("ratelimit", limits(10, (0..<20).map { "10.0.\($0).0/24" }), object: 2))])
        #expect(PlanText.render(plan, color: false) == """
            Symbols: + create  ~ update in place  -/+ replace  - destroy

              # chain "c" will be updated in place (xdp (native) on eth0)
              ~ chain "c" {
                  -/+ cube "fw" (firewall)   # config changed (rodata or tables) (forces replacement)
                      ~ policy: drop -> accept   # forces replacement
                      ~ rules[5].match.dport: 1005 -> 5   # forces replacement
                      + rules[100]: {match: {proto: tcp, dport: 443}, action: accept}   # forces replacement
                        (299 rules unchanged)
                  + cube "rl" (ratelimit)
                      + rate: 10
                      + drop: 20 drop entries (-v lists them)
                }

            Plan: 1 to add, 0 to change, 1 to replace, 0 to destroy.
            """)
        let verbose = PlanText.render(plan, color: false, verbose: true)
        #expect(verbose.contains(#"+ drop["10.0.19.0/24"]"#), "\(verbose)")

        let many = (0..<300).map { rule(2000 + $0) }
        let capped = try Self.plan([("fw", configured("firewall", firewallConfig(rules), rodata: 1))],
                                   [("fw", configured("firewall", firewallConfig(many), rodata: 2))])
        let text = PlanText.render(capped, color: false)
        #expect(text.contains("... 200 more changes (-v shows all)") && !text.contains("rules[100]"), "\(text)")
        #expect(PlanText.render(capped, color: false, verbose: true).contains("rules[299].match.dport: 1299 -> 2299"))
    }

    @Test("plans saved before values existed still read, with no values")
    func oldPlans() throws {
        let json = #"{"name": "a", "type": "tag", "action": "replace", "reasons": ["object changed"], "tables": [], "state": []}"#
        let cube = try JSONDecoder().decode(CubeChange.self, from: Data(json.utf8))
        #expect(cube.changes.isEmpty && cube.unchanged.isEmpty && cube.valuesUnavailable == nil)
    }
}
