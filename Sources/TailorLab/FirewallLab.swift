import TailorCubes
import TailorDatapath
import TailorSpec

/// A seeded random number generator (SplitMix64), so a failing rule set can be
/// generated again from its seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// Random firewall rule sets that look like real ones (nested prefixes, well-known
/// ports and ranges, TCP flag checks, conntrack states) and packets aimed at them:
/// inside and outside the prefixes, on and next to the port boundaries.
public struct FirewallRuleSet: Sendable {
    public var rules: [Firewall.Rule]
    public var policy: Firewall.Action
    public var acceptEstablished: Bool
    /// Prefixes and ports the rules were drawn from, for aiming packets.
    var prefixes: [IPPrefix]
    var ports: [UInt16]

    public init(rules: [Firewall.Rule], policy: Firewall.Action, acceptEstablished: Bool) {
        self.rules = rules
        self.policy = policy
        self.acceptEstablished = acceptEstablished
        prefixes = rules.flatMap { [$0.match.source, $0.match.destination].compactMap { $0 } }
        ports = rules.flatMap { rule in
            [rule.match.sourcePorts, rule.match.destinationPorts].compactMap { $0 }
                .flatMap { [$0.lowerBound, $0.upperBound] }
        }
    }

    public var blueprint: CubeBlueprint {
        get throws { try Firewall.blueprint(rules: rules, policy: policy, acceptEstablished: acceptEstablished) }
    }

    static let wellKnownPorts: [UInt16] = [22, 25, 53, 80, 123, 443, 3306, 5432, 6379, 8080, 8443]

    /// `count` rules; with `ipv6` some rules are IPv6 (the rest IPv4 or either).
    public static func random(count: Int, ipv6: Bool = true, states: Bool = true,
                              using rng: inout SeededGenerator) -> FirewallRuleSet {
        // A pool of nested networks per version, so longer prefixes sit inside shorter ones.
        var pool4: [IPPrefix] = [], pool6: [IPPrefix] = []
        for _ in 0..<max(4, count / 4) {
            let a = UInt8.random(in: 1...223, using: &rng)
            let base = [a, UInt8.random(in: 0...255, using: &rng), UInt8.random(in: 0...255, using: &rng),
                        UInt8.random(in: 0...255, using: &rng)]
            for length in [8, 16, 24, 28, 32] where Bool.random(using: &rng) || length == 24 {
                pool4.append(IPPrefix(address: base, length: length).network)
            }
            var base6: [UInt8] = [0xfd, UInt8.random(in: 0...255, using: &rng)]
            for _ in 2..<16 { base6.append(UInt8.random(in: 0...255, using: &rng)) }
            for length in [16, 32, 48, 64, 128] where Bool.random(using: &rng) || length == 48 {
                pool6.append(IPPrefix(address: base6, length: length).network)
            }
        }
        var rules: [Firewall.Rule] = []
        for _ in 0..<count {
            // IPv4, IPv6, or either (no addresses).
            let roll = Int.random(in: 0..<10, using: &rng)
            let version: Bool? = roll < (ipv6 ? 6 : 8) ? false : roll < 8 ? true : nil
            var match = Filter.Rule(action: .pass)
            if let version {
                let pool = version ? pool6 : pool4
                if Int.random(in: 0..<10, using: &rng) < 7 { match.source = pool.randomElement(using: &rng) }
                if Int.random(in: 0..<10, using: &rng) < 5 { match.destination = pool.randomElement(using: &rng) }
                if match.source == nil && match.destination == nil { match.ipv6 = version }
            }
            let protoRoll = Int.random(in: 0..<20, using: &rng)
            match.proto = protoRoll < 9 ? 6 : protoRoll < 14 ? 17 : protoRoll < 16 ? (version == true ? 58 : 1)
                : protoRoll < 17 ? 47 : nil
            if match.proto == 6 || match.proto == 17 {
                if Int.random(in: 0..<10, using: &rng) < 7 { match.destinationPorts = randomPorts(&rng) }
                if Int.random(in: 0..<10, using: &rng) < 2 { match.sourcePorts = randomPorts(&rng) }
            }
            if match.proto == 6 && Int.random(in: 0..<10, using: &rng) < 2 {
                match.tcpFlags = [(0x12 as UInt8, 0x02 as UInt8), (0x17, 0x10), (0x04, 0x04), (0x3f, 0x00)]
                    .randomElement(using: &rng)!
            }
            var ruleStates: Set<Firewall.ConnectionState>?
            if states && Int.random(in: 0..<10, using: &rng) < 2 {
                ruleStates = Set(Firewall.ConnectionState.allCases.filter { _ in Bool.random(using: &rng) })
                if ruleStates!.isEmpty { ruleStates = [.new] }
            }
            rules.append(Firewall.Rule(match, states: ruleStates, action: Bool.random(using: &rng) ? .accept : .drop))
        }
        return FirewallRuleSet(rules: rules, policy: Bool.random(using: &rng) ? .accept : .drop,
                               acceptEstablished: Bool.random(using: &rng))
    }

