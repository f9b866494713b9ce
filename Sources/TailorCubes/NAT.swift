import TailorDatapath
import TailorSpec

/// nat: source NAT (masquerade to an address, ports from a range) and destination
/// NAT (port forwarding) for IPv4 TCP, UDP and ICMP echo (bpf/cubes/nat.c), on TC
/// hooks. Both directions of a flow are entered in the `translations` state map when
/// the flow opens; NAT cubes of one zone share it, in any chain, so the egress cube
/// of an interface and its ingress cube translate each other's replies. The snat
/// rules are ordered and few: specialised into the program (a change replaces the
/// instance, the translations carried over). The dnat rules are exact keys: an
/// entry-safe table, changed in place (docs/cubes/nat.md).
public enum NAT {
    /// snat rules one cube holds (NAT_MAX_SNAT in bpf/cubes/nat.c).
    public static let maxSNATRules = 64
    /// dnat rules one cube holds (NAT_MAX_DNAT).
    public static let maxDNATRules = 1024
    /// The ports an snat rule allocates when it names none, as Linux's masquerade.
    public static let defaultPorts: PortRange = 1024...65535

    /// The transport protocols a dnat rule forwards.
    public enum TransportProtocol: String, Sendable, Hashable, CaseIterable {
        case tcp, udp

        var number: UInt8 { self == .tcp ? 6 : 17 }
    }

    /// Packets from `source` (to `destination`, when given) leave from `to`, with a
    /// port of `ports` (an ICMP echo: an id of `ports`).
    public struct SNATRule: Sendable, Hashable {
        public var source: IPPrefix
        public var destination: IPPrefix?
        /// The new source address: 4 bytes (IPv4), network order.
        public var to: [UInt8]
        public var ports: PortRange

        public init(source: IPPrefix, destination: IPPrefix? = nil, to: [UInt8], ports: PortRange = NAT.defaultPorts) {
            (self.source, self.destination, self.to, self.ports) = (source, destination, to, ports)
        }
    }

    /// New connections to `destination`:`port` over `proto` go to `to`:`toPort`.
    public struct DNATRule: Sendable, Hashable {
        public var destination: [UInt8]
        public var proto: TransportProtocol
        public var port: UInt16
        public var to: [UInt8]
        public var toPort: UInt16

        public init(destination: [UInt8], proto: TransportProtocol, port: UInt16, to: [UInt8], toPort: UInt16? = nil) {
            (self.destination, self.proto, self.port, self.to, self.toPort) = (destination, proto, port, to, toPort ?? port)
        }
    }

    /// Why the nat cube cannot run on XDP.
    public static let xdpRefusal = "nat runs on TC hooks only (tcIngress, tcEgress): rewriting addresses keeps "
        + "checksums right on packets whose checksum the NIC or veth completes (CHECKSUM_PARTIAL) only through "
        + "the skb helpers, which XDP programs cannot call"

    public static let schema = CubeTypeSchema(
        name: "nat",
        doc: "Source NAT (masquerade) and destination NAT (port forwarding) of IPv4 TCP, UDP and ICMP echo, both "
            + "directions of every flow; TC hooks only.",
        config: Config.fields)

    /// A `nat` config as the spec writes it.
    struct Config: ConfigObject {
        static let zone = ConfigKey("zone", .string)
        static let snat = ConfigKey("snat", .list(.object as ConfigElement<SNAT>, maxItems: maxSNATRules))
        static let dnat = ConfigKey("dnat", .list(.object as ConfigElement<DNAT>, maxItems: maxDNATRules))
        static let fields = [
            ConfigField(zone, doc: "NAT cubes with the same zone share one translation table, in any chain: the "
                        + "ingress and egress cubes of an interface each translate the other's replies."),
            ConfigField(snat, doc: "Source NAT rules in order, the first that matches a new flow applies (iptables "
                        + "-t nat POSTROUTING -s ... -j SNAT --to-source)."),
            ConfigField(dnat, doc: "Destination NAT rules (PREROUTING -d ... -p tcp --dport ... -j DNAT "
                        + "--to-destination): port forwarding."),
        ]

        var zone: String?
        var snat: [SNAT]
        var dnat: [DNAT]

        init(_ config: ConfigReader) throws {
            zone = try config[Self.zone]
            snat = try config[Self.snat] ?? []
            dnat = try config[Self.dnat] ?? []
        }

        struct SNAT: ConfigObject {
            static let source = ConfigKey("source", .cidr)
            static let destination = ConfigKey("destination", .cidr)
            static let to = ConfigKey("to", .ipAddress)
            static let ports = ConfigKey("ports", .portRange)
            static let fields = [
                ConfigField(source, required: true, doc: "Source prefix of the flows translated, e.g. 10.98.1.0/24."),
                ConfigField(destination, doc: "Destination prefix they must go to (default: anywhere)."),
                ConfigField(to, required: true, doc: "The source address they leave with."),
                ConfigField(ports, doc: "Source ports (ICMP echo ids) given to them, e.g. 20000-29999 "
                            + "(default 1024-65535); a flow keeps its own port when it is in the range and free."),
            ]

