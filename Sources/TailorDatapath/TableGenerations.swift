import TailorKernel

/// The generation word of a cube with versioned tables, `struct tailor_generation`
/// (bpf/include/tailor/versioned.h): the generation packets read, and whether the
/// other one holds the same entries again.
struct GenerationWord: Equatable {
    var active: Int
    var settled: Bool

    private static let key = [UInt8](repeating: 0, count: 4)

    static func read(_ map: BPFMap) throws -> GenerationWord {
        guard let bytes = try map.lookup(key), bytes.count >= 8 else {
            throw DatapathError(.versionedTableLayout, map: map.label,
                "\(map.label) is not a generation word (struct tailor_generation)")
        }
        return GenerationWord(active: Int(bytes[0] & 1), settled: bytes[4...7].contains { $0 != 0 })
    }

    func write(to map: BPFMap) throws {
        try map.update(Self.key, [UInt8(active), 0, 0, 0, settled ? 1 : 0, 0, 0, 0])
    }
}

/// Where the entries of a versioned table sit for each generation, by map type, as
/// bpf/include/tailor/versioned.h lays them out: an array's generation g holds
/// indices g*n..<(g+1)*n, an LPM trie's key data starts with the generation byte
/// (counted in the prefix length), a hash key starts with the generation as a
/// __u32. Entries elsewhere are logical: the key as the generation-less table would
/// have it.
struct VersionedKeys {
    let type: MapType
    /// Entries per generation of an array.
    let perGeneration: Int

    init(_ map: BPFMap) throws {
        let info = map.info
        guard [.array, .lpmTrie, .hash].contains(info.type) else {
            throw DatapathError(.versionedTableLayout, map: map.label,
                "\(map.label): a versioned table must be an array, LPM trie or hash map, not \(info.type)")
        }
        guard info.type != .array || (info.maxEntries % 2 == 0 && info.keySize == 4) else {
            throw DatapathError(.versionedTableLayout, map: map.label,
                "\(map.label): a versioned array needs an even max_entries (two generations)")
        }
        type = info.type
        perGeneration = info.maxEntries / 2
    }

    func physical(_ key: [UInt8], in generation: Int) -> [UInt8] {
        switch type {
        case .array: return Self.word(UInt32(Self.value(key) + generation * perGeneration))
        case .lpmTrie: return Self.word(UInt32(Self.value(key) + 8)) + [UInt8(generation)] + key.dropFirst(4)
        default: return Self.word(UInt32(generation)) + key
        }
    }

    /// The generation of a map key and the logical key; nil for a key outside both.
    func logical(_ key: [UInt8]) -> (generation: Int, key: [UInt8])? {
        switch type {
        case .array:
            let index = Self.value(key)
            return index < 2 * perGeneration ? (index / perGeneration, Self.word(UInt32(index % perGeneration))) : nil
        case .lpmTrie:
            let length = Self.value(key)
            guard key.count > 4, length >= 8, key[4] < 2 else { return nil }
            return (Int(key[4]), Self.word(UInt32(length - 8)) + key.dropFirst(5))
        default:
            let generation = Self.value(key)
            return generation < 2 ? (generation, Array(key.dropFirst(4))) : nil
        }
    }

    private static func value(_ key: [UInt8]) -> Int {
        key.prefix(4).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    }

    private static func word(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
}

/// A cube instance's versioned and content-keyed tables with its generation word
/// (docs/cube-abi.md). A change writes the entries that differ into the generation
/// no packet reads, adds the content-keyed entries it needs, and switches with one
/// write of the word (`switchTo`); after a grace period, `GenerationSwitch.settle`
/// writes the same entries into the other generation and removes the content-keyed
/// entries neither generation uses. At rest both generations are equal, so a change
/// reads and writes only what it changes.
struct TableGenerations {
    let word: BPFMap
    let versioned: [String: (map: BPFMap, keys: VersionedKeys)]
    let contentKeyed: [String: BPFMap]

    /// Nil when `roles` names no versioned table.
    init?(maps: [String: BPFMap], roles: [String: MapRole]) throws {
        let versionedNames = roles.filter { $0.value == .versionedTable }.keys
        guard !versionedNames.isEmpty else { return nil }
        guard let word = maps[ABI.generation] else {
            throw DatapathError(.versionedTableLayout, map: ABI.generation,
                "a cube with versioned tables needs the \(ABI.generation) map (<tailor/versioned.h>)")
        }
        self.word = word
        var versioned: [String: (BPFMap, VersionedKeys)] = [:]
        for name in versionedNames {
            guard let map = maps[name] else { continue }
            versioned[name] = (map, try VersionedKeys(map))
        }
        self.versioned = versioned
        contentKeyed = maps.filter { roles[$0.key] == .contentKeyedTable }
    }

