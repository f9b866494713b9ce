import Crypto
import Foundation
import Synchronization

/// One entry of a controller-owned table: key and value bytes as the map stores them.
public struct TableEntry: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]
    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

/// Everything needed to load one instance of a cube, apart from its place in the
/// chain: the object, its specialisation (rodata) and its tables. Cube control
/// planes (TailorCubes) produce blueprints from spec configs; the datapath does
/// not know cube types, so any object with BTF can be a cube.
public struct CubeBlueprint: Sendable, Equatable {
    /// The cube type, for messages ("filter", "object").
    public var type: String
    /// The ELF object.
    public let object: [UInt8]
    /// sha256 of the object alone: a change here means new code. Computed once,
    /// since planning and preparing compare it for every cube.
    public let objectDigest: String
    /// `const volatile` globals to set before load, by name.
    public var rodata: [String: [UInt8]]
    /// Entries of controller-owned tables, by map name: given, or built the first
    /// time they are asked for (`LazyTables`), then kept.
    public var tables: [String: [TableEntry]] { tableSource.entries(nil) }

    /// The entries of the tables `names` only: of lazy tables, only those are built.
    public func tables(_ names: Set<String>) -> [String: [TableEntry]] { tableSource.entries(names) }
    private var tableSource: TableSource
    /// Number of outputs the cube calls with tailor_next_port (1 for most cubes).
    public var outputs: Int
    /// State maps that start empty when the cube is replaced, instead of being
    /// carried over (`migration: {map: reset}`). Not part of the digest: it only
    /// matters when something else changes.
    public var resetState: Set<String> = []
    /// State maps shared with every other instance that names the same zone for
    /// the same map, in any chain (map name -> zone): see `StateZones`.
    public var sharedState: [String: String]
    /// Interfaces of the chain's namespace that the cube's config names, in the order
    /// of its `tailor_ifindex` (bpf/include/tailor/interfaces.h). Their indexes are
    /// looked up when the specs are reconciled (`bound(to:)`), so an interface made
    /// anew changes the digest and the instance is replaced with the new index.
    public var interfaces: [String] = []
    /// The indexes `bound(to:)` set, by interface (0: it does not exist); nil until then.
    public private(set) var interfaceIndexes: [String: UInt32]?
    /// The config the cube type made this from, normalised: recorded with the chain
    /// when the instance is committed, so later plans can show old values. Not part
    /// of the digest: it describes the instance, it does not build it.
    public var config: ConfigDocument?

    /// `objectDigest`, when the caller has it (built-in objects are hashed once), must
    /// be the sha256 of `object`.
    public init(type: String, object: [UInt8], objectDigest: String? = nil, rodata: [String: [UInt8]] = [:],
                tables: [String: [TableEntry]] = [:], outputs: Int = 1, sharedState: [String: String] = [:]) {
        self.type = type
        self.object = object
        self.objectDigest = objectDigest ?? CubeBlueprint.digest(of: object)
        self.rodata = rodata
        tableSource = TableSource(.given(tables))
        self.outputs = outputs
        self.sharedState = sharedState
    }

    /// A blueprint whose tables are built only when something needs their entries
    /// (loading or changing an instance, a deep observe): its digests hash each
    /// table's inputs in the table's place.
    public init(type: String, object: [UInt8], objectDigest: String? = nil, rodata: [String: [UInt8]] = [:],
                tables: LazyTables, outputs: Int = 1, sharedState: [String: String] = [:]) {
        self.init(type: type, object: object, objectDigest: objectDigest, rodata: rodata, outputs: outputs,
                  sharedState: sharedState)
        tableSource = TableSource(.lazy(tables))
    }

    /// This blueprint with `tailor_ifindex` set from `indexes` (interface name ->
    /// ifindex; a name it lacks gets 0, an interface that does not exist).
    public func bound(to indexes: [String: UInt32]) -> CubeBlueprint {
        guard !interfaces.isEmpty else { return self }
        var bound = self
        let found = interfaces.map { indexes[$0] ?? 0 }
        bound.interfaceIndexes = Dictionary(zip(interfaces, found), uniquingKeysWith: { a, _ in a })
        bound.rodata[Self.ifindexRodata] = (found + [UInt32](repeating: 0, count: Self.maxInterfaces - found.count))
            .flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        return bound
    }

    /// The rodata array of interface indexes, and its length (TAILOR_MAX_INTERFACES).
    static let ifindexRodata = "tailor_ifindex"
    public static let maxInterfaces = 8

    /// The names of the tables, known without building them.
    public var tableNames: Set<String> { tableSource.names }

    public static func == (a: CubeBlueprint, b: CubeBlueprint) -> Bool {
        // The object digest is the object's sha256: equal digests, equal objects.
        a.type == b.type && a.objectDigest == b.objectDigest && a.rodata == b.rodata
            && a.outputs == b.outputs && a.resetState == b.resetState && a.sharedState == b.sharedState
            && a.interfaces == b.interfaces
            && a.config == b.config && a.tableSource.sameEntries(as: b.tableSource)
    }

    /// The sha256 of an object, as `objectDigest` holds it.
    public static func digest(of object: [UInt8]) -> String { hexDigest(SHA256.hash(data: object)) }

    /// sha256 over the object digest, rodata and tables in a canonical order:
    /// two blueprints with the same digest load identical instances.
    public var digest: String { digest(excluding: []) }

