import Foundation

/// An address prefix (CIDR): 4 or 16 address bytes in network order and a length in bits.
public struct IPPrefix: Sendable, Hashable, CustomStringConvertible {
    public var address: [UInt8]
    public var length: Int

    public init(address: [UInt8], length: Int) {
        self.address = address
        self.length = length
    }

    public var isIPv6: Bool { address.count == 16 }

    /// Parses "10.0.0.0/8", "fd00::/16", or a bare address (a host prefix).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress.parse(String(parts[0])) else { return nil }
        let bits = address.count * 8
        guard let length = parts.count == 2 ? Int(parts[1]) : bits, (0...bits).contains(length) else { return nil }
        self.init(address: address, length: length)
    }

    public var description: String { "\(IPAddress.format(address))/\(length)" }
}

/// IPv4 and IPv6 address text to and from network-order bytes.
public enum IPAddress {
    public static func parse(_ text: String) -> [UInt8]? {
        text.contains(":") ? parseV6(text) : parseV4(text)
    }

    static func parseV4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        let bytes = parts.compactMap { part -> UInt8? in
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII), part.allSatisfy(\.isNumber) else { return nil }
            return UInt8(part)
        }
        return bytes.count == 4 ? bytes : nil
    }

    static func parseV6(_ text: String) -> [UInt8]? {
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            let values = parts.compactMap { part -> UInt16? in part.count <= 4 ? UInt16(part, radix: 16) : nil }
            return values.count == parts.count ? values : nil
        }
        guard let head = groups(halves[0]), let tail = halves.count == 2 ? groups(halves[1]) : [] else { return nil }
        let missing = 8 - head.count - tail.count
        guard halves.count == 2 ? missing >= 1 : missing == 0 else { return nil }
        let all = head + Array(repeating: 0, count: missing) + tail
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    }

    public static func format(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: bytes.count, by: 2)
            .map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
    }
}

/// A MAC address "02:00:00:00:00:01" as 6 bytes.
public enum MACAddress {
    public static func parse(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        return parts.count == 6 && bytes.count == 6 ? bytes : nil
    }
}
