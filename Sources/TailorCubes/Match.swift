import TailorDatapath
import TailorSpec

/// The match fields filters (and later the firewall and classifier) share.
enum Match {
    /// The TCP flags a rule names, with their bits in the TCP header; cases in the
    /// order the schema lists them.
    enum TCPFlag: String, Sendable, CaseIterable {
        case ack, fin, psh, rst, syn, urg

        var bit: UInt8 {
            switch self {
            case .fin: 0x01
            case .syn: 0x02
            case .rst: 0x04
            case .psh: 0x08
            case .ack: 0x10
            case .urg: 0x20
            }
        }
    }

    /// A rule's `match` as the spec writes it.
    struct Config: ConfigObject {
        /// The `match` field of a filter's or classifier's rule.
        static let key = ConfigKey("match", .object as ConfigElement<Config>)
        static let doc = "What the rule matches; omitted fields match anything."

        static let src = ConfigKey("src", .cidr)
        static let dst = ConfigKey("dst", .cidr)
        static let proto = ConfigKey("proto", .ipProtocol)
        static let sport = ConfigKey("sport", .portRange)
        static let dport = ConfigKey("dport", .portRange)
        static let tcpFlags = ConfigKey("tcpFlags", .object as ConfigElement<TCPFlags>)

        static let fields = [
            ConfigField(src, doc: "Source prefix (IPv4 or IPv6), e.g. 10.0.0.0/8."),
            ConfigField(dst, doc: "Destination prefix (IPv4 or IPv6)."),
            ConfigField(proto, doc: "tcp, udp, icmp, icmpv6 or a protocol number."),
            ConfigField(sport, doc: "Source port or range (tcp/udp only), e.g. 1024-65535."),
            ConfigField(dport, doc: "Destination port or range (tcp/udp only)."),
            ConfigField(tcpFlags, doc: "TCP flags, as iptables --tcp-flags MASK SET (proto tcp only)."),
        ]

        var src: IPPrefix?
        var dst: IPPrefix?
        var proto: UInt8?
        var sport: PortRange?
        var dport: PortRange?
        var tcpFlags: TCPFlags?

        init(_ config: ConfigReader) throws {
            src = try config[Self.src]
            dst = try config[Self.dst]
            proto = try config[Self.proto]
            sport = try config[Self.sport]
            dport = try config[Self.dport]
            tcpFlags = try config[Self.tcpFlags]
        }

        struct TCPFlags: ConfigObject {
            static let flags = ConfigElement<[TCPFlag]>.list(.choice, maxItems: 6)
            static let mask = ConfigKey("mask", flags)
            static let set = ConfigKey("set", flags)
            static let fields = [
                ConfigField(mask, required: true, doc: "Flags examined."),
                ConfigField(set, required: true, doc: "Of those, the flags that must be set; the rest must be clear."),
            ]

            var mask: [TCPFlag]
            var set: [TCPFlag]

            init(_ config: ConfigReader) throws {
                mask = try config.required(Self.mask)
                set = try config.required(Self.set)
            }
        }
    }

    /// What `make` makes of each of `rules` with its index; the errors of every rule
    /// that fails are thrown together (CubeConfigErrors).
    static func rules<Item, Rule>(_ rules: [Item], _ make: (Int, Item) throws -> Rule) throws -> [Rule] {
        var made: [Rule] = [], errors: [CubeConfigError] = []
        made.reserveCapacity(rules.count)
        for (index, item) in rules.enumerated() {
            do { made.append(try make(index, item)) } catch let error as CubeConfigError { errors.append(error) }
        }
        guard errors.isEmpty else { throw CubeConfigErrors(errors: errors) }
        return made
    }

