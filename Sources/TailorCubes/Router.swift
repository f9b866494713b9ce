import TailorDatapath
import TailorSpec

/// router: static IPv4 and IPv6 routing (bpf/cubes/router.c). Its config names the
/// router's interfaces with the addresses Linux has on them (their connected
/// networks) and static routes via next hops on those networks. Everything the
/// router decides is one longest-prefix-match table per IP version, entry-safe: a
/// route added, changed or removed is one entry written on the live instance. The
/// interfaces' indexes are rodata (`CubeBlueprint.interfaces`): renaming or
/// reordering interfaces replaces the instance.
public enum Router {
    /// Interfaces one router names (TAILOR_MAX_INTERFACES in bpf/include/tailor/interfaces.h).
    public static let maxInterfaces = CubeBlueprint.maxInterfaces
    /// Next hops of one route (ROUTER_MAX_HOPS in router.c).
    public static let maxHops = 8
    /// Entries of each table (IPv4, IPv6): routes, connected networks, own addresses.
    public static let maxEntries = 16384

    public static let schema = CubeTypeSchema(
        name: "router",
        doc: "Routes IPv4 and IPv6 packets by longest prefix match to connected networks and static next hops "
            + "(ECMP by flow), decrementing the TTL; Linux resolves the next hops (ARP, ND). TC hooks only.",
        config: Config.fields)

    /// Why the router cannot run on XDP.
    public static let xdpRefusal = "the router runs on TC hooks only (tcIngress, tcEgress): it hands each packet to "
        + "Linux's neighbour table (bpf_redirect_neigh), which XDP programs cannot call"

    /// A `router` config as the spec writes it.
    struct Config: ConfigObject {
        static let interfaces = ConfigKey("interfaces", .list(.object as ConfigElement<Interface>, maxItems: maxInterfaces))
        static let routes = ConfigKey("routes", .list(.object as ConfigElement<Route>, maxItems: 2 * maxEntries))
        static let fields = [
            ConfigField(interfaces, required: true,
                        doc: "The interfaces the router forwards between, in the chain's namespace, with their addresses."),
            ConfigField(routes, doc: "Static routes: a destination prefix and the next hops it is reached by."),
        ]

        var interfaces: [Interface]
        var routes: [Route]

        init(interfaces: [Interface], routes: [Route]) { (self.interfaces, self.routes) = (interfaces, routes) }

        init(_ config: ConfigReader) throws {
            interfaces = try config.required(Self.interfaces)
            routes = try config[Self.routes] ?? []
        }

        struct Interface: ConfigObject {
            static let name = ConfigKey("name", .interfaceName)
            static let addresses = ConfigKey("addresses", .list(.interfaceAddress, maxItems: 64))
            static let fields = [
                ConfigField(name, required: true, doc: "The interface's name."),
                ConfigField(addresses, required: true,
                            doc: "Its addresses with their networks' lengths, as Linux has them (10.0.1.1/24): "
                                + "packets to them go to Linux, packets to their networks straight to the destination."),
            ]

            var name: String
            var addresses: [IPPrefix]

            init(name: String, addresses: [IPPrefix]) { (self.name, self.addresses) = (name, addresses) }

            init(_ config: ConfigReader) throws {
                name = try config.required(Self.name)
                addresses = try config.required(Self.addresses)
            }
        }

        struct Route: ConfigObject {
            static let to = ConfigKey("to", .cidr)
            static let via = ConfigKey("via", .list(.ipAddress, maxItems: maxHops))
            static let fields = [
                ConfigField(to, required: true, doc: "The destination prefix (0.0.0.0/0 or ::/0 for a default route)."),
                ConfigField(via, required: true,
                            doc: "Next hops on a connected network; with several, each flow keeps one (ECMP)."),
            ]

            var to: IPPrefix
            var via: [[UInt8]]

            init(to: IPPrefix, via: [[UInt8]]) { (self.to, self.via) = (to, via) }

            init(_ config: ConfigReader) throws {
                to = try config.required(Self.to)
                via = try config.required(Self.via)
            }
        }
    }

    /// What the table says of a destination (`struct route` in router.c, 168 bytes).
    struct Entry: Equatable {
        enum Kind: UInt8 { case via = 0, connected = 1, local = 2 }
        var kind: Kind
        /// The interface (an index into the config's `interfaces`) of a connected network.
        var port: Int = 0
        /// Next hops and the interface each is reached by.
        var hops: [(address: [UInt8], port: Int)] = []

        static let size = 8 + maxHops * 20

        static func == (a: Entry, b: Entry) -> Bool { a.encoded == b.encoded }

