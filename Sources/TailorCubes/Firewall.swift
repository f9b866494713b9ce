import TailorDatapath
import TailorSpec

/// firewall: a stateful firewall with iptables semantics (bpf/cubes/firewall.c).
/// Ordered rules, first match wins, classified by Linear Bit Vector Search: this
/// control plane turns the rules into one bit vector per field value (prefix,
/// port interval, protocol, TCP flags, conntrack state) and specialises the
/// program to the fields the rules use. Every table is versioned: a rule or policy
/// edit writes the entries that change into the generation no packet reads and
/// switches generations with one write (docs/cubes/firewall.md); a change of which
/// fields the rules use, of `acceptEstablished` or of the zone replaces the
/// instance, its conntrack map carried over.
public enum Firewall {
    /// Rules one firewall holds (FW_MAX_RULES in bpf/cubes/firewall.c).
    public static let maxRules = 10_240
    static let maxWords = 160
    static let summaryWords = 3

    public enum Action: Sendable, Hashable { case accept, drop }

    /// Conntrack states, as iptables' `--ctstate` names them (enum tailor_ct_state).
    public enum ConnectionState: Int, Sendable, Hashable, CaseIterable {
        case new, established, related, invalid
        /// Never tracked: IPv6 neighbour discovery and MLD, as Linux leaves them.
        case untracked

        static let names: [String: ConnectionState] = [
            "new": .new, "established": .established, "related": .related, "invalid": .invalid,
            "untracked": .untracked,
        ]
    }

    /// One rule: the filter's match fields, the conntrack states it matches (nil:
    /// any) and its action.
    public struct Rule: Sendable, Hashable {
        /// What the packet must match; its action is not used.
        public var match: Filter.Rule
        public var states: Set<ConnectionState>?
        public var action: Action

        public init(_ match: Filter.Rule, states: Set<ConnectionState>? = nil, action: Action) {
            self.match = match
            self.states = states
            self.action = action
        }
    }

    public static let schema = CubeTypeSchema(
        name: "firewall",
        doc: "Stateful firewall: ordered rules (first match wins) with conntrack, classified in near-constant time.",
        config: [
            ConfigField("policy", .choice(["accept", "drop"]), required: true,
                        doc: "What packets no rule matches get."),
            ConfigField("acceptEstablished", .boolean,
                        doc: "Accept packets of established and related connections before the rules (default true)."),
            ConfigField("zone", .string,
                        doc: "Firewalls with the same zone share one connection table, in any chain: e.g. XDP ingress "
                            + "and TC egress of a host, so replies to what one lets through are established for the other."),
            ConfigField("rules", .list(.object([
                ConfigField("match", .object(Match.fields + [
                    ConfigField("state", .list(.choice(ConnectionState.names.keys.sorted()), maxItems: 5),
                                doc: "Conntrack states matched (iptables --ctstate): new, established, related, invalid, untracked."),
                ]), doc: "What the rule matches; omitted fields match anything."),
                ConfigField("action", .choice(["accept", "drop"]), required: true, doc: "What a matching packet gets."),
            ]), maxItems: maxRules), doc: "Rules in order; the first that matches decides."),
        ])

    /// The blueprint for a validated `firewall` config.
    public static func blueprint(config: ConfigValue) throws -> CubeBlueprint {
        let rules = try Match.rules(of: config) { index, rule in
            let match = rule["match"] ?? .object([:])
            let states = match["state"]?.listValue.map { Set($0.compactMap { $0.stringValue.flatMap { ConnectionState.names[$0] } }) }
            return Rule(try Match.rule(match, ofRule: index), states: states,
                        action: rule["action"]?.stringValue == "drop" ? .drop : .accept)
        }
        let policy: Action = config["policy"]?.stringValue == "drop" ? .drop : .accept
        let acceptEstablished = config["acceptEstablished"]?.booleanValue ?? true
        let zone = config["zone"]?.stringValue
        var blueprint = try blueprint(rules: rules, policy: policy, acceptEstablished: acceptEstablished, zone: zone)
        blueprint.config = .attributes([
            "policy": document(policy), "acceptEstablished": .bool(acceptEstablished), "zone": zone.map(ConfigDocument.string),
            "rules": .list(rules.map { .attributes(["match": Match.document($0.match, states: $0.states), "action": document($0.action)]) }),
        ])
        return blueprint
    }

    static func document(_ action: Action) -> ConfigDocument { .string(action == .drop ? "drop" : "accept") }

