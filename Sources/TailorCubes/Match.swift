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

    /// A filter rule (action pass until the caller sets it) from a validated match.
    static func rule(_ match: ConfigValue, where context: String) throws -> Filter.Rule {
        let source = match["src"]?.prefixValue, destination = match["dst"]?.prefixValue
        if let source, let destination, source.isIPv6 != destination.isIPv6 {
            throw CubeConfigError("\(context): src \(source) and dst \(destination) are of different IP versions")
        }
        let proto = match["proto"]?.protocolValue
        let ports = match["sport"]?.portsValue != nil || match["dport"]?.portsValue != nil
        if ports && proto != 6 && proto != 17 {
            throw CubeConfigError("\(context): sport/dport need proto tcp or udp")
        }
        var flags: (mask: UInt8, value: UInt8)?
        if let tcpFlags = match["tcpFlags"] {
            guard proto == 6 else { throw CubeConfigError("\(context): tcpFlags needs proto tcp") }
            let bits = { (list: ConfigValue?) in
                (list?.listValue ?? []).compactMap { $0.stringValue.flatMap { tcpFlagNames[$0] } }.reduce(0, |)
            }
            let mask = bits(tcpFlags["mask"]), set = bits(tcpFlags["set"])
            guard set & ~mask == 0 else {
                throw CubeConfigError("\(context): tcpFlags.set may only name flags listed in tcpFlags.mask")
            }
            flags = (mask, set)
        }
        return Filter.Rule(proto: proto, source: source, destination: destination,
                           sourcePorts: match["sport"]?.portsValue, destinationPorts: match["dport"]?.portsValue,
                           tcpFlags: flags, action: .pass)
    }
}