    /// The logical entries of `generation` of a versioned table.
    static func entries(of map: BPFMap, keys: VersionedKeys, generation: Int) throws -> [TableEntry] {
        try map.lookupBatch().compactMap { key, value in
            guard let (found, logical) = keys.logical(key), found == generation else { return nil }
            return TableEntry(key: logical, value: value)
        }
    }

    /// What packets read now from the tables `names` (all when nil): the active
    /// generation of a versioned table, every entry of a content-keyed one.
    func live(_ names: Set<String>? = nil) throws -> [String: [TableEntry]] {
        let active = try GenerationWord.read(word).active
        var tables: [String: [TableEntry]] = [:]
        for (name, table) in versioned where names?.contains(name) ?? true {
            tables[name] = try Self.entries(of: table.map, keys: table.keys, generation: active)
        }
        for (name, map) in contentKeyed where names?.contains(name) ?? true {
            tables[name] = try map.lookupBatch().map { TableEntry(key: $0.key, value: $0.value) }
        }
        return tables
    }

    /// Fills a new instance (no packet reaches it yet): both generations and the
    /// content-keyed tables get `tables`.
    func fill(_ tables: [String: [TableEntry]]) throws {
        for (name, table) in versioned {
            for generation in 0..<2 {
                try table.map.updateBatch((tables[name] ?? []).map { (table.keys.physical($0.key, in: generation), $0.value) })
            }
        }
        for (name, map) in contentKeyed { try map.updateBatch((tables[name] ?? []).map { ($0.key, $0.value) }) }
        try GenerationWord(active: 0, settled: true).write(to: word)
    }

    /// Writes every table back to `tables` in both generations, entry by entry:
    /// for tables changed by hand, which were already wrong. Both generations then
    /// hold the same, so packets are switched to generation 0, as a fresh instance has it.
    func restore(_ tables: [String: [TableEntry]]) throws {
        for (name, table) in versioned {
            for generation in 0..<2 {
                try write(tables[name] ?? [], over: Self.entries(of: table.map, keys: table.keys, generation: generation),
                          into: name, generation: generation)
            }
        }
        for (name, map) in contentKeyed { try Chain.sync(map, to: tables[name] ?? []) }
        try GenerationWord(active: 0, settled: true).write(to: word)
    }