    /// Rules and the policy change on the live instance (versioned tables); keys of
    /// the classification tables read as the field values they stand for, the bit
    /// vectors as the rules whose bits differ (a vector holds thousands).
    static let words = CubeWords(inPlace: { path, inPlace in
        (path.first == "rules" || path.first == "policy") && inPlace.contains("actions")
    }, entry: { map, change, _ in
        let key = littleEndianValue(change.key, as: UInt32.self).map(Int.init)
        let vectorKey: String?
        switch map {
        case "src_v4", "src_v6", "dst_v4", "dst_v6": vectorKey = IPPrefix(lpmKey: change.key)?.description
        case "port_vectors": vectorKey = "vector " + hexDigest(change.key.reversed())
        case "proto_vectors": vectorKey = key.map { "proto " + (IPProtocolNames.name(UInt8(truncatingIfNeeded: $0)) ?? "\($0)") }
        case "flag_vectors": vectorKey = key.map { "tcp flags " + hexDigest([UInt8(truncatingIfNeeded: $0)]) }
        case "state_vectors":
            vectorKey = key.map { value in "state " + (ConnectionState.names.first { $0.value.rawValue == value }?.key ?? "\(value)") }
        case "all_rules": vectorKey = "all rules"
        case "sport_index", "dport_index":
            guard let key else { return nil }
            let vector = { (bytes: [UInt8]?) in bytes.map { "vector " + hexDigest($0.reversed()) } }
            return EntryWords(key: key == 65_536 ? "no port" : "port \(key)", before: vector(change.before),
                              after: vector(change.after))
        case "actions", "policy":
            guard let key else { return nil }
            let action = { (bytes: [UInt8]?) in bytes.map { $0 == [1] ? "drop" : $0 == [0] ? "accept" : hexDigest($0) } }
            return EntryWords(key: map == "policy" ? "policy" : "rules[\(key)] action", before: action(change.before),
                              after: action(change.after))
        default: vectorKey = nil
        }
        guard let vectorKey else { return nil }
        let affected = RuleVector.rules(encoded: change.before).symmetricDifference(RuleVector.rules(encoded: change.after))
            .sorted()
        let shown = affected.prefix(5).map { "rules[\($0)]" }.joined(separator: ", ")
        return EntryWords(key: vectorKey, summary: "\(affected.count) rule\(affected.count == 1 ? "" : "s") affected ("
            + shown + (affected.count > 5 ? ", ..." : "") + ")")
    })

    /// With `zone`, the conntrack map is the zone's (shared with every firewall of that zone).
    /// `specialised: false` keeps every lookup stage and conntrack in the program even
    /// where no rule needs them (what the specialisation saves, for `tailor bench firewall`).
    public static func blueprint(rules: [Rule], policy: Action, acceptEstablished: Bool = true,
                                 zone: String? = nil, specialised: Bool = true) throws -> CubeBlueprint {
        guard rules.count <= maxRules else {
            throw CubeConfigError("a firewall holds at most \(maxRules) rules, not \(rules.count)")
        }
        var tables = try Tables(rules, allStages: !specialised)
        tables.entries["policy"] = [TableEntry(key: littleEndian(UInt32(0)), value: [policy == .drop ? 1 : 0])]
        var rodata: [String: [UInt8]] = [
            "summary_words": littleEndian(UInt32((tables.words + 63) / 64)),
            "accept_established": [acceptEstablished ? 1 : 0],
            "use_conntrack": [acceptEstablished || tables.fieldsUsed["state"] == true ? 1 : 0],
        ]
        for (name, used) in tables.fieldsUsed { rodata["use_\(name)"] = [used ? 1 : 0] }
        return try BuiltIn.blueprint("firewall", rodata: rodata, tables: tables.entries,
                                     sharedState: zone.map { ["conntrack": $0] } ?? [:])
    }
}

/// A set of rules as bits: bit r is rule r.
struct RuleVector: Hashable {
    var words: [UInt64]

    init(words count: Int) { words = Array(repeating: 0, count: count) }

    var isEmpty: Bool { words.allSatisfy { $0 == 0 } }

    mutating func insert(_ rule: Int) { words[rule / 64] |= 1 << UInt64(rule % 64) }
    mutating func remove(_ rule: Int) { words[rule / 64] &= ~(1 << UInt64(rule % 64)) }

    func union(_ other: RuleVector) -> RuleVector {
        var result = self
        for index in words.indices { result.words[index] |= other.words[index] }
        return result
    }

