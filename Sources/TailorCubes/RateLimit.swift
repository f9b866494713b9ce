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
        config: Config.fields)

    /// A `ratelimit` config as the spec writes it.
    struct Config: ConfigObject {
        static let rate = ConfigKey("rate", .integer(1...1_000_000_000) as ConfigElement<UInt64>)
        static let burst = ConfigKey("burst", .integer(1...maxBurst) as ConfigElement<UInt64>)
        static let per = ConfigKey("per", .object as ConfigElement<Per>)
        static let drop = ConfigKey("drop", .list(.cidr, maxItems: 2 * maxListed))
        static let fields = [
            ConfigField(rate, required: true, doc: "Packets per second each source may send on average."),
            ConfigField(burst, required: true,
                        doc: "Packets a source may send at once (the bucket's size); a new source starts full."),
            ConfigField(per, doc: "Sources that share a bucket: addresses in one prefix of this length."),
            ConfigField(drop, doc: "Source prefixes whose packets are always dropped."),
        ]

        var rate: UInt64
        var burst: UInt64
        var per: Per
        var drop: [IPPrefix]

        init(rate: UInt64, burst: UInt64, per: Per = Per(), drop: [IPPrefix] = []) {
            (self.rate, self.burst, self.per, self.drop) = (rate, burst, per, drop)
        }

        init(_ config: ConfigReader) throws {
            rate = try config.required(Self.rate)
            burst = try config.required(Self.burst)
            per = try config[Self.per] ?? Per()
            drop = try config[Self.drop] ?? []
        }

        /// Prefix lengths one bucket covers.
        struct Per: ConfigObject {
            static let ipv4 = ConfigKey("ipv4", .integer(0...32) as ConfigElement<UInt8>)
            static let ipv6 = ConfigKey("ipv6", .integer(0...128) as ConfigElement<UInt8>)
            static let fields = [
                ConfigField(ipv4, doc: "Prefix length one IPv4 bucket covers (default 32)."),
                ConfigField(ipv6, doc: "Prefix length one IPv6 bucket covers (default 64)."),
            ]

            var ipv4: UInt8 = 32
            var ipv6: UInt8 = 64

            init() {}

            init(_ config: ConfigReader) throws {
                ipv4 = try config[Self.ipv4] ?? ipv4
                ipv6 = try config[Self.ipv6] ?? ipv6
            }
        }
    }

    /// The blueprint for a `ratelimit` config.
    static func blueprint(config: Config) throws -> CubeBlueprint {
        let (v4, v6, drop) = (config.per.ipv4, config.per.ipv6, config.drop)
        var blueprint = try blueprint(rate: config.rate, burst: config.burst, ipv4Prefix: v4, ipv6Prefix: v6, drop: drop)
        blueprint.config = .attributes([
            Config.rate.name: .int(Int(config.rate)), Config.burst.name: .int(Int(config.burst)),
            Config.per.name: .attributes([Config.Per.ipv4.name: .int(Int(v4)), Config.Per.ipv6.name: .int(Int(v6))]),
            Config.drop.name: .set(drop.map { .string($0.description) }),
        ])
        return blueprint
    }

    /// `drop` changes in place (entry-safe LPM tries); its entries are the prefixes.
    static let words = CubeWords(
        inPlace: { path, _ in path.first == Config.drop.name },
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
                                  + "\(listed.v4.count) and \(listed.v6.count)", at: [.key(Config.drop)])
        }
        let entries = { (prefixes: [IPPrefix]) in prefixes.map { TableEntry(key: $0.lpmKey, value: [1]) } }
        return try BuiltIn.blueprint(
            "ratelimit",
            rodata: ["rate_pps": littleEndian(rate), "burst": littleEndian(burst),
                     "v4_len": [ipv4Prefix], "v6_len": [ipv6Prefix]],
            tables: ["drop_v4": entries(listed.v4), "drop_v6": entries(listed.v6)])
    }
}