        var encoded: [UInt8] {
            var bytes = [UInt8](repeating: 0, count: Self.size)
            bytes[0] = kind.rawValue
            bytes[1] = UInt8(hops.count)
            bytes.replaceSubrange(4..<8, with: littleEndian(UInt32(port)))
            for (index, hop) in hops.enumerated() {
                let at = 8 + index * 20
                bytes.replaceSubrange(at..<at + hop.address.count, with: hop.address)
                bytes.replaceSubrange(at + 16..<at + 20, with: littleEndian(UInt32(hop.port)))
            }
            return bytes
        }

        /// The entry `encoded` wrote for an address of `family` bytes (4 or 16).
        init?(encoded bytes: [UInt8], family: Int) {
            guard bytes.count == Self.size, let kind = Kind(rawValue: bytes[0]), Int(bytes[1]) <= maxHops,
                  let port = littleEndianValue(Array(bytes[4..<8]), as: UInt32.self) else { return nil }
            self.kind = kind
            self.port = Int(port)
            hops = (0..<Int(bytes[1])).map { index in
                let at = 8 + index * 20
                return (Array(bytes[at..<at + family]),
                        Int(littleEndianValue(Array(bytes[at + 16..<at + 20]), as: UInt32.self) ?? 0))
            }
        }

        init(kind: Kind, port: Int = 0, hops: [(address: [UInt8], port: Int)] = []) {
            (self.kind, self.port, self.hops) = (kind, port, hops)
        }

        /// In the config's words: `via 10.0.2.2 (eth1)`, `connected (eth1)`, `local`.
        func words(interfaces: [String]) -> String {
            let name = { (port: Int) in port < interfaces.count ? interfaces[port] : "interface \(port)" }
            switch kind {
            case .local: return "local"
            case .connected: return "connected (\(name(port)))"
            case .via:
                return "via " + hops.map { "\(IPAddress.format($0.address)) (\(name($0.port)))" }.joined(separator: ", ")
            }
        }
    }

    /// The blueprint of a router between `interfaces` (name, addresses) with `routes`
    /// (destination, next hops' addresses), its interfaces not yet bound.
    public static func blueprint(interfaces: [(name: String, addresses: [IPPrefix])],
                                 routes: [(to: IPPrefix, via: [[UInt8]])] = []) throws -> CubeBlueprint {
        try blueprint(config: Config(interfaces: interfaces.map { Config.Interface(name: $0.name, addresses: $0.addresses) },
                                     routes: routes.map { Config.Route(to: $0.to, via: $0.via) }))
    }

    /// The blueprint for a `router` config.
    static func blueprint(config: Config) throws -> CubeBlueprint {
        let table = try table(config)
        let entries = { (v6: Bool) in
            table.filter { $0.key.isIPv6 == v6 }.sorted { $0.key.lpmKey.lexicographicallyPrecedes($1.key.lpmKey) }
                .map { TableEntry(key: $0.key.lpmKey, value: $0.value.encoded) }
        }
        var blueprint = try BuiltIn.blueprint("router", tables: ["routes_v4": entries(false), "routes_v6": entries(true)])
        blueprint.interfaces = config.interfaces.map(\.name)
        blueprint.config = document(config)
        return blueprint
    }