    /// The rules of an encoded vector (`encoded`); none for nil.
    static func rules(encoded bytes: [UInt8]?) -> Set<Int> {
        guard let bytes else { return [] }
        var rules = Set<Int>()
        for (index, offset) in stride(from: Firewall.summaryWords * 8, to: bytes.count - 7, by: 8).enumerated() {
            let word = littleEndianValue(Array(bytes[offset..<offset + 8]), as: UInt64.self) ?? 0
            for bit in 0..<64 where word & (1 << UInt64(bit)) != 0 { rules.insert(index * 64 + bit) }
        }
        return rules
    }

    /// The vector's id in `port_vectors`: a 64-bit hash of its non-zero words and
    /// their places (splitmix64's mixer), the same in every run.
    var id: UInt64 {
        func mix(_ value: UInt64) -> UInt64 {
            var z = value &+ 0x9e37_79b9_7f4a_7c15
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        var hash: UInt64 = 0
        for (index, word) in words.enumerated() where word != 0 { hash = mix(hash ^ mix(word ^ mix(UInt64(index)))) }
        return hash
    }

    /// `struct fw_vector`: the summary (bit w set when word w is not zero), then
    /// the words, padded to the map's fixed size.
    /// Built in one buffer: a 10,000-rule firewall encodes thousands of these per plan.
    var encoded: [UInt8] {
        var values = [UInt64](repeating: 0, count: Firewall.summaryWords + Firewall.maxWords)
        for (index, word) in words.enumerated() where word != 0 {
            values[index / 64] |= 1 << UInt64(index % 64)
            values[Firewall.summaryWords + index] = word.littleEndian
        }
        for index in 0..<Firewall.summaryWords { values[index] = values[index].littleEndian }
        return values.withUnsafeBytes { Array($0) }
    }
}

extension Firewall {
    /// The classification tables of a rule list, by map name, and which fields the
    /// program looks up at all.
    struct Tables {
        let rules: [Rule]
        let words: Int
        var entries: [String: [TableEntry]] = [:]
        /// Whether the program looks each field up (rodata `use_<field>`).
        var fieldsUsed: [String: Bool] = [:]

        init(_ rules: [Rule], allStages: Bool = false) throws {
            self.rules = rules
            words = max(1, (rules.count + 63) / 64)
            let all = vector { _ in true }
            entries["all_rules"] = [TableEntry(key: littleEndian(UInt32(0)), value: all.encoded)]
            entries["actions"] = rules.indices.filter { rules[$0].action == .drop }
                .map { TableEntry(key: littleEndian(UInt32($0)), value: [1]) }

            // The source lookup also keeps rules of the other IP version out.
            let useSource = allStages || rules.contains { $0.match.ipv6Only != nil }
            let useDestination = allStages || rules.contains { $0.match.destination != nil }
            if useSource {
                entries["src_v4"] = prefixes(ipv6: false) { $0.match.source }
                entries["src_v6"] = prefixes(ipv6: true) { $0.match.source }
            }
            if useDestination {
                entries["dst_v4"] = prefixes(ipv6: false, versionChecked: useSource) { $0.match.destination }
                entries["dst_v6"] = prefixes(ipv6: true, versionChecked: useSource) { $0.match.destination }
            }

            let useSourcePort = allStages || rules.contains { $0.match.sourcePorts != nil }
            let useDestinationPort = allStages || rules.contains { $0.match.destinationPorts != nil }
            var portVectors: [UInt64: RuleVector] = [:]
            if useSourcePort { entries["sport_index"] = try ports(\.sourcePorts, store: &portVectors) }
            if useDestinationPort { entries["dport_index"] = try ports(\.destinationPorts, store: &portVectors) }
            entries["port_vectors"] = portVectors.sorted { $0.key < $1.key }
                .map { TableEntry(key: littleEndian($0.key), value: $0.value.encoded) }

            let useProto = allStages || rules.contains { $0.match.proto != nil }
            if useProto {
                entries["proto_vectors"] = values(0..<256) { rule, value in rule.match.proto.map { $0 == value } ?? true }
            }
            let useFlags = allStages || rules.contains { $0.match.tcpFlags != nil }
            if useFlags {
                entries["flag_vectors"] = values(0..<256) { rule, value in
                    rule.match.tcpFlags.map { UInt8(value) & $0.mask == $0.value } ?? true
                }
            }
            let useState = allStages || rules.contains { $0.states != nil }
            if useState {
                entries["state_vectors"] = values(0..<ConnectionState.allCases.count) { rule, value in
                    rule.states.map { states in ConnectionState(rawValue: value).map(states.contains) ?? false } ?? true
                }
            }
            fieldsUsed = ["src": useSource, "dst": useDestination, "sport": useSourcePort, "dport": useDestinationPort,
                          "proto": useProto, "flags": useFlags, "state": useState]
        }

