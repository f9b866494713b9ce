import TailorDatapath
import TailorSpec

/// The match fields filters (and later the firewall and classifier) share.
enum Match {
    static let tcpFlagNames: [String: UInt8] = ["fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20]

    static let fields: [ConfigField] = [
        ConfigField("src", .cidr, doc: "Source prefix (IPv4 or IPv6), e.g. 10.0.0.0/8."),
        ConfigField("dst", .cidr, doc: "Destination prefix (IPv4 or IPv6)."),
        ConfigField("proto", .ipProtocol, doc: "tcp, udp, icmp, icmpv6 or a protocol number."),
        ConfigField("sport", .portRange, doc: "Source port or range (tcp/udp only), e.g. 1024-65535."),
        ConfigField("dport", .portRange, doc: "Destination port or range (tcp/udp only)."),
        ConfigField("tcpFlags", .object([
            ConfigField("mask", .list(.choice(tcpFlagNames.keys.sorted()), maxItems: 6), required: true,
                        doc: "Flags examined."),
            ConfigField("set", .list(.choice(tcpFlagNames.keys.sorted()), maxItems: 6), required: true,
                        doc: "Of those, the flags that must be set; the rest must be clear."),
        ]), doc: "TCP flags, as iptables --tcp-flags MASK SET (proto tcp only)."),
    ]

    /// What `make` makes of each item of the config's `rules`, with its index; the
    /// errors of every rule that fails are thrown together (CubeConfigErrors).
    static func rules<Rule>(of config: ConfigValue, _ make: (Int, ConfigValue) throws -> Rule) throws -> [Rule] {
        var rules: [Rule] = [], errors: [CubeConfigError] = []
        for (index, item) in (config["rules"]?.listValue ?? []).enumerated() {
            do { rules.append(try make(index, item)) } catch let error as CubeConfigError { errors.append(error) }
        }
        guard errors.isEmpty else { throw CubeConfigErrors(errors: errors) }
        return rules
    }

    /// A filter rule (action pass until the caller sets it) from the validated match
    /// of rule `index` of the cube's `rules`. Fields that contradict each other are
    /// an error at the field that makes the rule impossible.
    static func rule(_ match: ConfigValue, ofRule index: Int) throws -> Filter.Rule {
        let problem = { (field: [ConfigPath.Step], message: String) in
            CubeConfigError("rule \(index + 1): \(message)", at: ConfigPath(["rules", .item(index), "match"] + field))
        }
        let source = match["src"]?.prefixValue, destination = match["dst"]?.prefixValue
        if let source, let destination, source.isIPv6 != destination.isIPv6 {
            throw problem(["dst"], "src \(source) and dst \(destination) are of different IP versions")
        }
        let proto = match["proto"]?.protocolValue
        if let port = ["sport", "dport"].first(where: { match[$0]?.portsValue != nil }), proto != 6 && proto != 17 {
            throw problem([.field(port)], "\(port) needs proto tcp or udp"
                          + (proto.map { ", not \(IPProtocolNames.name($0) ?? "\($0)")" } ?? ""))
        }
        var flags: (mask: UInt8, value: UInt8)?
        if let tcpFlags = match["tcpFlags"] {
            guard proto == 6 else { throw problem(["tcpFlags"], "tcpFlags needs proto tcp") }
            let bits = { (list: ConfigValue?) in
                (list?.listValue ?? []).compactMap { $0.stringValue.flatMap { tcpFlagNames[$0] } }.reduce(0, |)
            }
            let mask = bits(tcpFlags["mask"]), set = bits(tcpFlags["set"])
            guard set & ~mask == 0 else {
                throw problem(["tcpFlags", "set"], "tcpFlags.set may only name flags listed in tcpFlags.mask")
            }
            flags = (mask, set)
        }
        return Filter.Rule(proto: proto, source: source, destination: destination,
                           sourcePorts: match["sport"]?.portsValue, destinationPorts: match["dport"]?.portsValue,
                           tcpFlags: flags, action: .pass)
    }
}

extension Match {
    /// A rule's match in the config's words, normalised: fields in the schema's
    /// order, omitted when they match anything, protocols and TCP flags by name,
    /// a single port as a number. `states` is the firewall's `state`.
    static func document(_ rule: Filter.Rule, states: Set<Firewall.ConnectionState>? = nil) -> ConfigDocument {
        func ports(_ range: ClosedRange<UInt16>?) -> ConfigDocument? {
            guard let range else { return nil }
            return range.count == 1 ? .int(Int(range.lowerBound)) : .string("\(range.lowerBound)-\(range.upperBound)")
        }
        func names<Value>(_ table: [String: Value], _ included: (Value) -> Bool) -> ConfigDocument {
            .set(table.filter { included($0.value) }.keys.sorted().map(ConfigDocument.string))
        }
        var family: ConfigDocument?
        // A version the prefixes do not already say (rules made outside a spec).
        if let ipv6 = rule.ipv6, rule.source == nil, rule.destination == nil { family = .string(ipv6 ? "ipv6" : "ipv4") }
        var proto: ConfigDocument?
        if let number = rule.proto { proto = IPProtocolNames.name(number).map(ConfigDocument.string) ?? .int(Int(number)) }
        var flags: ConfigDocument?
        if let (mask, value) = rule.tcpFlags {
            flags = .fields([.init("mask", names(tcpFlagNames) { mask & $0 != 0 }),
                             .init("set", names(tcpFlagNames) { value & $0 != 0 })])
        }
        let state = states.map { states in names(Firewall.ConnectionState.names) { states.contains($0) } }
        return .attributes([
            "family": family, "src": rule.source.map { .string($0.description) },
            "dst": rule.destination.map { .string($0.description) }, "proto": proto,
            "sport": ports(rule.sourcePorts), "dport": ports(rule.destinationPorts), "tcpFlags": flags, "state": state,
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
