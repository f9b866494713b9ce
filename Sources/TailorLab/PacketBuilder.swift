import TailorSpec

/// Builds Ethernet frames with IPv4/IPv6 and TCP/UDP/ICMP headers and correct
/// checksums, for BPF_PROG_TEST_RUN and for comparing against what programs output.
public struct PacketBuilder: Sendable, CustomStringConvertible {
    public enum Address: Sendable, Equatable {
        case v4([UInt8])
        case v6([UInt8])

        /// Parses dotted IPv4 or colon-hex IPv6 text ("10.0.0.1", "fd00::1"); text
        /// that is neither is a programming error.
        public init(_ text: String) {
            guard let bytes = IPAddress.parse(text) else { preconditionFailure("not an IP address: \(text)") }
            self = bytes.count == 16 ? .v6(bytes) : .v4(bytes)
        }

        public var bytes: [UInt8] {
            switch self {
            case .v4(let b), .v6(let b): b
            }
        }
    }

    public enum Transport: Sendable {
        case udp(sport: UInt16, dport: UInt16)
        case tcp(sport: UInt16, dport: UInt16, flags: TCPFlags)
        /// ICMP echo request (ICMPv6 for IPv6 addresses).
        case icmpEcho(id: UInt16, sequence: UInt16)
        /// Any ICMP (ICMPv6) message: type, code and the header's last four bytes
        /// (an echo's id and sequence, unused in errors); an error quotes its packet
        /// as the payload.
        case icmp(type: UInt8, code: UInt8, rest: UInt32)
        /// Another IP protocol: the payload follows the IP header as it is.
        case ip(proto: UInt8)
    }

    public struct TCPFlags: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let fin = TCPFlags(rawValue: 0x01)
        public static let syn = TCPFlags(rawValue: 0x02)
        public static let rst = TCPFlags(rawValue: 0x04)
        public static let psh = TCPFlags(rawValue: 0x08)
        public static let ack = TCPFlags(rawValue: 0x10)
    }

    public var source: Address
    public var destination: Address
    public var transport: Transport
    public var payload: [UInt8]
    public var sourceMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x01]
    public var destinationMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x02]
    public var ttl: UInt8 = 64
    /// IPv4's identification field (IPv6 has none).
    public var identification: UInt16 = 1
    /// TCP's sequence and acknowledgment numbers, for segments a stateful peer
    /// (conntrack's window tracking) must take as one connection's.
    public var sequence: UInt32 = 1
    public var acknowledgment: UInt32 = 0

    public init(from source: String, to destination: String, _ transport: Transport, payload: [UInt8] = []) {
        self.source = Address(source)
        self.destination = Address(destination)
        self.transport = transport
        self.payload = payload
    }

    /// "tcp 10.0.0.1:1000 > 10.0.0.2:80 [0x02]", for messages.
    public var description: String {
        let from = IPAddress.format(source.bytes), to = IPAddress.format(destination.bytes)
        return switch transport {
        case .udp(let sport, let dport): "udp \(from):\(sport) > \(to):\(dport)"
        case .tcp(let sport, let dport, let flags): "tcp \(from):\(sport) > \(to):\(dport) flags 0x\(String(flags.rawValue, radix: 16))"
        case .icmpEcho(let id, let sequence): "icmp echo \(from) > \(to) id \(id) seq \(sequence)"
        case .icmp(let type, let code, _): "icmp \(from) > \(to) type \(type) code \(code)"
        case .ip(let proto): "proto \(proto) \(from) > \(to)"
        }
    }

    /// Whether the packet is IPv6 (its source address says).
    public var isIPv6: Bool {
        if case .v6 = source { true } else { false }
    }

    /// The frame: Ethernet header, IP header, transport header, payload.
    public var bytes: [UInt8] {
        let (protocolNumber, segment) = transportSegment(isV6: isIPv6)
        var frame = destinationMAC + sourceMAC + (isIPv6 ? [0x86, 0xdd] : [0x08, 0x00])
        if isIPv6 {
            frame += [0x60, 0, 0, 0] + be16(UInt16(segment.count)) + [protocolNumber, ttl]
            frame += source.bytes + destination.bytes
        } else {
            var header: [UInt8] = [0x45, 0] + be16(UInt16(20 + segment.count)) + be16(identification) + [0x40, 0]
            header += [ttl, protocolNumber, 0, 0] + source.bytes + destination.bytes
            header.replaceSubrange(10..<12, with: be16(Self.checksum(header)))
            frame += header
        }
        return frame + segment
    }

    private func transportSegment(isV6: Bool) -> (UInt8, [UInt8]) {
        var segment: [UInt8]
        let protocolNumber: UInt8
        let checksumOffset: Int
        switch transport {
        case .udp(let sport, let dport):
            protocolNumber = 17
            segment = be16(sport) + be16(dport) + be16(UInt16(8 + payload.count)) + [0, 0] + payload
            checksumOffset = 6
        case .tcp(let sport, let dport, let flags):
            protocolNumber = 6
            segment = be16(sport) + be16(dport) + be32(sequence) + be32(acknowledgment)
            segment += [0x50, flags.rawValue] + be16(65535) + [0, 0, 0, 0] + payload
            checksumOffset = 16
        case .icmpEcho(let id, let sequence):
            protocolNumber = isV6 ? 58 : 1
            segment = [isV6 ? 128 : 8, 0, 0, 0] + be16(id) + be16(sequence) + payload
            checksumOffset = 2
        case .icmp(let type, let code, let rest):
            protocolNumber = isV6 ? 58 : 1
            segment = [type, code, 0, 0] + be32(rest) + payload
            checksumOffset = 2
        case .ip(let proto):
            return (proto, payload)
        }
        // IPv4 ICMP has no pseudo-header; every other checksum here covers one.
        let pseudo: [UInt8] = if protocolNumber == 1 {
            []
        } else if isV6 {
            source.bytes + destination.bytes + be32(UInt32(segment.count)) + [0, 0, 0, protocolNumber]
        } else {
            source.bytes + destination.bytes + [0, protocolNumber] + be16(UInt16(segment.count))
        }
        var sum = Self.checksum(pseudo + segment)
        if protocolNumber == 17 && sum == 0 { sum = 0xffff }
        segment.replaceSubrange(checksumOffset..<checksumOffset + 2, with: be16(sum))
        return (protocolNumber, segment)
    }

    /// The Internet checksum (RFC 1071) of `data`.
    public static func checksum(_ data: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < data.count {
            sum += UInt32(data[i]) << 8 | UInt32(data[i + 1])
            i += 2
        }
        if i < data.count { sum += UInt32(data[i]) << 8 }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}

func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }
func be32(_ value: UInt32) -> [UInt8] { be16(UInt16(value >> 16)) + be16(UInt16(value & 0xffff)) }
