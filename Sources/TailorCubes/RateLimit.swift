import TailorDatapath
import TailorSpec

/// ratelimit: a token bucket per source address or prefix, and a drop list of
/// source prefixes (bpf/cubes/ratelimit.c). Rate, burst and the prefix lengths
/// are specialised into the program (a change replaces the instance; the buckets
/// are carried over); the drop list is an entry-safe table, changed in place.
public enum RateLimit {
    /// Entries each drop list (IPv4, IPv6) holds (max_entries in ratelimit.c).
    public static let maxListed = 16384
    /// Bucket sizes beyond this would overflow the fixed-point arithmetic's headroom.
    public static let maxBurst = 1_000_000_000

    public static let schema = CubeTypeSchema(
        name: "ratelimit",
        doc: "Drops packets over a per-source token bucket (rate, burst) and from listed source prefixes.",
        config: [
            ConfigField("rate", .integer(1...1_000_000_000), required: true,
                        doc: "Packets per second each source may send on average."),
            ConfigField("burst", .integer(1...maxBurst), required: true,
                        doc: "Packets a source may send at once (the bucket's size); a new source starts full."),
            ConfigField("per", .object([
                ConfigField("ipv4", .integer(0...32), doc: "Prefix length one IPv4 bucket covers (default 32)."),
                ConfigField("ipv6", .integer(0...128), doc: "Prefix length one IPv6 bucket covers (default 64)."),
            ]), doc: "Sources that share a bucket: addresses in one prefix of this length."),
            ConfigField("drop", .list(.cidr, maxItems: 2 * maxListed),
                        doc: "Source prefixes whose packets are always dropped."),
        ])

    /// The blueprint for a validated `ratelimit` config.
    public static func blueprint(config: ConfigValue) throws -> CubeBlueprint {
        let (rate, burst) = (config["rate"]?.integerValue ?? 1, config["burst"]?.integerValue ?? 1)
        let (v4, v6) = (config["per"]?["ipv4"]?.integerValue ?? 32, config["per"]?["ipv6"]?.integerValue ?? 64)
        let drop = (config["drop"]?.listValue ?? []).compactMap(\.prefixValue)
        var blueprint = try blueprint(rate: UInt64(rate), burst: UInt64(burst), ipv4Prefix: UInt8(v4),
                                      ipv6Prefix: UInt8(v6), drop: drop)
        blueprint.config = .attributes([
            "rate": .int(rate), "burst": .int(burst), "per": .attributes(["ipv4": .int(v4), "ipv6": .int(v6)]),
            "drop": .set(drop.map { .string($0.description) }),
        ])
        return blueprint
    }

    /// `drop` changes in place (entry-safe LPM tries); its entries are the prefixes.
    static let words = CubeWords(
        inPlace: { path, _ in path.first == "drop" },
        entry: { map, change, _ in
            guard map == "drop_v4" || map == "drop_v6", let prefix = IPPrefix(lpmKey: change.key) else { return nil }
            // The value is 1 for a listed prefix: only another value says something.
            let value = { (bytes: [UInt8]?) in bytes.flatMap { $0 == [1] ? nil : hexDigest($0) } }
            return EntryWords(key: prefix.description, before: value(change.before), after: value(change.after))
        })

    public static func blueprint(rate: UInt64, burst: UInt64, ipv4Prefix: UInt8 = 32, ipv6Prefix: UInt8 = 64,
                                 drop: [IPPrefix] = []) throws -> CubeBlueprint {
        guard rate >= 1, (1...UInt64(maxBurst)).contains(burst) else {
            throw CubeConfigError("rate must be at least 1 packet/s and burst between 1 and \(maxBurst) packets")
        }
        guard ipv4Prefix <= 32, ipv6Prefix <= 128 else {
            throw CubeConfigError("per-source prefix lengths are at most 32 (IPv4) and 128 (IPv6)")
        }
        let listed = (v4: drop.filter { !$0.isIPv6 }, v6: drop.filter(\.isIPv6))
        guard listed.v4.count <= maxListed, listed.v6.count <= maxListed else {
            throw CubeConfigError("a drop list holds at most \(maxListed) IPv4 and \(maxListed) IPv6 prefixes, not "
                                  + "\(listed.v4.count) and \(listed.v6.count)", at: ["drop"])
        }
        let entries = { (prefixes: [IPPrefix]) in prefixes.map { TableEntry(key: $0.lpmKey, value: [1]) } }
        return try BuiltIn.blueprint(
            "ratelimit",
            rodata: ["rate_pps": littleEndian(rate), "burst": littleEndian(burst),
                     "v4_len": [ipv4Prefix], "v6_len": [ipv6Prefix]],
            tables: ["drop_v4": entries(listed.v4), "drop_v6": entries(listed.v6)])
    }
}
