import TailorKernel

/// Who owns a map of a cube object, as the object's BTF says (bpf/include/tailor/cube.h).
public enum MapRole: String, Sendable, Equatable, Codable {
    /// Filled by the controller from the spec; a change replaces the instance.
    case table
    /// A table whose entries are independent: changed entry by entry in place.
    case entrySafeTable = "table-entry-safe"
    /// A table of two generations, changed in place with its cube's other versioned
    /// tables by switching generations (`TableGenerations`).
    case versionedTable = "table-versioned"
    /// A table whose keys are derived from their values, shared by both generations:
    /// entries are added before a switch and removed after it.
    case contentKeyedTable = "table-content-keyed"
    /// The generation word of a cube with versioned tables (`tailor_generation`).
    case generation
    /// Owned by the datapath; carried over when the cube is replaced. Maps without a
    /// tag are treated as state: the controller never overwrites what it does not own.
    case state
    /// Shared by the whole chain (its prog_array and packet metadata).
    case chain
    /// libbpf's global-data maps (.rodata, .bss, .data).
    case internalData = "internal"

    public var isTable: Bool { self == .table || changesInPlace }

    /// Tables whose entries change on the live instance.
    public var changesInPlace: Bool { [.entrySafeTable, .versionedTable, .contentKeyedTable].contains(self) }
}

/// Names the ABI gives the maps and rodata every cube carries.
enum ABI {
    static let progs = "tailor_progs"
    static let meta = "tailor_meta"
    static let counters = "tailor_counters"
    static let generation = "tailor_generation"
    static let nextSlot = "tailor_next_slot"
    static let defaultVerdict = "tailor_default_verdict"
    static let failOpen = "tailor_fail_open"
    static let maxPorts = 8
    static let slotEnd: UInt32 = 0xffff_ffff
    static let progSlots = 256
}

/// A cube instance in the kernel: loaded and verified with its wiring baked in,
/// or adopted from the pins of an earlier run.
final class CubeInstance {
    let cube: String
    let program: Program
    /// The instance's maps by declared name, chain-shared and internal maps excluded.
    let maps: [String: BPFMap]
    var record: CubeRecord
    /// The declared layouts of the instance's state maps, kept in the chain's record
    /// so a later replacement can compare them without opening the maps' BTF by id.
    /// Empty for an instance adopted from a record that predates them.
    let stateLayouts: [String: MapLayout]
    /// The entries of the tables that change in place as this process last wrote
    /// them; nil for an adopted instance (read from the kernel when needed).
    var knownTables: [String: [TableEntry]]?

    init(cube: String, program: Program, maps: [String: BPFMap], record: CubeRecord,
         stateLayouts: [String: MapLayout], knownTables: [String: [TableEntry]]? = nil) {
        self.cube = cube
        self.program = program
        self.maps = maps
        self.record = record
        self.stateLayouts = stateLayouts
        self.knownTables = knownTables
    }

    /// The instance's versioned tables; nil when it has none.
    var generations: TableGenerations? {
        get throws { try TableGenerations(maps: maps, roles: record.maps) }
    }

    /// Roles of an object's maps, from its BTF decl tags.
    static func roles(of object: borrowing BPFObject) throws -> [String: MapRole] {
        let tags = try object.btf().variableTags()
        var roles: [String: MapRole] = [:]
        for map in object.maps {
            let own = tags[map.name] ?? []
            roles[map.name] = if map.isInternal {
                .internalData
            } else if map.name == ABI.progs || map.name == ABI.meta {
                .chain
            } else if map.name == ABI.generation {
                .generation
            } else if own.contains("tailor:table:entry-safe") {
                .entrySafeTable
            } else if own.contains("tailor:table:versioned") {
                .versionedTable
            } else if own.contains("tailor:table:content-keyed") {
                .contentKeyedTable
            } else if own.contains("tailor:table") {
                .table
            } else {
                .state
            }
        }
        return roles
    }

