import Synchronization
import Testing
@testable import TailorCubes
import TailorDatapath
import TailorLab
import TailorSpec

/// Tables built when needed (`LazyTables`), and what the firewall builds them from.
@Suite("firewall tables: built when needed, determined by their inputs")
struct FirewallTablesTests {
    @Test("a lazy blueprint's digest, equality and table names build nothing; its tables are built once for every copy")
    func builtOnce() {
        let builds = Mutex(0)
        let lazy = LazyTables(inputs: [1, 2, 3], names: ["t"]) {
            builds.withLock { $0 += 1 }
            return ["t": [TableEntry(key: [0, 0, 0, 0], value: [7])]]
        }
        let blueprint = CubeBlueprint(type: "object", object: [1], rodata: [:], tables: lazy)
        let copy = blueprint
        _ = blueprint.digest
        _ = blueprint.digest(excluding: ["t"])
        #expect(blueprint == copy && blueprint.tableNames == ["t"])
        #expect(builds.withLock { $0 } == 0)
        #expect(blueprint.tables["t"]?.first?.value == [7] && copy.tables.count == 1)
        #expect(builds.withLock { $0 } == 1)
        // The inputs stand for the tables in the digest: excluded with all of them, else hashed.
        let other = CubeBlueprint(type: "object", object: [1], rodata: [:],
                                  tables: LazyTables(inputs: [1, 2, 4], names: ["t"]) { [:] })
        #expect(other.digest != blueprint.digest && other.digest(excluding: ["t"]) == blueprint.digest(excluding: ["t"]))
    }

    @Test("equal firewall digests mean equal tables: rules that differ in any field the tables use get other digests")
    func inputsDetermineTables() throws {
        var rng = SeededGenerator(seed: 17)
        let base = FirewallRuleSet.random(count: 40, using: &rng).rules
        var variants: [(String, [Firewall.Rule])] = [("base", base)]
        func variant(_ name: String, _ change: (inout Firewall.Rule) -> Void) {
            var rules = base
            change(&rules[7])
            variants.append((name, rules))
        }
        // Spellings one encoding of a filter rule cannot tell apart, but the tables can.
        variant("no dport") { $0.match.destinationPorts = nil }
        variant("every dport") { $0.match.destinationPorts = 0...65535 }
        variant("no sport") { $0.match.sourcePorts = nil }
        variant("every sport") { $0.match.sourcePorts = 0...65535 }
        variant("no flags") { $0.match.tcpFlags = nil }
        variant("flags matching all") { $0.match.tcpFlags = (mask: 0, value: 0) }
        variant("no states") { $0.states = nil }
        variant("every state") { $0.states = Set(Firewall.ConnectionState.allCases) }
        variant("no state") { $0.states = [] }
        variant("other action") { $0.action = $0.action == .drop ? .accept : .drop }
        variant("other proto") { $0.match.proto = $0.match.proto == 6 ? 17 : 6 }
        var blueprints = try variants.map { name, rules in (name, try Firewall.blueprint(rules: rules, policy: .drop)) }
        blueprints.append(("accept policy", try Firewall.blueprint(rules: base, policy: .accept)))
        blueprints.append(("all stages", try Firewall.blueprint(rules: base, policy: .drop, specialised: false)))
        for (index, (name, blueprint)) in blueprints.enumerated() {
            for (otherName, other) in blueprints[(index + 1)...] where blueprint.tables != other.tables {
                #expect(blueprint.digest != other.digest, "\(name) and \(otherName) build other tables with one digest")
            }
        }
        // The same rules, built again: the same digest, the same tables.
        let again = try Firewall.blueprint(rules: base, policy: .drop)
        #expect(again.digest == blueprints[0].1.digest && again.tables == blueprints[0].1.tables)
    }

    @Test("a vector's id, kept as bits are set and cleared, is the id of the same bits set at once")
    func incrementalID() {
        var rng = SeededGenerator(seed: 5)
        for _ in 0..<50 {
            var edited = RuleVector(words: 4)
            var bits = Set<Int>()
            for _ in 0..<60 {
                let rule = Int.random(in: 0..<256, using: &rng)
                if Bool.random(using: &rng) { edited.insert(rule); bits.insert(rule) } else { edited.remove(rule); bits.remove(rule) }
            }
            var fresh = RuleVector(words: 4)
            for rule in bits.sorted() { fresh.insert(rule) }
            #expect(edited == fresh && edited.id == fresh.id)
            #expect(bits.isEmpty == (edited.id == 0))
        }
    }
}