        func vector(_ includes: (Rule) -> Bool) -> RuleVector {
            var result = RuleVector(words: words)
            for (index, rule) in rules.enumerated() where includes(rule) { result.insert(index) }
            return result
        }

        /// One vector per value of a small field (an array map), empty ones left out.
        func values(_ range: Range<Int>, _ matches: (Rule, Int) -> Bool) -> [TableEntry] {
            range.compactMap { value in
                let vector = vector { matches($0, value) }
                return vector.isEmpty ? nil : TableEntry(key: littleEndian(UInt32(value)), value: vector.encoded)
            }
        }

        /// LPM trie entries of one address field for one IP version: each prefix a
        /// rule names holds the rules of every prefix containing it, /0 the rules
        /// without this field. With `versionChecked` the source lookup has already
        /// kept rules of the other version out, so rules without the field count
        /// whatever their version.
        func prefixes(ipv6: Bool, versionChecked: Bool = false, _ field: (Rule) -> IPPrefix?) -> [TableEntry] {
            let bytes = ipv6 ? 16 : 4
            let wildcard = vector { field($0) == nil && (versionChecked || $0.match.ipv6Only.map { $0 == ipv6 } ?? true) }
            var exact: [IPPrefix: RuleVector] = [:]
            for (index, rule) in rules.enumerated() {
                guard let prefix = field(rule)?.network, prefix.isIPv6 == ipv6 else { continue }
                exact[prefix, default: RuleVector(words: words)].insert(index)
            }
            let root = IPPrefix(address: [UInt8](repeating: 0, count: bytes), length: 0)
            var resolved: [IPPrefix: RuleVector] = [root: wildcard.union(exact[root] ?? RuleVector(words: words))]
            for (prefix, rules) in exact.sorted(by: { $0.key.length < $1.key.length }) where prefix.length > 0 {
                // The longest shorter prefix resolved; the root is, so there always is one.
                let parent = (0..<prefix.length).reversed().lazy
                    .compactMap { resolved[IPPrefix(address: prefix.address, length: $0).network] }.first
                resolved[prefix] = (parent ?? RuleVector(words: words)).union(rules)
            }
            return resolved.filter { !$0.value.isEmpty }
                .map { TableEntry(key: $0.key.lpmKey, value: $0.value.encoded) }
                .sorted { $0.key.lexicographicallyPrecedes($1.key) }
        }

        /// A port field: port -> id of its interval's vector (FW_NO_PORT, index
        /// 65536, for packets without ports: the rules without this field), the
        /// vectors kept in `store` by id. An id is a hash of the vector's bits, so a
        /// vector keeps its id from one rule set to the next and an edit changes
        /// only the ports whose vector it changes.
        func ports(_ field: KeyPath<Filter.Rule, ClosedRange<UInt16>?>,
                   store: inout [UInt64: RuleVector]) throws -> [TableEntry] {
            var known: [RuleVector: UInt64] = [:]
            func id(_ vector: RuleVector) throws -> UInt64 {
                if let id = known[vector] { return id }
                let id = vector.id
                if let other = store[id], other != vector {
                    throw CubeConfigError("two port vectors of this rule set hash to the same id \(id); "
                        + "reorder or change a rule")
                }
                (known[vector], store[id]) = (id, vector)
                return id
            }
            var starts: [Int: [Int]] = [:], ends: [Int: [Int]] = [:]
            for (index, rule) in rules.enumerated() {
                guard let range = rule.match[keyPath: field] else { continue }
                starts[Int(range.lowerBound), default: []].append(index)
                ends[Int(range.upperBound) + 1, default: []].append(index)
            }
            var current = vector { $0.match[keyPath: field] == nil }
            let noPort = try id(current)
            var index = [UInt64](repeating: 0, count: 65_536)
            let cuts = Set(starts.keys).union(ends.keys).union([0]).filter { $0 < 65_536 }.sorted()
            for (position, cut) in cuts.enumerated() {
                for rule in ends[cut] ?? [] { current.remove(rule) }
                for rule in starts[cut] ?? [] { current.insert(rule) }
                let vectorID = try id(current)
                let end = position + 1 < cuts.count ? cuts[position + 1] : 65_536
                for port in cut..<end { index[port] = vectorID }
            }
            return index.enumerated().map { TableEntry(key: littleEndian(UInt32($0.offset)), value: littleEndian($0.element)) }
                + [TableEntry(key: littleEndian(UInt32(65_536)), value: littleEndian(noPort))]
        }
    }
}
