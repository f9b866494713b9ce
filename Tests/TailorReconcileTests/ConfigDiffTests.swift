import Testing
import TailorDatapath
@testable import TailorReconcile

/// A firewall-like rule: `{match: {proto: tcp, dport: PORT}, action: ACTION}`.
func rule(_ port: Int, _ action: String = "accept") -> ConfigDocument {
    .attributes(["match": .attributes(["proto": .string("tcp"), "dport": .int(port)]), "action": .string(action)])
}

/// A config of `rules` and `policy`, as a firewall's control plane makes it.
func firewallConfig(_ rules: [ConfigDocument], policy: String = "drop") -> ConfigDocument {
    .attributes(["policy": .string(policy), "rules": .list(rules)])
}

/// The recorded form of `document`: its canonical JSON read back (kinds lost).
func recorded(_ document: ConfigDocument) throws -> ConfigDocument {
    try ConfigDocument(json: document.canonicalJSON)
}

/// `path: action before -> after` per change, for compact expectations.
func lines(_ diff: ConfigDiff) -> [String] {
    diff.changes.map { change in
        let values = switch change.action {
        case .add: "+ \(change.after?.flow ?? "")"
        case .remove: "- \(change.before?.flow ?? "")"
        case .change: "\(change.before?.flow ?? "") -> \(change.after?.flow ?? "")"
        }
        return "\(change.path): \(values)" + (change.formerPath.map { " (was \($0))" } ?? "")
            + (change.forcesReplacement ? " !" : "")
    }
}

@Suite("config diffs: recorded config x desired config -> attribute changes")
struct ConfigDiffTests {
    static let thousand = (0..<1000).map { rule(10_000 + $0) }

    static func diff(_ old: ConfigDocument, _ new: ConfigDocument, forces: @escaping ([String]) -> Bool = { _ in false })
        throws -> ConfigDiff {
        ConfigDiff.between(try recorded(old), new, forces: forces)
    }

    @Test("canonical JSON: fields in order, sets and maps sorted, read back to the same bytes")
    func canonical() throws {
        let document = ConfigDocument.attributes([
            "b": .int(-3), "a": .set([.string("z"), .string("a\"\n"), .string("z")]),
            "m": .map(["y": .bool(true), "x": .list([])]), "none": nil,
        ])
        let json = String(decoding: document.canonicalJSON, as: UTF8.self)
        #expect(json == #"{"b":-3,"a":["a\"\n","z"],"m":{"x":[],"y":true}}"#)
        #expect(try recorded(document).canonicalJSON == document.canonicalJSON)
        let text = ConfigDocument.list([.string("é😀\u{01}\\"), .string("")])
        #expect(try recorded(text) == text)
        #expect(try ConfigDocument(json: Array(#"["\u00e9\ud83d\ude00"]"#.utf8)) == .list([.string("é😀")]))
        #expect(throws: ConfigJSONError.self) { try ConfigDocument(json: Array("{\"a\":1.5}".utf8)) }
        #expect(throws: ConfigJSONError.self) { try ConfigDocument(json: Array("[1,]".utf8)) }
    }

    @Test("flow text quotes only what YAML would read otherwise")
    func flow() {
        let document = ConfigDocument.attributes([
            "src": .string("10.0.0.0/8"), "v6": .string("2001:db8::/32"), "port": .string("80"), "word": .string("yes"),
            "empty": .string(""), "list": .list([.string("a, b"), .int(1), .bool(false)]),
        ])
        #expect(document.flow == #"{src: 10.0.0.0/8, v6: 2001:db8::/32, port: "80", word: "yes", empty: "", "#
            + #"list: ["a, b", 1, false]}"#)
    }

    @Test("one changed field of one rule among 1,000 is one change, by path, with the rest counted")
    func oneField() throws {
        var rules = Self.thousand
        rules[499] = rule(8081)
        let diff = try Self.diff(firewallConfig(Self.thousand), firewallConfig(rules))
        #expect(lines(diff) == ["rules[499].match.dport: 10499 -> 8081"])
        #expect(diff.unchanged == ["rules": 999])
    }

    @Test("an insert in the middle is one added rule; later rules are not renumbered into changes")
    func insert() throws {
        var rules = Self.thousand
        rules.insert(rule(443), at: 500)
        let diff = try Self.diff(firewallConfig(Self.thousand), firewallConfig(rules))
        #expect(lines(diff) == ["rules[500]: + {match: {proto: tcp, dport: 443}, action: accept}"])
        #expect(diff.unchanged == ["rules": 1000])
    }

