import Foundation
import TailorKernel

/// A cube instance as the chain's meta record describes it: where it sits, what it
/// was loaded from, and who owns each of its maps.
public struct CubeRecord: Sendable, Equatable, Codable {
    public var type: String
    public var slot: Int
    /// Per output, the slot it tail-calls, or nil where the path ends.
    public var next: [Int?]
    /// The blueprint digest (object, rodata, tables).
    public var digest: String
    /// The object's own digest: a change here means new code.
    public var objectDigest: String
    /// The blueprint digest without the tables that change in place (entry-safe,
    /// versioned, content-keyed): while it stays the same, a change of those tables'
    /// entries is made on the live instance. Nil: no such tables.
    public var fixedDigest: String?
    /// The kernel's id of the instance's program when it was committed.
    public var program: UInt32
    /// Map name -> role, as the object's BTF said at load.
    public var maps: [String: MapRole]
    /// State maps shared through a zone (map name -> zone); nil when none are.
    public var zones: [String: String]?
    /// The sha256 of the config the instance was committed with, as the chain's
    /// `ConfigStore` holds it: observe reads that config only if its bytes match.
    /// Nil when the blueprint had none, or the record predates recorded configs.
    public var configDigest: String?
    /// Per table that changes in place, the digest of what was last written
    /// (`CubeBlueprint.tableDigests`): a change writes only the tables whose digest it
    /// changes, and reads no other. Nil in records written before tailor kept them.
    public var tableDigests: [String: String]?
    /// The index each interface the config names had when the instance was loaded
    /// (`CubeBlueprint.interfaceIndexes`); nil when it names none.
    public var interfaces: [String: UInt32]?

    public init(type: String, slot: Int, next: [Int?], digest: String, objectDigest: String,
                fixedDigest: String? = nil, program: UInt32, maps: [String: MapRole], zones: [String: String]? = nil,
                configDigest: String? = nil) {
        (self.type, self.slot, self.next, self.digest, self.objectDigest, self.fixedDigest, self.program, self.maps) =
            (type, slot, next, digest, objectDigest, fixedDigest, program, maps)
        self.zones = zones
        self.configDigest = configDigest
    }

    /// Names of the tables whose entries change on the live instance.
    public var inPlaceTables: Set<String> { Set(maps.filter(\.value.changesInPlace).keys) }

    /// The digests of `blueprint`'s in-place tables, as `tableDigests` keeps them
    /// (a table the blueprint leaves empty has the digest of no entries).
    func inPlaceDigests(of blueprint: CubeBlueprint) -> [String: String] {
        let digests = blueprint.tableDigests
        return Dictionary(uniqueKeysWithValues: inPlaceTables.map { ($0, digests[$0] ?? CubeBlueprint.tableDigest([])) })
    }

    /// Whether `blueprint` differs from this instance's only in entries of tables that change in place.
    public func differsOnlyInEntries(from blueprint: CubeBlueprint, digest: String) -> Bool {
        guard digest != self.digest, let fixedDigest, blueprint.objectDigest == objectDigest else { return false }
        return blueprint.digest(excluding: inPlaceTables) == fixedDigest
    }

    var live: LiveInstance { LiveInstance(slot: slot, digest: digest, next: next) }
}

/// The chain's meta record, pinned at `<chain>/meta`: what the controller last
/// committed, so observe can tell the chain tailor built from what the kernel holds
/// now. It is a description, never the truth: observe checks every claim in it
/// against the prog_array, the pins and the attachment.
public struct ChainRecord: Sendable, Equatable, Codable {
    public static let currentVersion = 1

    public var version = ChainRecord.currentVersion
    public var settings: ChainSettings
    /// Digest of the desired state the chain was applied from, and the git revision.
    public var specDigest: String?
    public var gitRevision: String?
    public var cubes: [String: CubeRecord]
    /// Set while a change is being committed; left behind if the controller died
    /// half-way, so the next controller can finish or undo it (`Chain.recover`).
    public var pending: PendingCommit?
    /// Object digest -> state map -> its declared layout: what a replacement compares
    /// the new object's declaration with. Kept per object, not per cube, since many
    /// cubes share one object. Nil in records written before tailor kept them (their
    /// layouts are then read from the maps' BTF, which needs CAP_SYS_ADMIN).
    public var layouts: [String: [String: MapLayout]]?