            var source: IPPrefix
            var destination: IPPrefix?
            var to: [UInt8]
            var ports: PortRange?

            init(_ config: ConfigReader) throws {
                source = try config.required(Self.source)
                destination = try config[Self.destination]
                to = try config.required(Self.to)
                ports = try config[Self.ports]
            }
        }

        struct DNAT: ConfigObject {
            static let destination = ConfigKey("destination", .ipAddress)
            static let proto = ConfigKey("proto", .choice as ConfigElement<TransportProtocol>)
            static let port = ConfigKey("port", .integer(1...65535) as ConfigElement<UInt16>)
            static let to = ConfigKey("to", .ipAddress)
            static let toPort = ConfigKey("toPort", .integer(1...65535) as ConfigElement<UInt16>)
            static let fields = [
                ConfigField(destination, required: true, doc: "The address new connections are made to."),
                ConfigField(proto, required: true, doc: "tcp or udp."),
                ConfigField(port, required: true, doc: "The destination port forwarded."),
                ConfigField(to, required: true, doc: "The address they are forwarded to."),
                ConfigField(toPort, doc: "The port they are forwarded to (default: port)."),
            ]

            var destination: [UInt8]
            var proto: TransportProtocol
            var port: UInt16
            var to: [UInt8]
            var toPort: UInt16?

            init(_ config: ConfigReader) throws {
                destination = try config.required(Self.destination)
                proto = try config.required(Self.proto)
                port = try config.required(Self.port)
                to = try config.required(Self.to)
                toPort = try config[Self.toPort]
            }
        }
    }

    /// The blueprint for a `nat` config; every bad rule is reported at the field at fault.
    static func blueprint(config: Config) throws -> CubeBlueprint {
        let snat = config.snat.map { SNATRule(source: $0.source, destination: $0.destination, to: $0.to,
                                              ports: $0.ports ?? defaultPorts) }
        let dnat = config.dnat.map { DNATRule(destination: $0.destination, proto: $0.proto, port: $0.port, to: $0.to,
                                              toPort: $0.toPort) }
        var blueprint = try blueprint(snat: snat, dnat: dnat, zone: config.zone)
        let address = { (bytes: [UInt8]) in ConfigDocument.string(IPAddress.format(bytes)) }
        blueprint.config = .attributes([
            Config.zone.name: config.zone.map(ConfigDocument.string),
            Config.snat.name: .list(snat.map { rule in
                .attributes([Config.SNAT.source.name: .string(rule.source.description),
                             Config.SNAT.destination.name: rule.destination.map { .string($0.description) },
                             Config.SNAT.to.name: address(rule.to),
                             Config.SNAT.ports.name: Match.document(ports: rule.ports)])
            }),
            Config.dnat.name: .list(dnat.map { rule in
                .attributes([Config.DNAT.destination.name: address(rule.destination),
                             Config.DNAT.proto.name: .string(rule.proto.rawValue),
                             Config.DNAT.port.name: .int(Int(rule.port)), Config.DNAT.to.name: address(rule.to),
                             Config.DNAT.toPort.name: .int(Int(rule.toPort))])
            }),
        ])
        return blueprint
    }

    /// `dnat` changes in place (an entry-safe table); its entries read as the rules.
    static let words = CubeWords(
        inPlace: { path, _ in path.first == Config.dnat.name },
        entry: { map, change, _ in
            guard map == "dnat_rules", change.key.count == 20 else { return nil }
            let proto = change.key[1] == 6 ? "tcp" : change.key[1] == 17 ? "udp" : "proto \(change.key[1])"
            let key = "\(IPAddress.format(Array(change.key[4..<8]))) \(proto) \(bigEndianPort(change.key, at: 2))"
            let target = { (bytes: [UInt8]?) in
                bytes.flatMap { $0.count == 20 ? "\(IPAddress.format(Array($0[0..<4]))):\(bigEndianPort($0, at: 16))" : nil }
            }
            return EntryWords(key: key, before: target(change.before), after: target(change.after))
        })

    /// With `zone`, the `translations` map is the zone's (shared with every NAT cube of that zone).
    public static func blueprint(snat: [SNATRule], dnat: [DNATRule] = [], zone: String? = nil) throws -> CubeBlueprint {
        try check(snat: snat, dnat: dnat)
        var encoded: [UInt8] = []
        for rule in snat {
            let destination = rule.destination ?? IPPrefix(address: [0, 0, 0, 0], length: 0)
            encoded += rule.source.network.address + mask(rule.source.length) + destination.network.address
                + mask(destination.length) + rule.to + littleEndian(rule.ports.lowerBound)
                + littleEndian(rule.ports.upperBound)
        }
        encoded += Array(repeating: 0, count: (maxSNATRules - snat.count) * snatRuleSize)
        let entries = dnat.map { rule in
            TableEntry(key: [4, rule.proto.number] + bigEndian(rule.port) + rule.destination + Array(repeating: 0, count: 12),
                       value: rule.to + Array(repeating: 0, count: 12) + bigEndian(rule.toPort) + [0, 0])
        }
        return try BuiltIn.blueprint("nat", rodata: ["snat_rules": encoded, "snat_count": littleEndian(UInt32(snat.count))],
                                     tables: ["dnat_rules": entries],
                                     sharedState: zone.map { ["translations": $0] } ?? [:])
    }

