import Testing
@testable import TailorCubes
import TailorDatapath
import TailorReference
import TailorSpec

/// What each cube type records as its config (normalised, for the plan's values) and
/// how it words its tables' entries (for drift).
@Suite("config documents and table entry words")
struct ConfigWordsTests {
    /// The blueprints of the cubes of a one-chain spec whose cubes are `cubes` (YAML).
    static func blueprints(_ cubes: String) throws -> [String: CubeBlueprint] {
        let text = """
            apiVersion: tailor/v1
            kind: Chain
            metadata: {name: c}
            spec:
              attach: {interface: eth0, hook: xdp}
              cubes:
            \(cubes)
            """
        var diagnostics = Diagnostics()
        let specs = SpecLoader(cubeTypes: CubeType.schemas).decode(Array(text.utf8), file: "c.yaml",
                                                                    diagnostics: &diagnostics)
        let (_, topology) = try #require(specs.first?.datapath(diagnostics: &diagnostics))
        #expect(!diagnostics.hasErrors, "\(diagnostics.sorted)")
        return topology.nodes.mapValues(\.blueprint)
    }

    /// The recorded form of the one cube's config (canonical JSON read back), as flow text.
    static func config(_ cube: String) throws -> String {
        let document = try #require(try blueprints(cube).values.first?.config)
        return try ConfigDocument(json: document.canonicalJSON).flow
    }

    @Test("each built-in type records its config with defaults filled in and values spelled one way", arguments: [
        ("- {name: x, type: counter}", "{}"),
        ("- {name: x, type: tag, config: {id: 7}}", "{id: 7, record: false}"),
        ("- {name: x, type: filter, config: {rules: [{match: {proto: 6, dport: 80-80, src: 10.0.0.1/8}, action: drop}]}}",
         "{rules: [{match: {src: 10.0.0.0/8, proto: tcp, dport: 80}, action: drop}], defaultAction: pass}"),
        ("- {name: x, type: filter, config: {rules: [{match: {proto: tcp, tcpFlags: {mask: [syn, ack], set: [syn]}}, "
            + "action: pass}], defaultAction: drop}}",
         "{rules: [{match: {proto: tcp, tcpFlags: {mask: [ack, syn], set: [syn]}}, action: pass}], defaultAction: drop}"),
        ("- {name: x, type: firewall, config: {policy: drop, rules: [{match: {state: [new, invalid], proto: 47}, "
            + "action: accept}, {action: drop}]}}",
         "{policy: drop, acceptEstablished: true, rules: [{match: {proto: 47, state: [invalid, new]}, action: accept}, "
            + "{match: {}, action: drop}]}"),
        ("- {name: x, type: ratelimit, config: {rate: 10, burst: 5, drop: [fd00::/8, 10.0.0.0/8, 10.0.0.0/8]}}",
         "{rate: 10, burst: 5, per: {ipv4: 32, ipv6: 64}, drop: [10.0.0.0/8, fd00::/8]}"),
        ("""
        - name: x
          type: classifier
          config: {outputs: [a, b], rules: [{match: {proto: udp, dport: 53}, output: b}]}
          outputs: {a: end, b: end}
        """, "{outputs: [a, b], rules: [{match: {proto: udp, dport: 53}, output: b}], default: a}"),
    ])
    func documents(_ cube: String, _ expected: String) throws {
        let indented = cube.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
        #expect(try Self.config(indented) == expected)
    }

    @Test("a firewall rule vector is `struct fw_vector`: summary words, then the words, little-endian, zero-padded")
    func vectorLayout() {
        var vector = RuleVector(words: 3)
        for rule in [0, 63, 64, 130, 191] { vector.insert(rule) }
        var expected = [UInt8](repeating: 0, count: (3 + 160) * 8)
        expected[0] = 0b111  // words 0, 1 and 2 hold rules
        for (word, bits) in [(0, [0, 63]), (1, [0]), (2, [2, 63])] {
            for bit in bits { expected[(3 + word) * 8 + bit / 8] |= 1 << UInt8(bit % 8) }
        }
        #expect(vector.encoded == expected)
        #expect(RuleVector.rules(encoded: vector.encoded) == [0, 63, 64, 130, 191])
    }

    @Test("a rule decoded from its table entry is the rule encoded")
    func ruleRoundTrip() {
        var rng = SeededGenerator(seed: 7)
        for rule in FirewallRuleSet.random(count: 300, using: &rng).rules {
            var match = rule.match
            match.action = rule.action == .drop ? .drop : .pass
            let decoded = Filter.Rule(encoded: match.encoded)
            #expect(decoded == match, "\(Match.document(match).flow)")
        }
        #expect(Filter.Rule(encoded: [9] + [UInt8](repeating: 0, count: 47)) == nil)
    }