    /// The digest without the tables in `excluded`: equal for two blueprints that
    /// differ only in the entries of those tables (entry-safe tables, changed in place).
    public func digest(excluding excluded: Set<String>) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(objectDigest.utf8))
        for (name, bytes) in rodata.sorted(by: { $0.key < $1.key }) {
            hasher.update(data: Array("r\(name)=\(bytes.count):".utf8) + bytes)
        }
        for (name, zone) in sharedState.sorted(by: { $0.key < $1.key }) {
            hasher.update(data: Array("s\(name)=\(zone);".utf8))
        }
        for name in interfaces { hasher.update(data: Array("i\(name);".utf8)) }
        let tables: [String: [TableEntry]]
        switch tableSource.content {
        case .given(let given): tables = given
        case .lazy(let lazy):
            // Each table's inputs stand for its entries.
            for (name, inputs) in lazy.inputs.sorted(by: { $0.key < $1.key }) where !excluded.contains(name) {
                hasher.update(data: Array("l\(name)=\(inputs.count):".utf8))
                hasher.update(data: inputs)
            }
            tables = [:]
        }
        for (name, entries) in tables.sorted(by: { $0.key < $1.key }) where !excluded.contains(name) {
            hasher.update(data: Array("t\(name)=\(entries.count):".utf8))
            Self.hash(entries, into: &hasher)
        }
        return hexDigest(hasher.finalize())
    }

    /// Per table, a sha256 that changes whenever its entries do, computed once per
    /// blueprint: of its entries (`tableDigest`), or of a lazy table's inputs (so
    /// comparing them builds nothing). What the record keeps of each table written,
    /// so a change leaves the tables it does not change alone.
    public var tableDigests: [String: String] { tableSource.digests() }

    /// The sha256 of a table's entries, whatever their order.
    public static func tableDigest(_ entries: [TableEntry]) -> String {
        var hasher = SHA256()
        hash(entries, into: &hasher)
        return hexDigest(hasher.finalize())
    }

    private static func hash(_ entries: [TableEntry], into hasher: inout SHA256) {
        // Entry order does not change a table's meaning; sort only when needed.
        let ordered = zip(entries, entries.dropFirst()).allSatisfy { !$1.key.lexicographicallyPrecedes($0.key) }
        for entry in ordered ? entries : entries.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            hasher.update(data: entry.key)
            hasher.update(data: entry.value)
        }
    }
}

/// Tables a cube type builds from its config when they are first needed: a
/// 10,000-rule firewall's take about 100 ms and tens of MiB to build, which
/// validating, planning and checking a chain in sync never need, and an edit
/// needs only for the tables it changes.
public struct LazyTables: Sendable {
    /// Per table, the bytes that determine its entries (the cube type's encoding of
    /// the config fields it is built from): equal inputs, equal entries.
    public let inputs: [String: [UInt8]]
    /// Builds the tables named (a subset of `inputs`' keys), and no others.
    let build: @Sendable (Set<String>) -> [String: [TableEntry]]

    public init(inputs: [String: [UInt8]], build: @escaping @Sendable (Set<String>) -> [String: [TableEntry]]) {
        (self.inputs, self.build) = (inputs, build)
    }
}

/// Where a blueprint's tables come from; a lazy source builds each table once, for
/// every copy of the blueprint.
final class TableSource: Sendable {
    enum Content: Sendable {
        case given([String: [TableEntry]])
        case lazy(LazyTables)
    }

    let content: Content
    private let built = Mutex<[String: [TableEntry]]>([:])
    private let digested = Mutex<[String: String]?>(nil)

    init(_ content: Content) { self.content = content }

    var names: Set<String> {
        switch content {
        case .given(let tables): Set(tables.keys)
        case .lazy(let lazy): Set(lazy.inputs.keys)
        }
    }

    /// The tables `names` (all when nil) that the source has.
    func entries(_ names: Set<String>?) -> [String: [TableEntry]] {
        switch content {
        case .given(let tables):
            return names.map { names in tables.filter { names.contains($0.key) } } ?? tables
        case .lazy(let lazy):
            let wanted = names.map { $0.intersection(lazy.inputs.keys) } ?? Set(lazy.inputs.keys)
            return built.withLock { built in
                let missing = wanted.subtracting(built.keys)
                if !missing.isEmpty {
                    let tables = lazy.build(missing)
                    precondition(Set(tables.keys) == missing, "built \(tables.keys.sorted()), asked for \(missing.sorted())")
                    built.merge(tables) { _, new in new }
                }
                return built.filter { wanted.contains($0.key) }
            }
        }
    }

    func digests() -> [String: String] {
        digested.withLock { digested in
            if let digested { return digested }
            let digests: [String: String]
            switch content {
            case .given(let tables): digests = tables.mapValues(CubeBlueprint.tableDigest)
            case .lazy(let lazy): digests = lazy.inputs.mapValues { hexDigest(SHA256.hash(data: [UInt8]("l".utf8) + $0)) }
            }
            digested = digests
            return digests
        }
    }

    /// Equal entries: for two lazy sources, equal inputs (without building them).
    func sameEntries(as other: TableSource) -> Bool {
        if case .lazy(let a) = content, case .lazy(let b) = other.content { return a.inputs == b.inputs }
        return entries(nil) == other.entries(nil)
    }
}

/// Lower-case hex of `bytes` (digests, table keys and values in plans). Built by
/// hand: String(format:) costs microseconds per byte, which planning pays per cube.
public func hexDigest<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.underestimatedCount * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0xf)])
    }
    return String(decoding: out, as: UTF8.self)
}
