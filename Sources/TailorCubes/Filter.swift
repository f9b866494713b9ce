import TailorDatapath
import TailorSpec

/// filter: passes or drops packets by a small ordered rule table, first match
/// wins; a passed packet goes on to the next cube (UniBPF's BPFFilter). The rule
/// count is specialised into the program, and changing rules changes what every
/// later entry means, so any rule change replaces the instance.
public enum Filter {
    /// The most rules one filter holds (TAILOR_MAX_RULES in bpf/include/tailor/rules.h).
    public static let maxRules = 64

    public enum Action: String, Sendable, Hashable, CaseIterable { case pass, drop }

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
        config: Config.fields)

    /// A `filter` config as the spec writes it.
    struct Config: ConfigObject {
        static let rules = ConfigKey("rules", .list(.object as ConfigElement<Rule>, maxItems: maxRules))
        static let defaultAction = ConfigKey("defaultAction", .choice as ConfigElement<Action>)
        static let fields = [
            ConfigField(rules, doc: "Rules in order; the first that matches decides."),
            ConfigField(defaultAction, doc: "For packets no rule matches (default pass)."),
        ]

        var rules: [Rule]
        var defaultAction: Action

        init(_ config: ConfigReader) throws {
            rules = try config[Self.rules] ?? []
            defaultAction = try config[Self.defaultAction] ?? .pass
        }

        struct Rule: ConfigObject {
            static let action = ConfigKey("action", .choice as ConfigElement<Action>)
            static let fields = [
                ConfigField(Match.Config.key, doc: Match.Config.doc),
                ConfigField(action, required: true, doc: "What a matching packet gets."),
            ]

            var match: Match.Config?
            var action: Action

            init(_ config: ConfigReader) throws {
                match = try config[Match.Config.key]
                action = try config.required(Self.action)
            }
        }
    }

    /// The blueprint for a `filter` config.
    static func blueprint(config: Config) throws -> CubeBlueprint {
        let rules = try Match.rules(config.rules) { index, rule in
            var decoded = try Match.rule(rule.match, ofRule: index)
            decoded.action = rule.action
            return decoded
        }
        let defaultAction = config.defaultAction
        var blueprint = try blueprint(rules: rules, defaultAction: defaultAction)
        blueprint.config = .attributes([Config.rules.name: .list(rules.map(document)),
                                        Config.defaultAction.name: document(defaultAction)])
        return blueprint
    }

    /// A rule in the config's words: `{match: {proto: tcp, dport: 23}, action: drop}`.
    static func document(_ rule: Rule) -> ConfigDocument {
        .attributes([Match.Config.key.name: Match.document(rule), Config.Rule.action.name: document(rule.action)])
    }

    static func document(_ action: Action) -> ConfigDocument { .string(action.rawValue) }

    /// The `rules` table's entries as the rules they encode.
    static let words = CubeWords(entry: { map, change, _ in
        guard map == "rules", let index = littleEndianValue(change.key, as: UInt32.self) else { return nil }
        let rule = { (bytes: [UInt8]?) in bytes.map { Rule(encoded: $0).map { document($0).flow } ?? hexDigest($0) } }
        return EntryWords(key: "rules[\(index)]", before: rule(change.before), after: rule(change.after))
    })

    public static func blueprint(rules: [Rule], defaultAction: Action) throws -> CubeBlueprint {
        guard rules.count <= maxRules else {
            throw CubeConfigError("a filter holds at most \(maxRules) rules, not \(rules.count); "
                + "use the firewall cube for large rule sets", at: [.key(Config.rules)])
        }
        let entries = rules.enumerated().map { TableEntry(key: littleEndian(UInt32($0.offset)), value: $0.element.encoded) }
        return try BuiltIn.blueprint(
            "filter",
            rodata: ["rule_count": littleEndian(UInt32(rules.count)), "default_action": [defaultAction == .drop ? 1 : 0]],
            tables: ["rules": entries])
    }
}