    static func randomPorts(_ rng: inout SeededGenerator) -> ClosedRange<UInt16> {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0..<6:
            let port = wellKnownPorts.randomElement(using: &rng)!
            return port...port
        case 6..<8:
            let low = UInt16.random(in: 1024...60000, using: &rng)
            return low...low + UInt16.random(in: 0...2000, using: &rng)
        default:
            let port = UInt16.random(in: 1...65535, using: &rng)
            return port...port
        }
    }

    /// A packet aimed at the rules: addresses in (or next to) their prefixes, ports
    /// on and beside their boundaries, every protocol and flag combination the rules
    /// look at; each is the first of its connection.
    public func packet(using rng: inout SeededGenerator) -> PacketBuilder {
        let v6 = prefixes.contains(where: \.isIPv6) && (Int.random(in: 0..<3, using: &rng) == 0 || !prefixes.contains { !$0.isIPv6 })
        func address() -> String {
            let candidates = prefixes.filter { $0.isIPv6 == v6 }
            guard let prefix = candidates.randomElement(using: &rng), Int.random(in: 0..<5, using: &rng) > 0 else {
                return v6 ? IPAddress.format([0xfd] + (1..<16).map { _ in UInt8.random(in: 0...255, using: &rng) })
                    : IPAddress.format([UInt8.random(in: 1...223, using: &rng)] + (1..<4).map { _ in UInt8.random(in: 0...255, using: &rng) })
            }
            var bytes = prefix.address
            for bit in prefix.length..<bytes.count * 8 where Bool.random(using: &rng) {
                bytes[bit / 8] ^= 0x80 >> UInt8(bit % 8)
            }
            // Sometimes just outside: flip the prefix's last bit.
            if prefix.length > 0 && Int.random(in: 0..<4, using: &rng) == 0 {
                bytes[(prefix.length - 1) / 8] ^= 0x80 >> UInt8((prefix.length - 1) % 8)
            }
            return IPAddress.format(bytes)
        }
        func port() -> UInt16 {
            guard let base = ports.randomElement(using: &rng), Int.random(in: 0..<4, using: &rng) > 0 else {
                return UInt16.random(in: 1...65535, using: &rng)
            }
            return base &+ [0, 0, 1, 0xffff].randomElement(using: &rng)!
        }
        let source = address(), destination = address()
        let transport: PacketBuilder.Transport
        switch Int.random(in: 0..<20, using: &rng) {
        case 0..<10:
            let flags: [UInt8] = [0x02, 0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01, 0x00, 0x03, 0x29]
            transport = .tcp(sport: port(), dport: port(), flags: .init(rawValue: flags.randomElement(using: &rng)!))
        case 10..<16:
            transport = .udp(sport: port(), dport: port())
        case 16..<18:
            transport = .icmp(type: [v6 ? 128 : 8, v6 ? 129 : 0, v6 ? 135 : 13].randomElement(using: &rng)!,
                              code: 0, rest: UInt32.random(in: 0...UInt32.max, using: &rng))
        default:
            transport = .ip(proto: 47)
        }
        return PacketBuilder(from: source, to: destination, transport, payload: [UInt8](repeating: 0, count: 8))
    }
}

/// What iptables decides for the first packet of a connection: the reference the
/// firewall cube is tested against.
public enum FirewallModel {
    /// The conntrack state of a packet no connection knows (nf_conntrack_tcp_loose
    /// = 0): a SYN opens TCP, UDP and other protocols open, ICMP echo-like requests
    /// open; IPv6 neighbour discovery and MLD are untracked; everything else (other
    /// TCP, replies, errors quoting nothing) is invalid.
    public static func firstPacketState(_ packet: PacketBuilder) -> Firewall.ConnectionState {
        let v6: Bool = if case .v6 = packet.source { true } else { false }
        switch packet.transport {
        case .tcp(_, _, let flags):
            let valid: Set<UInt8> = [0x02, 0x22, 0x12, 0x04, 0x14, 0x11, 0x31, 0x10, 0x30]
            let core = flags.rawValue & ~(0x40 | 0x80 | 0x08)
            return valid.contains(core) && core & 0x16 == 0x02 ? .new : .invalid
        case .udp, .ip, .icmpEcho:
            return .new
        case .icmp(let type, _, _):
            if v6 && ((130...136).contains(type) || type == 143) { return .untracked }
            let requests: Set<UInt8> = v6 ? [128, 139] : [8, 13, 15, 17]
            return requests.contains(type) ? .new : .invalid
        }
    }

    /// The index of the first rule matching `packet` in `state`, or nil.
    public static func firstMatch(_ rules: [Firewall.Rule], _ packet: PacketBuilder,
                                  state: Firewall.ConnectionState) -> Int? {
        rules.firstIndex { matches($0, packet, state: state) }
    }