    @Test("nat records its rules with defaults filled in; a dnat entry reads as the port it forwards, changed in place")
    func natWords() throws {
        let config = try NAT.Config.read(.object([
            "snat": .list([.object(["source": .prefix(IPPrefix("10.98.1.0/24")!), "to": .address([10, 98, 2, 1])])]),
            "dnat": .list([.object(["destination": .address([10, 98, 2, 1]), "proto": .string("tcp"),
                                    "port": .integer(8080), "to": .address([10, 98, 1, 2])])]),
        ]))
        let blueprint = try NAT.blueprint(config: config)
        #expect(try ConfigDocument(json: try #require(blueprint.config).canonicalJSON).flow
                == "{snat: [{source: 10.98.1.0/24, to: 10.98.2.1, ports: 1024-65535}], "
                + "dnat: [{destination: 10.98.2.1, proto: tcp, port: 8080, to: 10.98.1.2, toPort: 8080}]}")
        let entry = try #require(blueprint.tables["dnat_rules"]?.first)
        #expect(NAT.words.entry("dnat_rules", TableEntryChange(key: entry.key, before: nil, after: entry.value), nil)
                == EntryWords(key: "10.98.2.1 tcp 8080", after: "10.98.1.2:8080"))
        #expect(NAT.words.inPlace(["dnat"], []) && !NAT.words.inPlace(["snat"], []))
    }

    @Test("ratelimit, filter and classifier entries read as prefixes and rules; firewall vectors as the rules they change")
    func entryWords() throws {
        let prefix: [UInt8] = [24, 0, 0, 0, 198, 51, 100, 0]
        #expect(RateLimit.words.entry("drop_v4", TableEntryChange(key: prefix, before: nil, after: [1]), nil)
                == EntryWords(key: "198.51.100.0/24"))
        #expect(RateLimit.words.inPlace(["drop"], []) && !RateLimit.words.inPlace(["rate"], []))

        let rule = Filter.Rule(proto: 17, destinationPorts: 53...53, action: .drop)
        let filter = Filter.words.entry("rules", TableEntryChange(key: [2, 0, 0, 0], before: nil, after: rule.encoded), nil)
        #expect(filter == EntryWords(key: "rules[2]", after: "{match: {proto: udp, dport: 53}, action: drop}"))

        let outputs = ConfigDocument.attributes(["outputs": .list([.string("web"), .string("dns")])])
        let classified = Classifier.words.entry(
            "rules", TableEntryChange(key: [0, 0, 0, 0], before: rule.encoded(verdict: 0), after: rule.encoded(verdict: 1)),
            outputs)
        #expect(classified?.before == "{match: {proto: udp, dport: 53}, output: web}")
        #expect(classified?.after == "{match: {proto: udp, dport: 53}, output: dns}")

        var before = RuleVector(words: 2), after = RuleVector(words: 2)
        before.insert(3)
        after.insert(3)
        after.insert(70)
        after.insert(9)
        let vector = Firewall.words.entry("src_v4", TableEntryChange(key: [8, 0, 0, 0, 10, 0, 0, 0], before: before.encoded,
                                                                     after: after.encoded), nil)
        #expect(vector == EntryWords(key: "10.0.0.0/8", summary: "2 rules affected (rules[9], rules[70])"))
        let port = Firewall.words.entry("dport_index", TableEntryChange(key: [0x50, 0, 0, 0], before: [1, 0, 0, 0, 0, 0, 0, 0xab],
                                                                        after: [4, 0, 0, 0, 0, 0, 0, 0]), nil)
        #expect(port == EntryWords(key: "port 80", before: "vector ab00000000000001", after: "vector 0000000000000004"))
        #expect(Firewall.words.entry("actions", TableEntryChange(key: [5, 0, 0, 0], before: nil, after: [1]), nil)
                == EntryWords(key: "rules[5] action", after: "drop"))
        #expect(Firewall.words.entry("policy", TableEntryChange(key: [0, 0, 0, 0], before: [1], after: [0]), nil)
                == EntryWords(key: "policy", before: "drop", after: "accept"))
        #expect(CubeType.words(of: "object").entry("blocked", TableEntryChange(key: [1], before: nil, after: [1]), nil)
                == nil)
    }
}