    public init(settings: ChainSettings, specDigest: String? = nil, gitRevision: String? = nil,
                cubes: [String: CubeRecord] = [:], pending: PendingCommit? = nil,
                layouts: [String: [String: MapLayout]]? = nil) {
        self.settings = settings
        self.specDigest = specDigest
        self.gitRevision = gitRevision
        self.cubes = cubes
        self.pending = pending
        self.layouts = layouts
    }

    /// The state map layouts of `instances`, by object digest; nil when none has any.
    static func layouts(of instances: [CubeInstance]) -> [String: [String: MapLayout]]? {
        var layouts: [String: [String: MapLayout]] = [:]
        for instance in instances where !instance.stateLayouts.isEmpty {
            layouts[instance.record.objectDigest] = instance.stateLayouts
        }
        return layouts.isEmpty ? nil : layouts
    }

    /// The configs the record names, committed or pending: what the chain's
    /// `ConfigStore` must hold while this record is the chain's.
    var configDigests: Set<String> {
        Set(cubes.values.compactMap(\.configDigest) + (pending?.cubes.values.compactMap(\.configDigest) ?? []))
    }

    /// The record without layouts of objects no cube (committed or pending) uses.
    var trimmed: ChainRecord {
        var record = self
        let used = Set(cubes.values.map(\.objectDigest)).union(pending?.cubes.values.map(\.objectDigest) ?? [])
        record.layouts = layouts?.filter { used.contains($0.key) }
        if record.layouts?.isEmpty == true { record.layouts = nil }
        return record
    }
}

/// A commit in progress, as the meta record keeps it until the commit is done.
public struct PendingCommit: Sendable, Equatable, Codable {
    /// The cubes after the commit; new instances are pinned under `staging/` until then.
    public var cubes: [String: CubeRecord]
    /// The slot whose write switches packets to the new path.
    public var commitSlot: Int?

    public init(cubes: [String: CubeRecord], commitSlot: Int?) {
        self.cubes = cubes
        self.commitSlot = commitSlot
    }
}

/// The pinned one-entry array that holds a chain's record as JSON: a 4-byte length,
/// then the bytes. One map update replaces the whole record.
struct MetaMap {
    static let capacity = 1 << 16
    let map: BPFMap

    static func create() throws -> MetaMap {
        MetaMap(map: try BPFMap.create(.array, name: "tailor_chain", keySize: 4, valueSize: capacity, maxEntries: 1))
    }

    func write(_ record: ChainRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = [UInt8](try encoder.encode(record.trimmed))
        guard json.count + 4 <= Self.capacity else {
            throw DatapathError(.recordTooLarge, chain: record.settings.name,
                "its meta record is \(json.count) bytes, more than the \(Self.capacity - 4) the meta map holds")
        }
        var value = withUnsafeBytes(of: UInt32(json.count).littleEndian, Array.init) + json
        value += [UInt8](repeating: 0, count: Self.capacity - value.count)
        try map.update([0, 0, 0, 0], value)
    }

    func read() throws -> ChainRecord? {
        guard let value = try map.lookup([0, 0, 0, 0]), value.count >= 4 else { return nil }
        let length = Int(value.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }.littleEndian)
        guard length > 0, length + 4 <= value.count else { return nil }
        return try JSONDecoder().decode(ChainRecord.self, from: Data(value[4..<4 + length]))
    }
}

/// Reads a chain's meta record from its pin, for observing without adopting.
public enum MetaRecordReader {
    public static func read(_ pin: String) throws -> ChainRecord? {
        try MetaMap(map: BPFMap(pinnedAt: pin)).read()
    }

    /// The live chains under `pinRoot` whose record reads, by name, sorted; leftovers
    /// of interrupted applies (`_creating-`, `_removing-`) are not live chains.
    static func live(under pinRoot: PinRoot) -> [(name: String, record: ChainRecord)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: pinRoot.path)) ?? []
        return names.sorted().filter { !$0.hasPrefix("_") }.compactMap { name in
            let meta = ChainPins(name, under: pinRoot)[.meta]
            guard pinRoot.exists(meta), let record = try? read(meta) else { return nil }
            return (name, record)
        }
    }
}