    @Test("a removal is named by its old index; a change after an insert says where the rule was")
    func removeAndMove() throws {
        var removed = Self.thousand
        removed.remove(at: 7)
        #expect(lines(try Self.diff(firewallConfig(Self.thousand), firewallConfig(removed)))
                == ["rules[7]: - {match: {proto: tcp, dport: 10007}, action: accept}"])
        var moved = Self.thousand
        moved.insert(rule(1), at: 0)
        moved[11] = rule(10_010, "drop")
        let diff = try Self.diff(firewallConfig(Self.thousand), firewallConfig(moved))
        #expect(lines(diff) == ["rules[0]: + {match: {proto: tcp, dport: 1}, action: accept}",
                                "rules[11].action: accept -> drop (was rules[10].action)"])
    }

    @Test("edits at both ends and in the middle, several at once")
    func several() throws {
        var rules = Self.thousand
        rules.removeFirst()
        rules[100] = rule(7, "drop")
        rules.append(rule(9))
        let diff = try Self.diff(firewallConfig(Self.thousand, policy: "accept"), firewallConfig(rules))
        #expect(lines(diff) == [
            "policy: accept -> drop",
            "rules[0]: - {match: {proto: tcp, dport: 10000}, action: accept}",
            "rules[100].match.dport: 10101 -> 7 (was rules[101].match.dport)",
            "rules[100].action: accept -> drop (was rules[101].action)",
            "rules[999]: + {match: {proto: tcp, dport: 9}, action: accept}",
        ])
        #expect(diff.unchanged == ["rules": 998])
    }

    @Test("a reversed list is still a correct (if long) diff, within the edit limit or past it")
    func reversed() throws {
        for count in [20, 1500] {
            let rules = (0..<count).map { rule($0) }
            let diff = try Self.diff(firewallConfig(rules), firewallConfig(rules.reversed()))
            #expect(!diff.changes.isEmpty)
            #expect(diff.changes.allSatisfy { $0.path.hasPrefix("rules[") })
        }
    }

    @Test("edit scripts are shortest and transform a into b", arguments: [
        ("abcabba", "cbabac"), ("", "abc"), ("abc", ""), ("abc", "abc"), ("abcd", "acbd"), ("xaby", "ab"), ("a", "b"),
    ])
    func editScripts(_ a: String, _ b: String) {
        let x = a.unicodeScalars.map { Int($0.value) }, y = b.unicodeScalars.map { Int($0.value) }
        let edits = ConfigDiff.edits(x, y)
        var rebuilt: [Int] = []
        var (i, kept) = (0, 0)
        for edit in edits {
            switch edit {
            case .keep:
                rebuilt.append(x[i])
                i += 1
                kept += 1
            case .remove(let index):
                #expect(index == i)
                i += 1
            case .insert(let index):
                rebuilt.append(y[index])
            }
        }
        #expect(rebuilt == y && i == x.count)
        // The longest common subsequence of the examples, found by dynamic programming.
        var table = Array(repeating: Array(repeating: 0, count: y.count + 1), count: x.count + 1)
        for p in x.indices.reversed() {
            for q in y.indices.reversed() {
                table[p][q] = x[p] == y[q] ? table[p + 1][q + 1] + 1 : max(table[p + 1][q], table[p][q + 1])
            }
        }
        #expect(kept == table[0][0])
    }

    @Test("sets change by member, maps by key; short scalar lists as one value")
    func kinds() throws {
        let old = ConfigDocument.attributes([
            "drop": .set([.string("10.0.0.0/8"), .string("192.0.2.0/24")]),
            "tables": .attributes(["blocked": .map(["7001": .int(1), "7002": .int(1)])]),
            "outputs": .list([.string("web"), .string("dns")]),
        ])
        let new = ConfigDocument.attributes([
            "drop": .set([.string("198.51.100.0/24"), .string("10.0.0.0/8")]),
            "tables": .attributes(["blocked": .map(["7001": .int(2), "7003": .int(1)])]),
            "outputs": .list([.string("web"), .string("dns"), .string("other")]),
        ])
        let diff = try Self.diff(old, new) { $0.first == "outputs" }
        #expect(lines(diff) == [
            #"drop["192.0.2.0/24"]: - 192.0.2.0/24"#,
            #"drop["198.51.100.0/24"]: + 198.51.100.0/24"#,
            #"tables.blocked["7001"]: 1 -> 2"#,
            #"tables.blocked["7002"]: - 1"#,
            #"tables.blocked["7003"]: + 1"#,
            "outputs: [web, dns] -> [web, dns, other] !",
        ])
        #expect(diff.unchanged == ["drop": 1])
    }

    @Test("a created cube lists its attributes; an unchanged config has no changes")
    func createdAndSame() throws {
        let config = firewallConfig([rule(22)])
        #expect(ConfigDiff.created(config).map(\.path) == ["policy", "rules"])
        #expect(try Self.diff(config, config).changes.isEmpty)
    }
}
