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

    public enum Action: String, Sendable, Hashable, CaseIterable { case accept, drop }

    /// Conntrack states, as iptables' `--ctstate` names them (enum tailor_ct_state).
    public enum ConnectionState: Int, Sendable, Hashable, CaseIterable {
        case new, established, related, invalid
        /// Never tracked: IPv6 neighbour discovery and MLD, as Linux leaves them.
        case untracked

        /// The state's name in a spec.
        var name: String {
            switch self {
            case .new: "new"
            case .established: "established"
            case .related: "related"
            case .invalid: "invalid"
            case .untracked: "untracked"
            }
        }
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
        config: Config.fields)

    /// A `firewall` config as the spec writes it.
    struct Config: ConfigObject {
        static let policy = ConfigKey("policy", .choice as ConfigElement<Action>)
        static let acceptEstablished = ConfigKey("acceptEstablished", .boolean)
        static let zone = ConfigKey("zone", .string)
        static let rules = ConfigKey("rules", .list(.object as ConfigElement<Rule>, maxItems: maxRules))
        static let fields = [
            ConfigField(policy, required: true, doc: "What packets no rule matches get."),
            ConfigField(acceptEstablished,
                        doc: "Accept packets of established and related connections before the rules (default true)."),
            ConfigField(zone,
                        doc: "Firewalls with the same zone share one connection table, in any chain: e.g. XDP ingress "
                            + "and TC egress of a host, so replies to what one lets through are established for the other."),
            ConfigField(rules, doc: "Rules in order; the first that matches decides."),
        ]

        var policy: Action
        var acceptEstablished: Bool
        var zone: String?
        var rules: [Rule]

        init(_ config: ConfigReader) throws {
            policy = try config.required(Self.policy)
            acceptEstablished = try config[Self.acceptEstablished] ?? true
            zone = try config[Self.zone]
            rules = try config[Self.rules] ?? []
        }

        struct Rule: ConfigObject {
            static let match = ConfigKey("match", .object as ConfigElement<Match>)
            static let action = ConfigKey("action", .choice as ConfigElement<Action>)
            static let fields = [
                ConfigField(match, doc: TailorCubes.Match.Config.doc),
                ConfigField(action, required: true, doc: "What a matching packet gets."),
            ]

            var match: Match?
            var action: Action

            init(_ config: ConfigReader) throws {
                match = try config[Self.match]
                action = try config.required(Self.action)
            }
        }

        /// The filter's match fields and the conntrack states.
        struct Match: ConfigObject {
            static let state = ConfigKey("state", .list(.choice(ConnectionState.allCases.map { ($0.name, $0) }
                .sorted { $0.0 < $1.0 }), maxItems: 5))
            static let fields = TailorCubes.Match.Config.fields + [
                ConfigField(state, doc: "Conntrack states matched (iptables --ctstate): new, established, related, "
                            + "invalid, untracked."),
            ]

            var common: TailorCubes.Match.Config
            var state: [ConnectionState]?

            init(_ config: ConfigReader) throws {
                common = try TailorCubes.Match.Config(config)
                state = try config[Self.state]
            }
        }
    }

    /// The blueprint for a `firewall` config.
    static func blueprint(config: Config) throws -> CubeBlueprint {
        let rules = try Match.rules(config.rules) { index, rule in
            Rule(try Match.rule(rule.match?.common, ofRule: index), states: rule.match?.state.map(Set.init),
                 action: rule.action)
        }
        var blueprint = try blueprint(rules: rules, policy: config.policy, acceptEstablished: config.acceptEstablished,
                                      zone: config.zone)
        blueprint.config = .attributes([
            Config.policy.name: document(config.policy), Config.acceptEstablished.name: .bool(config.acceptEstablished),
            Config.zone.name: config.zone.map(ConfigDocument.string),
            Config.rules.name: .list(rules.map {
                .attributes([Config.Rule.match.name: Match.document($0.match, states: $0.states),
                             Config.Rule.action.name: document($0.action)])
            }),
        ])
        return blueprint
    }

    static func document(_ action: Action) -> ConfigDocument { .string(action.rawValue) }

    /// Rules and the policy change on the live instance (versioned tables); keys of
    /// the classification tables read as the field values they stand for, the bit
    /// vectors as the rules whose bits differ (a vector holds thousands).
    static let words = CubeWords(inPlace: { path, inPlace in
        (path.first == Config.rules.name || path.first == Config.policy.name) && inPlace.contains("actions")
    }, entry: { map, change, _ in
        let key = littleEndianValue(change.key, as: UInt32.self).map(Int.init)
        let vectorKey: String?
        switch map {
        case "src_v4", "src_v6", "dst_v4", "dst_v6": vectorKey = IPPrefix(lpmKey: change.key)?.description
        case "port_vectors": vectorKey = "vector " + hexDigest(change.key.reversed())
        case "proto_vectors": vectorKey = key.map { "proto " + (IPProtocolNames.name(UInt8(truncatingIfNeeded: $0)) ?? "\($0)") }
        case "flag_vectors": vectorKey = key.map { "tcp flags " + hexDigest([UInt8(truncatingIfNeeded: $0)]) }
        case "state_vectors":
            vectorKey = key.map { value in "state " + (ConnectionState(rawValue: value)?.name ?? "\(value)") }
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
    /// where no rule needs them (what the specialisation saves, for `tailor-bench firewall`).
    public static func blueprint(rules: [Rule], policy: Action, acceptEstablished: Bool = true,
                                 zone: String? = nil, specialised: Bool = true) throws -> CubeBlueprint {
        guard rules.count <= maxRules else {
            throw CubeConfigError("a firewall holds at most \(maxRules) rules, not \(rules.count)")
        }
        let stages = Tables.Stages(rules, all: !specialised)
        var rodata: [String: [UInt8]] = [
            "summary_words": littleEndian(UInt32((Tables.words(rules.count) + 63) / 64)),
            "accept_established": [acceptEstablished ? 1 : 0],
            "use_conntrack": [acceptEstablished || stages.state ? 1 : 0],
        ]
        for (name, used) in stages.used { rodata["use_\(name)"] = [used ? 1 : 0] }
        // Built only when an instance is loaded or changed, and only the tables asked for:
        // a plan compares digests of the inputs.
        let tables = LazyTables(inputs: tableInputs(rules, policy: policy, stages: stages)) { names in
            var tables = Tables(rules, stages: stages, only: names)
            if names.contains("policy") {
                tables.entries["policy"] = [TableEntry(key: littleEndian(UInt32(0)), value: [policy == .drop ? 1 : 0])]
            }
            return tables.entries
        }
        return try BuiltIn.blueprint("firewall", rodata: rodata, tables: tables,
                                     sharedState: zone.map { ["conntrack": $0] } ?? [:])
    }

    /// Per table, the bytes it is built from: the rule count (every vector's width)
    /// and, rule by rule, the fields that table reads, so an edit changes the inputs
    /// of the tables it changes only. Format 2; a change in how a table is built
    /// changes the first byte.
    static func tableInputs(_ rules: [Rule], policy: Action, stages: Tables.Stages) -> [String: [UInt8]] {
        let head: [UInt8] = [2] + littleEndian(UInt32(rules.count))
        func perRule(_ extra: [UInt8] = [], _ field: (Rule) -> [UInt8]) -> [UInt8] {
            var bytes = head + extra
            for rule in rules { bytes += field(rule) }
            return bytes
        }
        func prefix(_ prefix: IPPrefix?) -> [UInt8] {
            guard let network = prefix?.network else { return [0] }
            return [network.isIPv6 ? 6 : 4, UInt8(network.length)] + network.address
        }
        func ports(_ range: ClosedRange<UInt16>?) -> [UInt8] {
            range.map { [1] + littleEndian($0.lowerBound) + littleEndian($0.upperBound) } ?? [0]
        }
        // The IP version a rule is limited to: the prefix lookups leave rules of the other out.
        let version = { (rule: Rule) -> [UInt8] in [rule.match.ipv6Only.map { $0 ? 6 : 4 } ?? 0] }
        var inputs: [String: [UInt8]] = [
            "all_rules": head,
            "actions": perRule { [$0.action == .drop ? 1 : 0] },
            "policy": [2, policy == .drop ? 1 : 0],
        ]
        if stages.source {
            let source = perRule { version($0) + prefix($0.match.source) }
            (inputs["src_v4"], inputs["src_v6"]) = (source, source)
        }
        if stages.destination {
            let destination = perRule([stages.source ? 1 : 0]) { version($0) + prefix($0.match.destination) }
            (inputs["dst_v4"], inputs["dst_v6"]) = (destination, destination)
        }
        // Port vectors hold the vectors of both indices.
        var vectors = head
        if stages.sourcePort {
            inputs["sport_index"] = perRule { ports($0.match.sourcePorts) }
            vectors += [1] + (inputs["sport_index"] ?? [])
        }
        if stages.destinationPort {
            inputs["dport_index"] = perRule { ports($0.match.destinationPorts) }
            vectors += [2] + (inputs["dport_index"] ?? [])
        }
        inputs["port_vectors"] = vectors
        if stages.proto { inputs["proto_vectors"] = perRule { $0.match.proto.map { [1, $0] } ?? [0] } }
        if stages.flags { inputs["flag_vectors"] = perRule { $0.match.tcpFlags.map { [1, $0.mask, $0.value] } ?? [0] } }
        if stages.state {
            inputs["state_vectors"] = perRule {
                littleEndian(UInt16($0.states.map { $0.reduce(0) { $0 | 1 << $1.rawValue } } ?? 0xffff))
            }
        }
        return inputs
    }
}

/// A set of rules as bits: bit r is rule r.
struct RuleVector: Hashable {
    private(set) var words: [UInt64]
    /// A 64-bit hash of the non-zero words and their places, kept as bits change:
    /// the xor of `term(index, word)` over the words (splitmix64's mixer), the same in
    /// every run. `Tables.ports` keys `port_vectors` by it.
    private(set) var id: UInt64 = 0

    init(words count: Int) { words = Array(repeating: 0, count: count) }

    var isEmpty: Bool { words.allSatisfy { $0 == 0 } }

    mutating func insert(_ rule: Int) { set(rule / 64, words[rule / 64] | 1 << UInt64(rule % 64)) }
    mutating func remove(_ rule: Int) { set(rule / 64, words[rule / 64] & ~(1 << UInt64(rule % 64))) }

    private mutating func set(_ index: Int, _ word: UInt64) {
        id ^= Self.term(index, words[index]) ^ Self.term(index, word)
        words[index] = word
    }

    func union(_ other: RuleVector) -> RuleVector {
        var result = self
        for index in words.indices { result.set(index, words[index] | other.words[index]) }
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

    /// What word `index` adds to the id: nothing when it is zero.
    private static func term(_ index: Int, _ word: UInt64) -> UInt64 {
        word == 0 ? 0 : mix(word ^ mix(UInt64(index)))
    }

    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
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
        /// Which fields the program looks up (rodata `use_<field>`): those some rule
        /// matches on, or all of them.
        struct Stages {
            var source, destination, sourcePort, destinationPort, proto, flags, state: Bool

            init(_ rules: [Rule], all: Bool) {
                // The source lookup also keeps rules of the other IP version out.
                source = all || rules.contains { $0.match.ipv6Only != nil }
                destination = all || rules.contains { $0.match.destination != nil }
                sourcePort = all || rules.contains { $0.match.sourcePorts != nil }
                destinationPort = all || rules.contains { $0.match.destinationPorts != nil }
                proto = all || rules.contains { $0.match.proto != nil }
                flags = all || rules.contains { $0.match.tcpFlags != nil }
                state = all || rules.contains { $0.states != nil }
            }

            var used: [String: Bool] {
                ["src": source, "dst": destination, "sport": sourcePort, "dport": destinationPort,
                 "proto": proto, "flags": flags, "state": state]
            }
        }

        let rules: [Rule]
        let words: Int
        var entries: [String: [TableEntry]] = [:]

        /// 64-bit words of a vector of `count` rules.
        static func words(_ count: Int) -> Int { max(1, (count + 63) / 64) }

        /// The tables `names` (of those `stages` use), and no others.
        init(_ rules: [Rule], stages: Stages, only names: Set<String>) {
            self.rules = rules
            words = Self.words(rules.count)
            if names.contains("all_rules") {
                entries["all_rules"] = [TableEntry(key: littleEndian(UInt32(0)), value: vector { _ in true }.encoded)]
            }
            if names.contains("actions") {
                entries["actions"] = rules.indices.filter { rules[$0].action == .drop }
                    .map { TableEntry(key: littleEndian(UInt32($0)), value: [1]) }
            }
            for ipv6 in [false, true] {
                let suffix = ipv6 ? "_v6" : "_v4"
                if stages.source && names.contains("src" + suffix) {
                    entries["src" + suffix] = prefixes(ipv6: ipv6) { $0.match.source }
                }
                if stages.destination && names.contains("dst" + suffix) {
                    entries["dst" + suffix] = prefixes(ipv6: ipv6, versionChecked: stages.source) { $0.match.destination }
                }
            }

            // Both indices at once, source first: they share the vectors, and their ids.
            if !names.isDisjoint(with: ["sport_index", "dport_index", "port_vectors"]) {
                var portVectors: [UInt64: RuleVector] = [:]
                let sport = stages.sourcePort ? ports(\.sourcePorts, store: &portVectors) : nil
                let dport = stages.destinationPort ? ports(\.destinationPorts, store: &portVectors) : nil
                if names.contains("sport_index") { entries["sport_index"] = sport }
                if names.contains("dport_index") { entries["dport_index"] = dport }
                if names.contains("port_vectors") {
                    entries["port_vectors"] = portVectors.sorted { $0.key < $1.key }
                        .map { TableEntry(key: littleEndian($0.key), value: $0.value.encoded) }
                }
            }

            if stages.proto && names.contains("proto_vectors") {
                entries["proto_vectors"] = values(0..<256) { rule, value in rule.match.proto.map { $0 == value } ?? true }
            }
            if stages.flags && names.contains("flag_vectors") {
                entries["flag_vectors"] = values(0..<256) { rule, value in
                    rule.match.tcpFlags.map { UInt8(value) & $0.mask == $0.value } ?? true
                }
            }
            if stages.state && names.contains("state_vectors") {
                entries["state_vectors"] = values(0..<ConnectionState.allCases.count) { rule, value in
                    rule.states.map { states in ConnectionState(rawValue: value).map(states.contains) ?? false } ?? true
                }
            }
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
            // Lengths some prefix has, longest first: a parent can only be one of them.
            var lengths = [0]
            for (prefix, rules) in exact.sorted(by: { $0.key.length < $1.key.length }) where prefix.length > 0 {
                if lengths[0] < prefix.length { lengths.insert(prefix.length, at: 0) }
                // The longest shorter prefix resolved; the root is, so there always is one.
                let parent = lengths.lazy.filter { $0 < prefix.length }
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
                   store: inout [UInt64: RuleVector]) -> [TableEntry] {
            // Two different vectors with one id (a 64-bit collision): the later one
            // takes the next free id of a fixed sequence, so a rule set always gets the same ids.
            func id(_ vector: RuleVector) -> UInt64 {
                var id = vector.id
                while let other = store[id] {
                    if other == vector { return id }
                    id = RuleVector.mix(id)
                }
                store[id] = vector
                return id
            }
            var starts: [Int: [Int]] = [:], ends: [Int: [Int]] = [:]
            for (index, rule) in rules.enumerated() {
                guard let range = rule.match[keyPath: field] else { continue }
                starts[Int(range.lowerBound), default: []].append(index)
                ends[Int(range.upperBound) + 1, default: []].append(index)
            }
            var current = vector { $0.match[keyPath: field] == nil }
            let noPort = id(current)
            var index = [UInt64](repeating: 0, count: 65_536)
            let cuts = Set(starts.keys).union(ends.keys).union([0]).filter { $0 < 65_536 }.sorted()
            for (position, cut) in cuts.enumerated() {
                for rule in ends[cut] ?? [] { current.remove(rule) }
                for rule in starts[cut] ?? [] { current.insert(rule) }
                let vectorID = id(current)
                let end = position + 1 < cuts.count ? cuts[position + 1] : 65_536
                for port in cut..<end { index[port] = vectorID }
            }
            return index.enumerated().map { TableEntry(key: littleEndian(UInt32($0.offset)), value: littleEndian($0.element)) }
                + [TableEntry(key: littleEndian(UInt32(65_536)), value: littleEndian(noPort))]
        }
    }
}
