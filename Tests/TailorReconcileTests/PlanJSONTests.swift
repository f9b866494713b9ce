import Foundation
import Testing
import TailorDatapath
import TailorLab
@testable import TailorReconcile

/// docs/plan-json.md carries the plan's JSON Schema and an example; python's
/// jsonschema checks the schema, the example, and plans the planner makes.
@Suite("plan JSON schema")
struct PlanJSONTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let document = root.appendingPathComponent("docs/plan-json.md")
    /// The JSON plans of the CLI goldens: what `tailor plan --output json` printed.
    static let goldens = ["plan-create-json", "plan-values-json"].map {
        root.appendingPathComponent("Tests/TailorCLITests/Goldens/\($0).stdout").path
    }

    /// The JSON block after the HTML comment `<!-- marker -->` in docs/plan-json.md.
    static func block(_ marker: String) throws -> String {
        let text = try String(contentsOf: document, encoding: .utf8)
        let after = try #require(text.range(of: "<!-- \(marker) -->\n```json\n"), "no \(marker) block in \(document.path)")
        let end = try #require(text.range(of: "\n```", range: after.upperBound..<text.endIndex))
        return String(text[after.upperBound..<end.lowerBound])
    }

    /// A plan with every kind of value: changes forcing a replacement and not, adds,
    /// removals, a created cube, unavailable values, drift in words.
    static func plan() throws -> Plan {
        var rules = (0..<20).map { rule(100 + $0) }
        let old = rules
        rules[3] = rule(8080, "drop")
        rules.remove(at: 9)
        let from = [("fw", configured("firewall", firewallConfig(old), rodata: 1)),
                    ("rl", configured("ratelimit", limits(10, ["a"]), object: 2)),
                    ("t", configured("tag", .attributes(["id": .int(1)]), object: 3, rodata: 1))]
        let to = [("fw", configured("firewall", firewallConfig(rules, policy: "accept"), rodata: 2)),
                  ("rl", configured("ratelimit", limits(10, ["b"]), object: 2, entries: [TableEntry(key: [1], value: [1])])),
                  ("t", configured("tag", .attributes(["id": .int(2)]), object: 3, rodata: 2)),
                  ("new", configured("tag", .attributes(["id": .int(9), "record": .bool(true)]), object: 4))]
        var live = try observedRecording(desired(from))
        live.configs["t"] = .unavailable("its recorded config at /x does not match its digest (changed outside tailor)")
        live.tables["fw"] = ["e": [TableEntry(key: [7], value: [7])]]
        var plan = Planner.plan(desired: [desired(to), desired("fresh", [("c", configured("counter", .fields([])))])],
                                observed: [live])
        plan.chains[0].cubes[0].state = [StateMapChange(map: "conntrack", carry: .reuse)]
        return plan
    }

    @Test("the schema is valid, and the documented example, a planned plan and the CLI goldens' plans conform to it")
    func conforms() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-plan-json-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let plan = try Self.plan()
        #expect(plan.chains.flatMap(\.cubes).contains { !$0.changes.isEmpty && $0.valuesUnavailable == nil })
        #expect(plan.chains.flatMap(\.cubes).contains { $0.valuesUnavailable != nil })
        let files = ["schema": try Self.block("plan-schema"), "example": try Self.block("plan-example"),
                     "planned": String(decoding: try encoder.encode(plan), as: UTF8.self)]
        for (name, text) in files { try text.write(to: directory.appendingPathComponent(name + ".json"), atomically: true, encoding: .utf8) }
        let script = """
            import json, sys, jsonschema
            schema = json.load(open(sys.argv[1]))
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema)
            failures = [f"{path}: {error.message} at {list(error.absolute_path)}"
                        for path in sys.argv[2:] for error in validator.iter_errors(json.load(open(path)))]
            sys.exit("\\n".join(failures) if failures else 0)
            """
        do {
            _ = try run("python3", ["-c", script] + ["schema", "example", "planned"].map {
                directory.appendingPathComponent($0 + ".json").path
            } + Self.goldens)
        } catch let failure as CommandFailed {
            Issue.record("python3 with jsonschema is required; it says: \(failure.stderr)")
        }
    }

    @Test("a plan read back from its JSON is the plan (values lose only their kinds)")
    func roundTrip() throws {
        let plan = try Self.plan()
        let decoded = try JSONDecoder().decode(Plan.self, from: JSONEncoder().encode(plan))
        #expect(decoded.chains.map(\.name) == plan.chains.map(\.name))
        #expect(decoded.chains[0].cubes.map(\.changes.count) == plan.chains[0].cubes.map(\.changes.count))
        #expect(decoded.chains[0].cubes.map(\.unchanged) == plan.chains[0].cubes.map(\.unchanged))
    }
}
