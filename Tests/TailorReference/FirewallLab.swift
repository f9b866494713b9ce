import TailorCubes
import TailorDatapath
import TailorLab
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
        let v6 = packet.isIPv6
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
        let v6 = packet.isIPv6
        let match = rule.match
        if let ipv6 = match.ipv6Only, ipv6 != v6 {
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
        let v6 = packet.isIPv6
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
        for rule in rules where rule.match.ipv6Only.map({ $0 == ipv6 }) ?? true {
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

/// A rule set for measuring the firewall: `count` realistic rules (sources any or
/// a private /16, destinations their own /24 or /32, TCP or UDP to well-known ports
/// or ranges, accept or drop) that never overlap, so a packet aimed at rule k
/// matches rule k and no other; stateless (no conntrack states, no fast path).
public struct FirewallBenchmarkSet: Sendable {
    public let set: FirewallRuleSet
    /// Matches the first rule.
    public let early: PacketBuilder
    /// Matches the last rule.
    public let late: PacketBuilder
    /// Matches no rule though its destination is a TCP rule's (it is UDP): every
    /// lookup finds a vector and only their AND is empty (LBVS's worst case; iptables
    /// walks all rules).
    public let none: PacketBuilder

    public init(count: Int, seed: UInt64 = 1) {
        var rng = SeededGenerator(seed: seed)
        var rules: [Firewall.Rule] = []
        var aims: [PacketBuilder] = []
        for index in 0..<count {
            let network: [UInt8] = [10, UInt8(index / 256), UInt8(index % 256), 0]
            let host = Bool.random(using: &rng)
            var match = Filter.Rule(action: .pass)
            match.destination = IPPrefix(address: host ? network.dropLast() + [7] : network, length: host ? 32 : 24)
            var source = "198.18.0.1"
            if Bool.random(using: &rng) {
                let net: [UInt8] = [172, UInt8.random(in: 16...31, using: &rng), 0, 0]
                match.source = IPPrefix(address: net, length: 16)
                source = IPAddress.format([net[0], net[1], 1, 2])
            }
            match.proto = Int.random(in: 0..<10, using: &rng) < 7 ? 6 : 17
            match.destinationPorts = FirewallRuleSet.randomPorts(&rng)
            rules.append(Firewall.Rule(match, action: Bool.random(using: &rng) ? .accept : .drop))
            let port = match.destinationPorts!.lowerBound
            let destination = IPAddress.format(network.dropLast() + [7])
            aims.append(PacketBuilder(from: source, to: destination,
                                      match.proto == 6 ? .tcp(sport: 40000, dport: port, flags: .ack)
                                          : .udp(sport: 40000, dport: port), payload: [UInt8](repeating: 0, count: 18)))
        }
        set = FirewallRuleSet(rules: rules, policy: .accept, acceptEstablished: false)
        early = aims[0]
        late = aims[count - 1]
        // UDP to the destination of the first TCP rule from the middle on: a protocol it does not name.
        let middle = (count / 2..<count).first { rules[$0].match.proto == 6 } ?? count / 2
        var miss = aims[middle]
        miss.transport = .udp(sport: 40000, dport: 9)
        none = miss
    }
}

extension FirewallRuleSet {
    /// The rule set as an `nft -f` script: table `table` (inet, both IP versions)
    /// with a forward chain holding the established/related fast path when the set
    /// has it, the rules in order, and the policy.
    public func nftScript(table: String) -> String {
        var lines = ["table inet \(table) {", "  chain forward {",
                     "    type filter hook forward priority filter; policy \(policy == .accept ? "accept" : "drop");"]
        if acceptEstablished { lines.append("    ct state established,related accept") }
        for rule in rules {
            lines.append("    " + (Self.nftMatch(rule) + [rule.action == .accept ? "accept" : "drop"]).joined(separator: " "))
        }
        return (lines + ["  }", "}"]).joined(separator: "\n") + "\n"
    }

    static func nftMatch(_ rule: Firewall.Rule) -> [String] {
        var parts: [String] = []
        let match = rule.match
        let family = { (prefix: IPPrefix) in prefix.isIPv6 ? "ip6" : "ip" }
        if let source = match.source { parts.append("\(family(source)) saddr \(source.network)") }
        if let destination = match.destination { parts.append("\(family(destination)) daddr \(destination.network)") }
        if match.source == nil && match.destination == nil, let ipv6 = match.ipv6 {
            parts.append("meta nfproto \(ipv6 ? "ipv6" : "ipv4")")
        }
        let l4 = match.proto == 6 ? "tcp" : match.proto == 17 ? "udp" : nil
        if let proto = match.proto, l4 == nil || (match.sourcePorts == nil && match.destinationPorts == nil) {
            parts.append("meta l4proto \(proto)")
        }
        let range = { (ports: ClosedRange<UInt16>) in
            ports.count == 1 ? "\(ports.lowerBound)" : "\(ports.lowerBound)-\(ports.upperBound)"
        }
        if let l4, let ports = match.sourcePorts { parts.append("\(l4) sport \(range(ports))") }
        if let l4, let ports = match.destinationPorts { parts.append("\(l4) dport \(range(ports))") }
        if let (mask, value) = match.tcpFlags {
            let names = { (bits: UInt8) in
                tcpFlagNames.filter { bits & $0.0 != 0 }.map { $0.1 == "ECE" ? "ecn" : $0.1.lowercased() }
                    .joined(separator: " | ")
            }
            parts.append("tcp flags & (\(names(mask))) == " + (value == 0 ? "0x0" : "(\(names(value)))"))
        }
        if let states = rule.states {
            let names = Firewall.ConnectionState.allCases.filter { states.contains($0) }.map { "\($0)" }
            parts.append("ct state { \(names.joined(separator: ", ")) }")
        }
        return parts
    }
}

extension FirewallRuleSet {
    /// `rule` as `iptables` arguments after the chain (`-A FORWARD`, `-I FORWARD 5`,
    /// `-R FORWARD 5`): its match and its target.
    public static func iptablesArguments(_ rule: Firewall.Rule, ipv6: Bool = false) -> [String] {
        iptablesMatch(rule, ipv6: ipv6).split(separator: " ").map(String.init)
            + ["-j", rule.action == .accept ? "ACCEPT" : "DROP"]
    }

    /// `rule` as `nft` arguments after `add rule ... CHAIN` (or `replace rule ...
    /// handle H`): its match and its verdict.
    public static func nftArguments(_ rule: Firewall.Rule) -> [String] {
        (nftMatch(rule) + [rule.action == .accept ? "accept" : "drop"]).flatMap { $0.split(separator: " ").map(String.init) }
    }

    /// `rule` as one line of a firewall spec's `rules` list, in flow style
    /// (`{match: {dst: 10.0.0.0/24, proto: tcp, dport: 80}, action: accept}`):
    /// prefixes, protocol and ports, the fields `FirewallBenchmarkSet` draws.
    /// Nil for a rule with TCP flags, states or an IP version alone.
    public static func specLine(_ rule: Firewall.Rule) -> String? {
        let match = rule.match
        guard match.tcpFlags == nil, rule.states == nil, match.ipv6 == nil || match.source != nil
            || match.destination != nil else { return nil }
        let ports = { (range: ClosedRange<UInt16>) in
            range.count == 1 ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound)"
        }
        var fields: [String] = []
        if let source = match.source { fields.append("src: \(source.network)") }
        if let destination = match.destination { fields.append("dst: \(destination.network)") }
        if let proto = match.proto { fields.append("proto: " + (proto == 6 ? "tcp" : proto == 17 ? "udp" : "\(proto)")) }
        if let range = match.sourcePorts { fields.append("sport: \(ports(range))") }
        if let range = match.destinationPorts { fields.append("dport: \(ports(range))") }
        return "{match: {\(fields.joined(separator: ", "))}, action: \(rule.action == .accept ? "accept" : "drop")}"
    }
}
