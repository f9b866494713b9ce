import Testing
@testable import TailorSpec

@Suite("addresses and prefixes")
struct AddressTests {
    @Test("IPv4 and IPv6 text parses to network-order bytes", arguments: [
        ("10.0.0.1", [10, 0, 0, 1]),
        ("0.0.0.0", [0, 0, 0, 0]),
        ("255.255.255.255", [255, 255, 255, 255]),
        ("::", [UInt8](repeating: 0, count: 16)),
        ("::1", [UInt8](repeating: 0, count: 15) + [1]),
        ("fd00::1:2", [0xfd, 0] + [UInt8](repeating: 0, count: 10) + [0, 1, 0, 2]),
        ("1:2:3:4:5:6:7:8", [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]),
        ("::ffff:10.0.0.1", [UInt8](repeating: 0, count: 10) + [0xff, 0xff, 10, 0, 0, 1]),
        ("::10.0.0.1", [UInt8](repeating: 0, count: 12) + [10, 0, 0, 1]),
        ("1:2:3:4:5:6:10.0.0.1", [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 10, 0, 0, 1]),
    ] as [(String, [UInt8])])
    func parses(text: String, bytes: [UInt8]) {
        #expect(IPAddress.parse(text) == bytes)
    }

    @Test("malformed addresses are refused, leading zeros included (octal in some tools)", arguments: [
        "010.0.0.1", "10.0.0", "10.0.0.1.2", "10.0.0.256", "10..0.1", "1e1.0.0.1", "+1.0.0.1", "١٠.0.0.1",
        "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", ":::", "12345::", "+1::", "::ffff:10.0.0.256",
        ":10.0.0.1", "1:2:3:4:5:6:7:10.0.0.1", "fe80::1%eth0", "",
    ])
    func refuses(text: String) {
        #expect(IPAddress.parse(text) == nil, "\(text) was accepted")
    }

    @Test("a prefix's network clears the bits past its length", arguments: [
        ("10.1.2.3/8", "10.0.0.0/8"), ("10.1.2.3/32", "10.1.2.3/32"), ("10.1.2.3/0", "0.0.0.0/0"),
        ("192.168.255.255/20", "192.168.240.0/20"), ("fd00::1/16", "fd00::/16"),
    ])
    func network(text: String, network: String) throws {
        #expect(try #require(IPPrefix(text)).network.description == network)
    }

    @Test("a prefix with host bits set is kept as its network, with a warning")
    func hostBitsWarned() throws {
        var diagnostics = Diagnostics()
        let node = YAMLNode(value: .scalar("10.0.0.1/8"), location: SourceLocation(file: "f", line: 3, column: 9),
                            isQuoted: false, size: 1)
        let value = ConfigValidator.validate(node, as: .cidr, what: "src", diagnostics: &diagnostics)
        #expect(value?.prefixValue?.description == "10.0.0.0/8")
        #expect(diagnostics.all.map(\.description) == [
            "f:3:9: warning: 10.0.0.1/8 has bits set past /8, so src matches all of 10.0.0.0/8; write that, "
                + "or the longer prefix you meant",
        ])
    }

    @Test("IPv6 is written as RFC 5952 says: the longest run of zero groups (the first of equal ones) as ::",
          arguments: [
              ("::", "::"), ("::1", "::1"), ("fd00::", "fd00::"), ("fd00:0:0:1::2", "fd00:0:0:1::2"),
              ("1:0:0:2:0:0:0:3", "1:0:0:2::3"), ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"), ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
              ("FD00:ABCD::", "fd00:abcd::"), ("::ffff:10.0.0.1", "::ffff:a00:1"),
          ])
    func formatsIPv6(text: String, formatted: String) throws {
        #expect(IPAddress.format(try #require(IPAddress.parse(text))) == formatted)
    }

    @Test("MAC addresses need six two-digit hex groups", arguments: [
        ("02:00:00:00:00:01", true), ("02:00:00:00:00", false), ("2:0:0:0:0:1", false), ("02:00:00:00:00:0g", false),
    ])
    func mac(text: String, valid: Bool) {
        #expect((MACAddress.parse(text) != nil) == valid)
    }
}

@Suite("messages")
struct MessageTests {
    @Test("a likely typo gets a suggestion; a long or distant word does not")
    func suggestions() {
        #expect(suggestion(for: "dprot", among: ["sport", "dport", "proto"]) == "dport")
        #expect(suggestion(for: "xpd", among: ["xdp", "tc-ingress"]) == "xdp")
        #expect(suggestion(for: "banana", among: ["xdp", "tc-ingress"]) == nil)
        #expect(suggestion(for: String(repeating: "dport", count: 20), among: ["dport"]) == nil)
    }

    @Test("spec text quoted in a message is cut to a readable length")
    func excerpts() {
        #expect(excerpt("short") == "short")
        #expect(excerpt(String(repeating: "x", count: 1000)) == String(repeating: "x", count: 48) + "... (1000 bytes)")
    }

    @Test("a file's diagnostics stop at the limit with one that says so")
    func limit() {
        var diagnostics = Diagnostics(limit: 2)
        for line in 1...5 { diagnostics.error("e\(line)", at: SourceLocation(file: "f", line: line, column: 1)) }
        #expect(diagnostics.isFull)
        #expect(diagnostics.all.map(\.description) == [
            "f:1:1: error: e1", "f:2:1: error: e2", "f:3:1: error: too many errors in this file; stopped after 2",
        ])
    }
}