    /// Loads `blueprint` as cube `cube` for `hook`, wired as `record` says, sharing
    /// the chain's maps and taking over the maps in `carry` instead of creating them.
    /// The kernel verifies the program here; nothing is reachable by packets yet.
    /// Without `fillingTables` (a plan's check of the program) the tables are only
    /// checked to be the object's, not built or written. Tables in `carry` (a path
    /// copy takes over every map) hold the live instance's entries: they are not
    /// built either.
    static func load(
        _ blueprint: CubeBlueprint, as cube: String, hook: ChainHook, wiring: LiveInstance,
        settings: ChainSettings, shared: SharedMaps, carry: [String: BPFMap], fillingTables: Bool = true
    ) throws -> CubeInstance {
        var object = try BPFObject(bytes: blueprint.object, name: "\(cube) (\(blueprint.type))")
        let program = try hookProgram(in: object, for: hook, cube: cube)
        try object.loadOnly([program])
        let roles = try roles(of: object)
        // Read before any map is reused: libbpf then renames it to the kernel's 15 characters.
        let stateLayouts = try MapLayout.declared(in: object).filter { roles[$0.key] == .state }.mapValues(\.shape)
        guard roles[ABI.progs] == .chain, roles[ABI.meta] == .chain else {
            throw DatapathError(.notACubeObject, chain: settings.name, cube: cube,
                "its object does not include <tailor/cube.h> (no \(ABI.progs)/\(ABI.meta) maps), "
                + "so it cannot be chained")
        }
        try wire(&object, next: wiring.next, settings: settings)
        for (name, bytes) in blueprint.rodata { try object.setRodata(name, to: bytes) }
        try object.reuse(map: ABI.progs, with: shared.progs)
        try object.reuse(map: ABI.meta, with: shared.meta)
        for (name, map) in carry { try object.reuse(map: name, with: map) }
        try object.load()

        var maps: [String: BPFMap] = [:]
        for (name, role) in roles where role != .chain && role != .internalData {
            maps[name] = try object.map(named: name)
        }
        for name in blueprint.tableNames where carry[name] == nil {
            guard let role = roles[name], role.isTable, maps[name] != nil else {
                throw DatapathError(.noSuchTable, chain: settings.name, cube: cube, map: name,
                    "\(name) is not a table of its object; tables: \(roles.filter(\.value.isTable).keys.sorted())")
            }
        }
        let filled: Set<String> = fillingTables ? blueprint.tableNames.filter { carry[$0] == nil } : []
        let tables = blueprint.tables(filled)
        for (name, entries) in tables {
            guard let role = roles[name], let map = maps[name], role != .versionedTable && role != .contentKeyedTable else {
                continue
            }
            try map.updateBatch(entries.map { ($0.key, $0.value) })
        }
        // Carried over for a path copy, the tables and their word are the live instance's.
        if fillingTables && carry[ABI.generation] == nil { try TableGenerations(maps: maps, roles: roles)?.fill(tables) }
        let loaded = try object.program(named: program)
        var record = CubeRecord(
            type: blueprint.type, slot: wiring.slot, next: wiring.next, digest: wiring.digest,
            objectDigest: blueprint.objectDigest,
            fixedDigest: roles.values.contains(where: \.changesInPlace)
                ? blueprint.digest(excluding: Set(roles.filter(\.value.changesInPlace).keys)) : nil,
            program: try loaded.info().id.rawValue,
            maps: roles.filter { maps[$0.key] != nil },
            zones: blueprint.sharedState.isEmpty ? nil : blueprint.sharedState)
        if !record.inPlaceTables.isEmpty { record.tableDigests = record.inPlaceDigests(of: blueprint) }
        record.interfaces = blueprint.interfaceIndexes
        return CubeInstance(cube: cube, program: loaded, maps: maps, record: record, stateLayouts: stateLayouts,
                            knownTables: fillingTables && filled == blueprint.tableNames
                                ? tables.filter { roles[$0.key]?.changesInPlace == true } : nil)
    }

    /// The object's program for `hook`, found by section ("xdp"; "tc" or "classifier").
    static func hookProgram(in object: borrowing BPFObject, for hook: ChainHook, cube: String) throws -> String {
        let wanted = object.programSections.filter { _, section in
            hook.isXDP ? section.hasPrefix("xdp") : (section.hasPrefix("tc") || section.hasPrefix("classifier"))
        }.keys.sorted()
        guard wanted.count == 1, let program = wanted.first else {
            throw DatapathError(.notOneHookProgram, cube: cube,
                "its object needs exactly one \(hook.isXDP ? "XDP" : "TC") program, "
                + "found \(wanted.isEmpty ? "none" : wanted.joined(separator: ", "))")
        }
        return program
    }

    /// Sets the ABI's wiring rodata: next slots, default verdict, fail-open.
    static func wire(_ object: inout BPFObject, next: [Int?], settings: ChainSettings) throws {
        guard next.count <= ABI.maxPorts else {
            throw DatapathError(.tooManyOutputs, "a cube may have at most \(ABI.maxPorts) outputs, not \(next.count)")
        }
        var slots = [UInt32](repeating: ABI.slotEnd, count: ABI.maxPorts)
        for (port, slot) in next.enumerated() { slots[port] = slot.map(UInt32.init) ?? ABI.slotEnd }
        try object.setRodata(ABI.nextSlot, to: slots.flatMap { withUnsafeBytes(of: $0, Array.init) })
        try object.setRodata(ABI.defaultVerdict, to: UInt8(settings.defaultVerdict == .drop ? 1 : 0))
        try object.setRodata(ABI.failOpen, to: UInt8(settings.onEmptySlot == .pass ? 1 : 0))
    }
}

/// The maps every program of a chain shares.
struct SharedMaps {
    let progs: BPFMap
    let meta: BPFMap
}