    /// Every destination the router knows: its own addresses (and IPv4 networks'
    /// broadcast addresses), its connected networks, its static routes. Errors name
    /// the address, network or route at fault.
    static func table(_ config: Config) throws -> [IPPrefix: Entry] {
        var table: [IPPrefix: Entry] = [:]
        var owner: [IPPrefix: (what: String, path: ConfigPath)] = [:]
        var errors: [CubeConfigError] = []
        let add = { (prefix: IPPrefix, entry: Entry, what: String, path: ConfigPath) in
            if let earlier = owner[prefix] {
                errors.append(CubeConfigError("\(what) \(prefix) is also the \(earlier.what) of "
                                              + "\(earlier.path.dotted)", at: path))
                return
            }
            (table[prefix], owner[prefix]) = (entry, (what, path))
        }
        var names: [String: Int] = [:]
        for (port, interface) in config.interfaces.enumerated() {
            let at: ConfigPath = [.key(Config.interfaces), .item(port)]
            if let first = names[interface.name] {
                errors.append(CubeConfigError("interface \(interface.name) is named twice (interfaces[\(first)])",
                                              at: ConfigPath(at.steps + [.key(Config.Interface.name)])))
            }
            names[interface.name] = names[interface.name] ?? port
            for (index, address) in interface.addresses.enumerated() {
                let path = ConfigPath(at.steps + [.key(Config.Interface.addresses), .item(index)])
                let host = IPPrefix(address: address.address, length: address.address.count * 8)
                add(host, Entry(kind: .local), "address", path)
                guard address.length < host.length else { continue }
                let known = owner[address.network] != nil
                add(address.network, Entry(kind: .connected, port: port), "connected network", path)
                // A network given twice is one error, not one more for its broadcast address.
                if !known && !address.isIPv6 && address.length <= 30 {
                    var broadcast = address.network.address
                    for bit in address.length..<32 { broadcast[bit / 8] |= 0x80 >> UInt8(bit % 8) }
                    add(IPPrefix(address: broadcast, length: 32), Entry(kind: .local), "broadcast address", path)
                }
            }
        }
        // A next hop's interface: the one whose connected network holds it, the longest first.
        let connected = table.filter { $0.value.kind == .connected }.sorted { $0.key.length > $1.key.length }
        for (index, route) in config.routes.enumerated() {
            let at: ConfigPath = [.key(Config.routes), .item(index)]
            var hops: [(address: [UInt8], port: Int)] = []
            for (item, hop) in route.via.enumerated() {
                let path = ConfigPath(at.steps + [.key(Config.Route.via), .item(item)])
                let address = IPAddress.format(hop)
                guard (hop.count == 16) == route.to.isIPv6 else {
                    errors.append(CubeConfigError("next hop \(address) is not of the IP version of \(route.to)", at: path))
                    continue
                }
                guard table[IPPrefix(address: hop, length: hop.count * 8)]?.kind != .local else {
                    errors.append(CubeConfigError("next hop \(address) is an address of the router itself", at: path))
                    continue
                }
                guard let network = connected.first(where: { $0.key.contains(hop) }) else {
                    errors.append(CubeConfigError("next hop \(address) is outside every connected network "
                                                  + "(the networks of the interfaces' addresses)", at: path))
                    continue
                }
                guard !hops.contains(where: { $0.address == hop }) else {
                    errors.append(CubeConfigError("next hop \(address) is listed twice", at: path))
                    continue
                }
                hops.append((hop, network.value.port))
            }
            guard hops.count == route.via.count else { continue }
            add(route.to, Entry(kind: .via, hops: hops), "route", at)
        }
        for v6 in [false, true] {
            let count = table.keys.filter { $0.isIPv6 == v6 }.count
            if count > maxEntries {
                errors.append(CubeConfigError("the router holds at most \(maxEntries) IPv\(v6 ? 6 : 4) destinations "
                                              + "(routes, networks and addresses), not \(count)", at: [.key(Config.routes)]))
            }
        }
        if !errors.isEmpty { throw CubeConfigErrors(errors: errors) }
        return table
    }

    /// The config in its normalised form: interfaces in order (their order is the
    /// rodata's), routes by destination.
    static func document(_ config: Config) -> ConfigDocument {
        .attributes([
            Config.interfaces.name: .list(config.interfaces.map { interface in
                .attributes([Config.Interface.name.name: .string(interface.name),
                             Config.Interface.addresses.name: .set(interface.addresses.map { .string($0.description) })])
            }),
            Config.routes.name: config.routes.isEmpty ? nil : .map(Dictionary(config.routes.map { route in
                (route.to.network.description,
                 ConfigDocument.attributes([Config.Route.via.name: .list(route.via.map { .string(IPAddress.format($0)) })]))
            }, uniquingKeysWith: { a, _ in a })),
        ])
    }

    /// Routes and addresses change in place; the interfaces' names and order are the
    /// instance's rodata. Table entries read as destinations and what they lead to.
    static let words = CubeWords(
        inPlace: { path, _ in
            path.first == Config.routes.name || path == [Config.interfaces.name, Config.Interface.addresses.name]
        },
        entry: { map, change, config in
            guard map == "routes_v4" || map == "routes_v6", let prefix = IPPrefix(lpmKey: change.key) else { return nil }
            let interfaces = config?[Config.interfaces.name]?.items?.compactMap { interface -> String? in
                if case .string(let name) = interface[Config.Interface.name.name] { name } else { nil }
            } ?? []
            let said = { (bytes: [UInt8]?) in
                bytes.map { Entry(encoded: $0, family: prefix.address.count)?.words(interfaces: interfaces) ?? hexDigest($0) }
            }
            return EntryWords(key: prefix.description, before: said(change.before), after: said(change.after))
        })
}

extension IPPrefix {
    /// Whether `address` (of the same IP version) is in this prefix.
    func contains(_ address: [UInt8]) -> Bool {
        address.count == self.address.count && IPPrefix(address: address, length: length).network == network
    }
}
