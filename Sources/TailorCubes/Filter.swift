import TailorDatapath
import TailorSpec

/// filter: passes or drops packets by a small ordered rule table, first match
/// wins; a passed packet goes on to the next cube (UniBPF's BPFFilter). The rule
/// count is specialised into the program, and changing rules changes what every
/// later entry means, so any rule change replaces the instance.
public enum Filter {
    /// The most rules one filter holds (TAILOR_MAX_RULES in bpf/include/tailor/rules.h).
    public static let maxRules = 64

    public enum Action: Sendable, Hashable { case pass, drop }

    /// One rule; nil fields match anything.
    public struct Rule: Sendable, Hashable {
        public var ipv6: Bool?
        public var proto: UInt8?
        public var source: IPPrefix?
        public var destination: IPPrefix?
        public var sourcePorts: ClosedRange<UInt16>?
        public var destinationPorts: ClosedRange<UInt16>?
        /// Matches when `flags & mask == value`.
        public var tcpFlags: (mask: UInt8, value: UInt8)?
        public var action: Action

        public init(ipv6: Bool? = nil, proto: UInt8? = nil, source: IPPrefix? = nil, destination: IPPrefix? = nil,
                    sourcePorts: ClosedRange<UInt16>? = nil, destinationPorts: ClosedRange<UInt16>? = nil,
                    tcpFlags: (mask: UInt8, value: UInt8)? = nil, action: Action) {
            self.ipv6 = ipv6
            self.proto = proto
            self.source = source
            self.destination = destination
            self.sourcePorts = sourcePorts
            self.destinationPorts = destinationPorts
            self.tcpFlags = tcpFlags
            self.action = action
        }

        /// The IP version the rule is limited to (true: IPv6 only, false: IPv4 only),
        /// given or implied by its prefixes; nil when it matches both.
        public var ipv6Only: Bool? { ipv6 ?? source.map(\.isIPv6) ?? destination.map(\.isIPv6) }

        public static func == (a: Rule, b: Rule) -> Bool { a.encoded == b.encoded }
        public func hash(into hasher: inout Hasher) { hasher.combine(encoded) }

        /// `struct tailor_rule` (bpf/include/tailor/rules.h, 48 bytes) with its verdict
        /// byte from the action.
        var encoded: [UInt8] { encoded(verdict: action == .drop ? 1 : 0) }

        /// `struct tailor_rule` with `verdict` (a classifier's output) as its last field.
        func encoded(verdict: UInt8) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: 48)
            bytes[0] = ipv6Only.map { $0 ? 6 : 4 } ?? 0
            bytes[1] = proto ?? 0
            bytes[2] = UInt8(source?.length ?? 0)
            bytes[3] = UInt8(destination?.length ?? 0)
            if let source { bytes.replaceSubrange(4..<4 + source.address.count, with: source.address) }
            if let destination { bytes.replaceSubrange(20..<20 + destination.address.count, with: destination.address) }
            let sports = sourcePorts ?? 0...0xffff, dports = destinationPorts ?? 0...0xffff
            bytes.replaceSubrange(36..<44, with: littleEndian(sports.lowerBound) + littleEndian(sports.upperBound)
                                  + littleEndian(dports.lowerBound) + littleEndian(dports.upperBound))
            bytes[44] = tcpFlags?.mask ?? 0
            bytes[45] = tcpFlags?.value ?? 0
            bytes[46] = verdict
            return bytes
        }
    }

    public static let schema = CubeTypeSchema(
        name: "filter",
        doc: "Passes or drops packets by an ordered rule list (first match wins); passed packets go on.",
        config: [
            ConfigField("rules", .list(.object([
                ConfigField("match", .object(Match.fields), doc: "What the rule matches; omitted fields match anything."),
                ConfigField("action", .choice(["pass", "drop"]), required: true, doc: "What a matching packet gets."),
            ]), maxItems: maxRules), doc: "Rules in order; the first that matches decides."),
            ConfigField("defaultAction", .choice(["pass", "drop"]), doc: "For packets no rule matches (default pass)."),
        ])

    /// The blueprint for a validated `filter` config.
    public static func blueprint(config: ConfigValue) throws -> CubeBlueprint {
        let rules = try Match.rules(of: config) { index, rule in
            var decoded = try Match.rule(rule["match"] ?? .object([:]), ofRule: index)
            decoded.action = rule["action"]?.stringValue == "drop" ? .drop : .pass
            return decoded
        }
        let defaultAction: Action = config["defaultAction"]?.stringValue == "drop" ? .drop : .pass
        var blueprint = try blueprint(rules: rules, defaultAction: defaultAction)
        blueprint.config = .attributes(["rules": .list(rules.map(document)), "defaultAction": document(defaultAction)])
        return blueprint
    }

    /// A rule in the config's words: `{match: {proto: tcp, dport: 23}, action: drop}`.
    static func document(_ rule: Rule) -> ConfigDocument {
        .attributes(["match": Match.document(rule), "action": document(rule.action)])
    }

    static func document(_ action: Action) -> ConfigDocument { .string(action == .drop ? "drop" : "pass") }

    /// The `rules` table's entries as the rules they encode.
    static let words = CubeWords(entry: { map, change, _ in
        guard map == "rules", let index = littleEndianValue(change.key, as: UInt32.self) else { return nil }
        let rule = { (bytes: [UInt8]?) in bytes.map { Rule(encoded: $0).map { document($0).flow } ?? hexDigest($0) } }
        return EntryWords(key: "rules[\(index)]", before: rule(change.before), after: rule(change.after))
    })

    public static func blueprint(rules: [Rule], defaultAction: Action) throws -> CubeBlueprint {
        guard rules.count <= maxRules else {
            throw CubeConfigError("a filter holds at most \(maxRules) rules, not \(rules.count); "
                + "use the firewall cube for large rule sets", at: ["rules"])
        }
        let entries = rules.enumerated().map { TableEntry(key: littleEndian(UInt32($0.offset)), value: $0.element.encoded) }
        return try BuiltIn.blueprint(
            "filter",
            rodata: ["rule_count": littleEndian(UInt32(rules.count)), "default_action": [defaultAction == .drop ? 1 : 0]],
            tables: ["rules": entries])
    }
}