    /// Bytes of one `struct nat_snat_rule`.
    static let snatRuleSize = 24

    /// Rules the datapath cannot take, each at the field that makes it so (CubeConfigErrors):
    /// IPv6 (not supported yet), fields of different IP versions, a port range with port 0,
    /// two snat rules of one address whose port ranges overlap, two dnat rules for one
    /// destination, protocol and port.
    static func check(snat: [SNATRule], dnat: [DNATRule]) throws {
        var errors: [CubeConfigError] = []
        func problem(_ list: String, _ index: Int, _ field: String, _ message: String) {
            errors.append(CubeConfigError("\(list) rule \(index + 1): \(message)",
                                          at: ConfigPath([.field(list), .item(index), .field(field)])))
        }
        /// Whether `fields` (name, text, IPv6) are all IPv4; else the problem is
        /// recorded at the first whose version differs from the first field's, or at
        /// the first field when all are IPv6.
        func version(_ list: String, _ index: Int, _ fields: [(String, String, Bool)]) -> Bool {
            guard let (firstName, firstText, firstV6) = fields.first else { return true }
            if let (name, text, _) = fields.first(where: { $0.2 != firstV6 }) {
                problem(list, index, name, "\(name) \(text) and \(firstName) \(firstText) are of different IP versions")
                return false
            }
            guard !firstV6 else {
                problem(list, index, firstName, "IPv6 is not supported yet: the nat cube translates IPv4 only")
                return false
            }
            return true
        }
        let (snatKeys, dnatKeys) = (Config.SNAT.self, Config.DNAT.self)
        for (index, rule) in snat.enumerated() {
            var fields = [(snatKeys.source.name, rule.source.description, rule.source.isIPv6)]
            if let destination = rule.destination {
                fields.append((snatKeys.destination.name, destination.description, destination.isIPv6))
            }
            fields.append((snatKeys.to.name, IPAddress.format(rule.to), rule.to.count == 16))
            guard version(Config.snat.name, index, fields) else { continue }
            if rule.ports.lowerBound == 0 {
                problem(Config.snat.name, index, snatKeys.ports.name, "ports \(text(rule.ports)) include port 0")
                continue
            }
            if let earlier = snat.indices.prefix(index).first(where: {
                snat[$0].to == rule.to && snat[$0].ports.overlaps(rule.ports)
            }) {
                problem(Config.snat.name, index, snatKeys.ports.name,
                        "ports \(text(rule.ports)) of \(IPAddress.format(rule.to)) overlap snat rule \(earlier + 1)'s "
                        + "\(text(snat[earlier].ports)); give each rule of one address its own range")
            }
        }
        for (index, rule) in dnat.enumerated() {
            guard version(Config.dnat.name, index, [
                (dnatKeys.destination.name, IPAddress.format(rule.destination), rule.destination.count == 16),
                (dnatKeys.to.name, IPAddress.format(rule.to), rule.to.count == 16),
            ]) else { continue }
            if let earlier = dnat.indices.prefix(index).first(where: {
                (dnat[$0].destination, dnat[$0].proto, dnat[$0].port) == (rule.destination, rule.proto, rule.port)
            }) {
                problem(Config.dnat.name, index, dnatKeys.port.name,
                        "dnat rule \(earlier + 1) already forwards \(IPAddress.format(rule.destination)) "
                        + "\(rule.proto.rawValue) port \(rule.port)")
            }
        }
        if snat.count > maxSNATRules {
            errors.append(CubeConfigError("a nat cube holds at most \(maxSNATRules) snat rules, not \(snat.count)",
                                          at: [.key(Config.snat)]))
        }
        if dnat.count > maxDNATRules {
            errors.append(CubeConfigError("a nat cube holds at most \(maxDNATRules) dnat rules, not \(dnat.count)",
                                          at: [.key(Config.dnat)]))
        }
        guard errors.isEmpty else { throw CubeConfigErrors(errors: errors) }
    }

    /// "80" or "1000-2000".
    static func text(_ ports: PortRange) -> String {
        ports.count == 1 ? "\(ports.lowerBound)" : "\(ports.lowerBound)-\(ports.upperBound)"
    }

    /// An IPv4 netmask of `length` bits, network order.
    static func mask(_ length: Int) -> [UInt8] {
        bigEndian(length == 0 ? UInt32(0) : UInt32.max << (32 - UInt32(length)))
    }

    static func bigEndianPort(_ bytes: [UInt8], at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }
}

/// Big-endian (network order) bytes of an integer.
func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian, Array.init)
}