    /// The verdict of the whole rule set for the first packet of a connection.
    public static func accepts(_ set: FirewallRuleSet, _ packet: PacketBuilder) -> Bool {
        let state = firstPacketState(packet)
        guard let index = firstMatch(set.rules, packet, state: state) else { return set.policy == .accept }
        return set.rules[index].action == .accept
    }

    static func matches(_ rule: Firewall.Rule, _ packet: PacketBuilder, state: Firewall.ConnectionState) -> Bool {
        let v6: Bool = if case .v6 = packet.source { true } else { false }
        let match = rule.match
        if let ipv6 = match.ipv6 ?? match.source.map(\.isIPv6) ?? match.destination.map(\.isIPv6), ipv6 != v6 {
            return false
        }
        if let source = match.source, !contains(source, packet.source.bytes) { return false }
        if let destination = match.destination, !contains(destination, packet.destination.bytes) { return false }
        let (proto, ports, flags) = fields(packet)
        if let wanted = match.proto, wanted != proto { return false }
        if let range = match.sourcePorts, !(ports.map { range.contains($0.0) } ?? false) { return false }
        if let range = match.destinationPorts, !(ports.map { range.contains($0.1) } ?? false) { return false }
        if let (mask, value) = match.tcpFlags, !(flags.map { $0 & mask == value } ?? false) { return false }
        if let states = rule.states, !states.contains(state) { return false }
        return true
    }

    static func fields(_ packet: PacketBuilder) -> (UInt8, (UInt16, UInt16)?, UInt8?) {
        let v6: Bool = if case .v6 = packet.source { true } else { false }
        switch packet.transport {
        case .tcp(let sport, let dport, let flags): return (6, (sport, dport), flags.rawValue)
        case .udp(let sport, let dport): return (17, (sport, dport), nil)
        case .icmpEcho, .icmp: return (v6 ? 58 : 1, nil, nil)
        case .ip(let proto): return (proto, nil, nil)
        }
    }

    static func contains(_ prefix: IPPrefix, _ address: [UInt8]) -> Bool {
        guard prefix.address.count == address.count else { return false }
        return IPPrefix(address: address, length: prefix.length).network == prefix.network
    }
}

extension FirewallRuleSet {
    /// The rule set as `iptables-restore` input (`ip6tables-restore` with `ipv6`) for
    /// the filter table's FORWARD chain: the rules of that IP version (and those of
    /// either) in order, the established/related fast path first when the set has
    /// it, and the policy.
    public func iptablesRestore(ipv6: Bool) -> String {
        var lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD \(policy == .accept ? "ACCEPT" : "DROP") [0:0]",
                     ":OUTPUT ACCEPT [0:0]"]
        if acceptEstablished { lines.append("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT") }
        for rule in rules where rule.ipv6 == nil || rule.ipv6 == ipv6 {
            lines.append("-A FORWARD " + Self.iptablesMatch(rule, ipv6: ipv6) + " -j " + (rule.action == .accept ? "ACCEPT" : "DROP"))
        }
        lines.append("COMMIT")
        return lines.joined(separator: "\n") + "\n"
    }

    static let tcpFlagNames: [(UInt8, String)] = [(0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"),
                                                   (0x10, "ACK"), (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR")]

    static func iptablesMatch(_ rule: Firewall.Rule, ipv6: Bool) -> String {
        var parts: [String] = []
        let match = rule.match
        if let source = match.source { parts.append("-s \(source.network)") }
        if let destination = match.destination { parts.append("-d \(destination.network)") }
        if let proto = match.proto {
            parts.append("-p " + (proto == 6 ? "tcp" : proto == 17 ? "udp" : proto == 1 && !ipv6 ? "icmp"
                : proto == 58 && ipv6 ? "ipv6-icmp" : "\(proto)"))
        }
        if let ports = match.sourcePorts { parts.append("--sport \(ports.lowerBound):\(ports.upperBound)") }
        if let ports = match.destinationPorts { parts.append("--dport \(ports.lowerBound):\(ports.upperBound)") }
        if let (mask, value) = match.tcpFlags {
            let names = { (bits: UInt8) in
                bits == 0 ? "NONE" : tcpFlagNames.filter { bits & $0.0 != 0 }.map(\.1).joined(separator: ",")
            }
            parts.append("--tcp-flags \(names(mask)) \(names(value))")
        }
        if let states = rule.states {
            let names = [(Firewall.ConnectionState.new, "NEW"), (.established, "ESTABLISHED"), (.related, "RELATED"),
                         (.invalid, "INVALID"), (.untracked, "UNTRACKED")].filter { states.contains($0.0) }.map(\.1)
            parts.append("-m conntrack --ctstate \(names.joined(separator: ","))")
        }
        return parts.joined(separator: " ")
    }
}