    /// Makes `tables` what packets read, per packet consistently: the entries that
    /// differ from `known` (what the tables hold, as the caller knows it; read when
    /// nil) go into the generation no packet reads, then one write switches. Only
    /// the tables `tables` names are read and written; the others keep their entries.
    /// When an earlier change was left unsettled (its controller died between the
    /// switch and `settle`), the other generation of every versioned table is first
    /// made equal to the active one, after a grace period. Nothing is removed here:
    /// see `GenerationSwitch.settle`.
    func switchTo(_ tables: [String: [TableEntry]], from known: [String: [TableEntry]]?,
                  grace: () throws -> Void) throws -> GenerationSwitch {
        var current = try GenerationWord.read(word)
        let names = Set(tables.keys).intersection(Set(versioned.keys).union(contentKeyed.keys))
        let needed = current.settled ? names : names.union(versioned.keys)
        let before = try known.flatMap { needed.isSubset(of: $0.keys) ? $0 : nil } ?? live(needed)
        let (active, other) = (current.active, 1 - current.active)
        if !current.settled {
            try grace()
            for (name, table) in versioned {
                try write(before[name] ?? [], over: Self.entries(of: table.map, keys: table.keys, generation: other),
                          into: name, generation: other)
            }
        }
        // From here until `settle`, the two generations differ.
        current.settled = false
        try current.write(to: word)
        for name in versioned.keys.sorted() where names.contains(name) {
            try write(tables[name] ?? [], over: before[name] ?? [], into: name, generation: other)
        }
        for (name, map) in contentKeyed where names.contains(name) {
            let have = Dictionary(before[name, default: []].map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            for entry in tables[name] ?? [] {
                if let value = have[entry.key], value != entry.value {
                    throw DatapathError(.contentKeyConflict, map: name,
                        "content-keyed table \(name): key \(hexDigest(entry.key)) already holds another value; "
                        + "its keys must be derived from the values")
                }
            }
            try map.updateBatch((tables[name] ?? []).filter { have[$0.key] == nil }.map { ($0.key, $0.value) })
        }
        try GenerationWord(active: other, settled: false).write(to: word)
        return GenerationSwitch(tables: self, from: active, before: before.filter { names.contains($0.key) },
                                after: tables.filter { names.contains($0.key) })
    }

    /// Makes generation `generation` of versioned table `name` hold `want`, given it
    /// holds `have`: only the entries that differ are written; entries that go are
    /// deleted (zeroed in arrays).
    func write(_ want: [TableEntry], over have: [TableEntry], into name: String, generation: Int) throws {
        guard let (map, keys) = versioned[name] else { return }
        // Tables built the same way list the same keys in the same order (a port
        // index, every array): compared entry by entry, without hashing 65,537 keys.
        if want.count == have.count && zip(want, have).allSatisfy({ $0.key == $1.key }) {
            try map.updateBatch(zip(want, have).filter { $0.value != $1.value }
                .map { (keys.physical($0.0.key, in: generation), $0.0.value) })
            return
        }
        let wanted = Dictionary(want.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        let had = Dictionary(have.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        for (key, value) in had where wanted[key] == nil && value.contains(where: { $0 != 0 }) {
            let physical = keys.physical(key, in: generation)
            if map.info.type.isArray {
                try map.update(physical, [UInt8](repeating: 0, count: map.valueBufferSize))
            } else {
                _ = try map.delete(physical)
            }
        }
        try map.updateBatch(wanted.filter { had[$0.key] != $0.value }.map { (keys.physical($0.key, in: generation), $0.value) })
    }
}

/// A switch of generations made by `TableGenerations.switchTo`: packets read the
/// new entries; the generation they left still holds the old ones until `settle`.
/// `before` and `after` hold the tables the switch wrote, and only those.
struct GenerationSwitch {
    let tables: TableGenerations
    /// The generation packets read before the switch.
    let from: Int
    let before: [String: [TableEntry]]
    let after: [String: [TableEntry]]

    /// After a grace period (no packet reads generation `from` any more): writes the
    /// new entries there too and removes the content-keyed entries the new tables do
    /// not use.
    func settle() throws {
        for name in tables.versioned.keys.sorted() where after[name] != nil {
            try tables.write(after[name] ?? [], over: before[name] ?? [], into: name, generation: from)
        }
        for (name, map) in tables.contentKeyed where after[name] != nil {
            let used = Set((after[name] ?? []).map(\.key))
            for entry in before[name] ?? [] where !used.contains(entry.key) { _ = try map.delete(entry.key) }
        }
        try GenerationWord(active: 1 - from, settled: true).write(to: tables.word)
    }

    /// Puts the tables back exactly as they were, settled or not: generation `from`
    /// gets the old entries back if `settle` ran, one write switches packets back to
    /// it, and after a grace period (no packet reads the other generation any more)
    /// the other generation and the content-keyed entries are put back too.
    func undo(grace: () throws -> Void) throws {
        let other = 1 - from
        for (name, table) in tables.versioned.sorted(by: { $0.key < $1.key }) where before[name] != nil {
            try tables.write(before[name] ?? [], over: TableGenerations.entries(of: table.map, keys: table.keys, generation: from),
                             into: name, generation: from)
        }
        for (name, map) in tables.contentKeyed where before[name] != nil {
            try map.updateBatch((before[name] ?? []).map { ($0.key, $0.value) })
        }
        try GenerationWord(active: from, settled: false).write(to: tables.word)
        try grace()
        for (name, table) in tables.versioned.sorted(by: { $0.key < $1.key }) where before[name] != nil {
            try tables.write(before[name] ?? [], over: TableGenerations.entries(of: table.map, keys: table.keys, generation: other),
                             into: name, generation: other)
        }
        for (name, map) in tables.contentKeyed where before[name] != nil {
            let kept = Set((before[name] ?? []).map(\.key))
            for entry in after[name] ?? [] where !kept.contains(entry.key) { _ = try map.delete(entry.key) }
        }
        try GenerationWord(active: from, settled: true).write(to: tables.word)
    }
}

/// What packets read from a cube's tables now, by table (a versioned table's active
/// generation), from its maps, pinned or held, and their roles.
public func liveTables(_ maps: [String: BPFMap], roles: [String: MapRole]) throws -> [String: [TableEntry]] {
    var tables = try TableGenerations(maps: maps, roles: roles)?.live() ?? [:]
    for (name, role) in roles where role.isTable && tables[name] == nil {
        guard let map = maps[name] else { continue }
        tables[name] = try map.lookupBatch().map { TableEntry(key: $0.key, value: $0.value) }
    }
    return tables
}

/// Whether a cube's versioned tables were left between two generations (an apply
/// stopped between the switch and `GenerationSwitch.settle`): one lookup.
public func tableGenerationsUnsettled(_ maps: [String: BPFMap], roles: [String: MapRole]) -> Bool {
    guard let word = maps[ABI.generation], roles.values.contains(.versionedTable),
          let current = try? GenerationWord.read(word) else { return false }
    return !current.settled
}
