import Synchronization
import Testing
@testable import TailorCubes
import TailorDatapath
import TailorReference
import TailorSpec

/// Tables built when needed (`LazyTables`), and what the firewall builds them from.
@Suite("firewall tables: built when needed, determined by their inputs")
struct FirewallTablesTests {
    @Test("a lazy blueprint's digests, equality and table names build nothing; each table is built once, when asked for, for every copy")
    func builtOnce() {
        let builds = Mutex<[String]>([])
        let lazy = LazyTables(inputs: ["t": [1, 2, 3], "u": [4]]) { names in
            builds.withLock { $0 += names.sorted() }
            return Dictionary(uniqueKeysWithValues: names.map { ($0, [TableEntry(key: [0, 0, 0, 0], value: [7])]) })
        }
        let blueprint = CubeBlueprint(type: "object", object: [1], rodata: [:], tables: lazy)
        let copy = blueprint
        _ = (blueprint.digest, blueprint.digest(excluding: ["t"]), blueprint.tableDigests)
        #expect(blueprint == copy && blueprint.tableNames == ["t", "u"])
        #expect(builds.withLock { $0 }.isEmpty)
        #expect(blueprint.tables(["t"]).keys.sorted() == ["t"] && copy.tables(["t"])["t"]?.first?.value == [7])
        #expect(builds.withLock { $0 } == ["t"])
        #expect(copy.tables.count == 2)
        #expect(builds.withLock { $0 } == ["t", "u"])
        // Each table's inputs stand for it in the digests: excluded with it, else hashed.
        let other = CubeBlueprint(type: "object", object: [1], rodata: [:],
                                  tables: LazyTables(inputs: ["t": [1, 2, 9], "u": [4]]) { _ in [:] })
        #expect(other.digest != blueprint.digest && other.digest(excluding: ["t"]) == blueprint.digest(excluding: ["t"]))
        #expect(other.tableDigests["t"] != blueprint.tableDigests["t"] && other.tableDigests["u"] == blueprint.tableDigests["u"])
    }

    @Test("per table, equal digests mean equal entries: rules that differ in any field a table uses give it another digest")
    func inputsDetermineTables() throws {
        var rng = SeededGenerator(seed: 17)
        let base = FirewallRuleSet.random(count: 40, using: &rng).rules
        var variants: [(String, [Firewall.Rule])] = [("base", base)]
        func variant(_ name: String, _ change: (inout [Firewall.Rule]) -> Void) {
            var rules = base
            change(&rules)
            variants.append((name, rules))
        }
        // Spellings one encoding of a filter rule cannot tell apart, but the tables can.
        variant("no dport") { $0[7].match.destinationPorts = nil }
        variant("every dport") { $0[7].match.destinationPorts = 0...65535 }
        variant("no sport") { $0[7].match.sourcePorts = nil }
        variant("every sport") { $0[7].match.sourcePorts = 0...65535 }
        variant("no flags") { $0[7].match.tcpFlags = nil }
        variant("flags matching all") { $0[7].match.tcpFlags = (mask: 0, value: 0) }
        variant("no states") { $0[7].states = nil }
        variant("every state") { $0[7].states = Set(Firewall.ConnectionState.allCases) }
        variant("no state") { $0[7].states = [] }
        variant("other action") { $0[7].action = $0[7].action == .drop ? .accept : .drop }
        variant("other proto") { $0[7].match.proto = $0[7].match.proto == 6 ? 17 : 6 }
        variant("no source") { $0[7].match.source = nil }
        variant("no destination") { $0[7].match.destination = nil }
        variant("IPv4 only") { $0[7].match = Filter.Rule(ipv6: false, proto: $0[7].match.proto, action: .pass) }
        variant("IPv6 only") { $0[7].match = Filter.Rule(ipv6: true, proto: $0[7].match.proto, action: .pass) }
        variant("one rule more") { $0.append($0[0]) }
        variant("moved") { $0.swapAt(3, 9) }
        var blueprints = try variants.map { name, rules in (name, try Firewall.blueprint(rules: rules, policy: .drop)) }
        blueprints.append(("accept policy", try Firewall.blueprint(rules: base, policy: .accept)))
        blueprints.append(("all stages", try Firewall.blueprint(rules: base, policy: .drop, specialised: false)))
        for (index, (name, blueprint)) in blueprints.enumerated() {
            for (otherName, other) in blueprints[(index + 1)...] {
                for table in blueprint.tableNames.union(other.tableNames) {
                    let (a, b) = (blueprint.tables([table])[table], other.tables([table])[table])
                    #expect(a == b || blueprint.tableDigests[table] != other.tableDigests[table],
                            "\(name) and \(otherName): table \(table) differs under one digest")
                }
            }
        }
        // The same rules, built again: the same digests, the same tables.
        let again = try Firewall.blueprint(rules: base, policy: .drop)
        #expect(again.digest == blueprints[0].1.digest && again.tableDigests == blueprints[0].1.tableDigests)
        #expect(again.tables == blueprints[0].1.tables)
        // A port edit changes the port tables' digests only; a policy flip the policy's.
        let port = try #require(blueprints.first { $0.0 == "no dport" }?.1)
        let changed = { (other: CubeBlueprint) in
            Set(other.tableNames.filter { other.tableDigests[$0] != blueprints[0].1.tableDigests[$0] })
        }
        #expect(changed(port) == ["dport_index", "port_vectors"])
        #expect(changed(try #require(blueprints.first { $0.0 == "accept policy" }?.1)) == ["policy"])
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
