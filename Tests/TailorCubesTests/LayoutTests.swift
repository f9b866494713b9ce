import Testing
@testable import TailorCubes
import TailorDatapath
import TailorKernel
import TailorSpec

/// The built-in cubes encode their table entries by hand (byte offsets, word
/// counts); the C structs they mirror are in bpf/. These tests read the compiled
/// objects' BTF, so a C change the Swift side does not follow (a field moved,
/// resized or added) fails here instead of mis-encoding entries silently.
@Suite("hand-encoded table layouts agree with the objects' BTF")
struct LayoutTests {
    /// Checks that every entry of every table `blueprint` writes has the key and
    /// value size its map is declared with in the blueprint's object. Entries are
    /// logical: a versioned table's generation is added to the key when it is
    /// written (a byte of an LPM trie's key data, a __u32 before a hash key).
    static func entriesFitMaps(_ blueprint: CubeBlueprint) throws {
        let object = try BPFObject(bytes: blueprint.object, name: blueprint.type)
        let maps = Dictionary(object.maps.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let tags = try object.btf().variableTags()
        #expect(!blueprint.tables.isEmpty)
        for (table, entries) in blueprint.tables {
            let map = try #require(maps[table], "\(blueprint.type) writes table \(table), which its object lacks")
            let versioned = tags[table]?.contains("tailor:table:versioned") == true
            let generation = !versioned ? 0 : map.type == .lpmTrie ? 1 : map.type == .hash ? 4 : 0
            for entry in entries {
                let sizes = "\(entry.key.count)+\(generation)/\(entry.value.count) bytes, map declares "
                    + "\(map.keySize)/\(map.valueSize)"
                #expect(entry.key.count + generation == map.keySize && entry.value.count == map.valueSize,
                        "\(blueprint.type).\(table): entry of \(sizes)")
            }
        }
    }

    /// A rule whose every field holds a value no other field holds.
    static let rule = Filter.Rule(
        ipv6: true, proto: 17, source: IPPrefix("2001:db8:1::/48"), destination: IPPrefix("2001:db8:2:3::/64"),
        sourcePorts: 0x1122...0x3344, destinationPorts: 0x5566...0x7788, tcpFlags: (mask: 0x12, value: 0x02),
        action: .drop)

    @Test("struct tailor_rule: each field of a filter or classifier rule is where BTF puts it")
    func tailorRule() throws {
        let blueprints = [try Filter.blueprint(rules: [Self.rule], defaultAction: .pass),
                          try Classifier.blueprint(rules: [(Self.rule, 1)], defaultOutput: 0, outputs: 2)]
        for blueprint in blueprints {
            try Self.entriesFitMaps(blueprint)
            let fields = Dictionary(
                try BPFObject(bytes: blueprint.object, name: blueprint.type).btf().fields(ofStruct: "tailor_rule")
                    .map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let encoded = try #require(blueprint.tables["rules"]?.first?.value)
            let at = { (name: String) throws -> [UInt8] in
                let field = try #require(fields[name], "struct tailor_rule has no field \(name)")
                return Array(encoded[field.offset..<field.offset + field.size])
            }
            let u16 = { (value: UInt16) in [UInt8(value & 0xff), UInt8(value >> 8)] }
            let expected: [String: [UInt8]] = [
                "family": [6], "proto": [17], "src_len": [48], "dst_len": [64],
                "src": [0x20, 0x01, 0x0d, 0xb8, 0, 1] + [UInt8](repeating: 0, count: 10),
                "dst": [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 3] + [UInt8](repeating: 0, count: 8),
                "sport_lo": u16(0x1122), "sport_hi": u16(0x3344), "dport_lo": u16(0x5566), "dport_hi": u16(0x7788),
                "tcp_flags_mask": [0x12], "tcp_flags_value": [0x02], "verdict": [1], "pad": [0],
            ]
            // Every field of the C struct is one the encoder fills, and the struct is no larger.
            #expect(Set(fields.keys) == Set(expected.keys), "\(blueprint.type): \(fields.keys.sorted())")
            for (name, bytes) in expected.sorted(by: { $0.key < $1.key }) {
                #expect(try at(name) == bytes, "\(blueprint.type): tailor_rule.\(name)")
            }
            #expect(encoded.count == fields.values.map { $0.offset + $0.size }.max())
        }
    }

    @Test("ratelimit's drop lists: IPv4 and IPv6 prefixes at the tries' key sizes")
    func rateLimitDropLists() throws {
        let drop = ["198.51.100.0/24", "2001:db8::/32"].compactMap { IPPrefix($0) }
        #expect(drop.count == 2)
        try Self.entriesFitMaps(try RateLimit.blueprint(rate: 100, burst: 10, drop: drop))
    }

    @Test("struct fw_vector and every firewall table: the summary, then the rule bits, at the object's sizes")
    func firewallVector() throws {
        let rules = (0..<70).map { (index: Int) -> Firewall.Rule in
            let port = UInt16(1000 + index)
            let match = Filter.Rule(proto: 6, destination: IPPrefix("10.0.\(index).0/24"),
                                    destinationPorts: port...port, action: .drop)
            let states: Set<Firewall.ConnectionState>? = index == 0 ? [.new] : nil
            return Firewall.Rule(match, states: states, action: index % 2 == 0 ? .drop : .accept)
        }
        let blueprint = try Firewall.blueprint(rules: rules, policy: .drop)
        try Self.entriesFitMaps(blueprint)
        let fields: [BTFField] = try BPFObject(bytes: blueprint.object, name: "firewall").btf()
            .fields(ofStruct: "fw_vector")
        #expect(fields.map { $0.name } == ["summary", "bits"])
        #expect(fields.map { $0.offset } == [0, Firewall.summaryWords * 8])
        #expect(fields.map { $0.size } == [Firewall.summaryWords * 8, Firewall.maxWords * 8])
        // Rule 69 alone: bit 5 of word 1, and bit 1 of the summary.
        var vector = RuleVector(words: Firewall.Tables.words(70))
        vector.insert(69)
        let encoded = vector.encoded
        let word = { (offset: Int) in (0..<8).reduce(UInt64(0)) { $0 | UInt64(encoded[offset + $1]) << (8 * $1) } }
        #expect(word(fields[0].offset) == 1 << 1)
        #expect(word(fields[1].offset + 8) == 1 << 5)
        #expect(encoded.count == fields[1].offset + fields[1].size)
    }
}
