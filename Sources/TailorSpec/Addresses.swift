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
        let slash = text.utf8.firstIndex(of: UInt8(ascii: "/"))
        guard let address = IPAddress.parse(slash.map { text[..<$0] } ?? text[...]) else { return nil }
        let bits = address.count * 8
        var length = bits
        if let slash {
            let digits = text.utf8[text.utf8.index(after: slash)...]
            guard (1...3).contains(digits.count), digits.allSatisfy({ (48...57).contains($0) }),
                  let parsed = Int(Substring(digits)), parsed <= bits else { return nil }
            length = parsed
        }
        self.init(address: address, length: length)
    }

    public var description: String { "\(IPAddress.format(address))/\(length)" }

    /// Whether no bit past `length` is set, so the prefix is its own network.
    public var isNetwork: Bool {
        address.indices.allSatisfy { index in
            let kept = min(max(length - index * 8, 0), 8)
            return kept == 8 || address[index] & (UInt8.max >> kept) == 0
        }
    }

    /// The prefix with the bits past `length` cleared: what a match on it compares.
    public var network: IPPrefix {
        let bytes = address.enumerated().map { index, byte -> UInt8 in
            let kept = min(max(length - index * 8, 0), 8)
            return kept == 8 ? byte : byte & ~(UInt8.max >> kept)
        }
        return IPPrefix(address: bytes, length: length)
    }
}

/// IPv4 and IPv6 address text to and from network-order bytes.
public enum IPAddress {
    public static func parse(_ text: String) -> [UInt8]? { parse(text[...]) }

    static func parse(_ text: Substring) -> [UInt8]? {
        text.utf8.contains(UInt8(ascii: ":")) ? parseV6(text) : parseV4(text)
    }

    /// Dotted quads only. A leading zero is refused: some tools read "010" as octal
    /// (8), so a firewall rule must not depend on which reading applies. Read byte
    /// by byte: filters hold thousands of these.
    static func parseV4(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4)
        var value = 0, digits = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                guard digits == 0 || value != 0 else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
                guard value <= 255 else { return nil }
            case UInt8(ascii: "."):
                guard digits > 0, bytes.count < 3 else { return nil }
                bytes.append(UInt8(value))
                (value, digits) = (0, 0)
            default:
                return nil
            }
        }
        guard digits > 0, bytes.count == 3 else { return nil }
        bytes.append(UInt8(value))
        return bytes
    }

    /// RFC 4291 text: eight groups, one `::`, and an IPv4 address in the last 32 bits
    /// (`::ffff:10.0.0.1`).
    static func parseV6(_ text: Substring) -> [UInt8]? {
        var text = text
        var v4: [UInt16] = []
        if let lastColon = text.lastIndex(of: ":"), text[lastColon...].contains(".") {
            guard let bytes = parseV4(text[text.index(after: lastColon)...]) else { return nil }
            v4 = [UInt16(bytes[0]) << 8 | UInt16(bytes[1]), UInt16(bytes[2]) << 8 | UInt16(bytes[3])]
            // Keep a `::` that ends right before the IPv4 part.
            text = text[...lastColon]
            if !text.hasSuffix("::") { text = text.dropLast() }
        }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            let values = parts.compactMap { part -> UInt16? in
                (1...4).contains(part.utf8.count) && part.allSatisfy(\.isHexDigit) ? UInt16(part, radix: 16) : nil
            }
            return values.count == parts.count ? values : nil
        }
        guard let head = groups(halves[0]), let tail = halves.count == 2 ? groups(halves[1]) : [] else { return nil }
        let missing = 8 - head.count - tail.count - v4.count
        guard halves.count == 2 ? missing >= 1 : missing == 0 else { return nil }
        let all = head + Array(repeating: 0, count: missing) + tail + v4
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    }

    /// Dotted quad, or RFC 5952 text for IPv6: the longest run of two or more zero
    /// groups (the first of equal runs) written as `::`.
    public static func format(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        let groups = stride(from: 0, to: bytes.count, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
        var best: Range<Int> = 0..<0
        var start = 0
        while start < groups.count {
            var end = start
            while end < groups.count && groups[end] == 0 { end += 1 }
            if end - start > best.count { best = start..<end }
            start = end + 1
        }
        let text = { (range: ArraySlice<UInt16>) in range.map { String($0, radix: 16) }.joined(separator: ":") }
        guard best.count >= 2 else { return text(groups[...]) }
        return text(groups[..<best.lowerBound]) + "::" + text(groups[best.upperBound...])
    }
}

/// A MAC address "02:00:00:00:00:01" as 6 bytes.
public enum MACAddress {
    public static func parse(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        return parts.count == 6 && bytes.count == 6 ? bytes : nil
    }

    public static func format(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }
}