    /// A filter rule (action pass until the caller sets it) from the match of rule
    /// `index` of the cube's `rules`. Fields that contradict each other are an error
    /// at the field that makes the rule impossible.
    static func rule(_ match: Config?, ofRule index: Int) throws -> Filter.Rule {
        guard let match else { return Filter.Rule(action: .pass) }
        let problem = { (field: [ConfigPath.Step], message: String) in
            CubeConfigError("rule \(index + 1): \(message)",
                            at: ConfigPath([.field("rules"), .item(index), .key(Config.key)] + field))
        }
        if let source = match.src, let destination = match.dst, source.isIPv6 != destination.isIPv6 {
            throw problem([.key(Config.dst)], "src \(source) and dst \(destination) are of different IP versions")
        }
        let proto = match.proto
        if let port = match.sport != nil ? Config.sport : match.dport != nil ? Config.dport : nil, proto != 6 && proto != 17 {
            throw problem([.key(port)], "\(port.name) needs proto tcp or udp"
                          + (proto.map { ", not \(IPProtocolNames.name($0) ?? "\($0)")" } ?? ""))
        }
        var flags: (mask: UInt8, value: UInt8)?
        if let tcpFlags = match.tcpFlags {
            guard proto == 6 else { throw problem([.key(Config.tcpFlags)], "tcpFlags needs proto tcp") }
            let bits = { (flags: [TCPFlag]) in flags.reduce(0) { $0 | $1.bit } }
            let mask = bits(tcpFlags.mask), set = bits(tcpFlags.set)
            guard set & ~mask == 0 else {
                throw problem([.key(Config.tcpFlags), .key(Config.TCPFlags.set)], "tcpFlags.set may only name flags listed in tcpFlags.mask")
            }
            flags = (mask, set)
        }
        return Filter.Rule(proto: proto, source: match.src, destination: match.dst, sourcePorts: match.sport,
                           destinationPorts: match.dport, tcpFlags: flags, action: .pass)
    }
}

extension Match {
    /// A port range in the config's words: a single port as a number, a range as "lo-hi".
    static func document(ports range: PortRange) -> ConfigDocument {
        range.count == 1 ? .int(Int(range.lowerBound)) : .string("\(range.lowerBound)-\(range.upperBound)")
    }

    /// A rule's match in the config's words, normalised: fields in the schema's
    /// order, omitted when they match anything, protocols and TCP flags by name,
    /// a single port as a number. `states` is the firewall's `state`.
    static func document(_ rule: Filter.Rule, states: Set<Firewall.ConnectionState>? = nil) -> ConfigDocument {
        func names<Value>(_ values: [Value], _ name: (Value) -> String, _ included: (Value) -> Bool) -> ConfigDocument {
            .set(values.filter(included).map(name).sorted().map(ConfigDocument.string))
        }
        var family: ConfigDocument?
        // A version the prefixes do not already say (rules made outside a spec).
        if let ipv6 = rule.ipv6, rule.source == nil, rule.destination == nil { family = .string(ipv6 ? "ipv6" : "ipv4") }
        var proto: ConfigDocument?
        if let number = rule.proto { proto = IPProtocolNames.name(number).map(ConfigDocument.string) ?? .int(Int(number)) }
        var flags: ConfigDocument?
        if let (mask, value) = rule.tcpFlags {
            flags = .fields([.init(Config.TCPFlags.mask.name, names(TCPFlag.allCases, \.rawValue) { mask & $0.bit != 0 }),
                             .init(Config.TCPFlags.set.name, names(TCPFlag.allCases, \.rawValue) { value & $0.bit != 0 })])
        }
        let state = states.map { states in names(Firewall.ConnectionState.allCases, \.name) { states.contains($0) } }
        return .attributes([
            "family": family, Config.src.name: rule.source.map { .string($0.description) },
            Config.dst.name: rule.destination.map { .string($0.description) }, Config.proto.name: proto,
            Config.sport.name: rule.sourcePorts.map(document(ports:)),
            Config.dport.name: rule.destinationPorts.map(document(ports:)),
            Config.tcpFlags.name: flags, Firewall.Config.Match.state.name: state,
        ])
    }
}

extension Filter.Rule {
    /// The rule `encoded(verdict:)` wrote, and its verdict byte; nil when `bytes` is
    /// not a `struct tailor_rule` (an entry written by hand).
    init?(encoded bytes: [UInt8]) {
        guard bytes.count >= 47, [0, 4, 6].contains(bytes[0]), bytes[2] <= 128, bytes[3] <= 128 else { return nil }
        let ipv6 = bytes[0] == 6
        let prefix = { (offset: Int, length: UInt8) -> IPPrefix? in
            length == 0 ? nil : IPPrefix(address: Array(bytes[offset..<offset + (ipv6 ? 16 : 4)]), length: Int(length))
        }
        let port = { (offset: Int) in UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8 }
        let range = { (low: UInt16, high: UInt16) -> ClosedRange<UInt16>? in
            low == 0 && high == 0xffff || low > high ? nil : low...high
        }
        self.init(ipv6: bytes[0] == 0 ? nil : ipv6, proto: bytes[1] == 0 ? nil : bytes[1],
                  source: prefix(4, bytes[2]), destination: prefix(20, bytes[3]),
                  sourcePorts: range(port(36), port(38)), destinationPorts: range(port(40), port(42)),
                  tcpFlags: bytes[44] == 0 ? nil : (bytes[44], bytes[45]), action: bytes[46] == 1 ? .drop : .pass)
    }
}
