import Foundation
import Synchronization
import TailorKernel

/// Everything that sorts out a chain someone or something left in another state
/// than its record says, in one place. What observe reports, and what puts it back:
///
/// | what is left                                          | drift kind (observe)         | put back by       |
/// | ----------------------------------------------------- | ---------------------------- | ----------------- |
/// | a commit that did not finish (pending record, staged) | interrupted-apply            | `recover`         |
/// | `_creating-`/`_removing-` directories of an apply     | leftover                     | `recoverLeftover` |
/// | the chain's own pins or record removed, root running  | pin-missing, meta-missing, directory-missing | `restorePins` |
/// | a cube's pins removed, its instance running           | pin-missing                  | `repin`           |
/// | the root gone: nothing of the chain runs              | root-gone                    | `removeRemains`   |
/// | slots, hook or table entries changed by hand          | slot-empty, program-swapped, root-detached, table-changed | `repair`, `restoreTables` |
///
/// `Executor.recover` runs the first two before anything is planned. Every adoption
/// of a chain that may need putting back goes through one path, `putBack`: it runs
/// `restorePins`, then `recover` for an interrupted commit, else `repin`, in that
/// order; `Chain.open` with `recovering`, `Chain.openForRemoval` and `Chain.destroy`
/// call it (`destroy` falls back to `removeRemains` when the root is gone). The apply
/// runs `repair` and `restoreTables` for a plan's `repair`. Every path works from the
/// chain's own pins and its root's identity (`ChainIdentity`); a spec only says on
/// which hook to look for a root whose record is gone.
///
/// The chain's own pins (the root, the maps the root uses, the meta record) can each
/// be derived again from the root program while it runs: the root from the hook
/// (proven the chain's by its identity), the maps from the root's maps, and, when the
/// record is lost, a record of the chain's settings without cubes (its cubes are then
/// built again: the planner replaces the chain).
extension Chain {
    /// What putting a chain back does with cube instances whose pins are gone.
    enum CubeRepin {
        /// Pin them again, from `held` where it holds them, else by id.
        case repin(HeldInstances?)
        /// Leave them: the chain is about to be destroyed, which needs only its own pins.
        case leave
    }

    /// The one path that puts chain `name` back before it is adopted: its own pins
    /// (`restorePins`, unless `pinsRestored`), then an interrupted commit undone or
    /// finished (`recover`), or, when there was none, its cubes' pins (`repin`, as
    /// `cubePins` says). Returns the chain's stored record as it left it, for the
    /// adoption that follows.
    static func putBack(_ name: String, pinRoot: PinRoot, hook: ChainHook?, cubePins: CubeRepin,
                        pinsRestored: Bool = false) throws -> StoredRecord {
        if !pinsRestored { try restorePins(name, pinRoot: pinRoot, hook: hook) }
        let stored = try StoredRecord(of: name, pinRoot: pinRoot)
        if stored.record.pending != nil || pinRoot.exists(ChainPins(name, under: pinRoot).staging) {
            _ = try recover(name, pinRoot: pinRoot)
            return try StoredRecord(of: name, pinRoot: pinRoot)
        }
        if case .repin(let held) = cubePins { try repin(stored.record, of: name, pinRoot: pinRoot, held: held) }
        return stored
    }

    /// A chain's meta map and the record it holds.
    struct StoredRecord {
        let meta: MetaMap
        let record: ChainRecord

        /// Read from chain `name`'s meta pin; refused when the record is empty or of another version.
        init(of name: String, pinRoot: PinRoot) throws {
            let pin = ChainPins(name, under: pinRoot)[.meta]
            meta = MetaMap(map: try BPFMap(pinnedAt: pin))
            guard let record = try meta.read() else {
                throw DatapathError(.recordUnreadable, chain: name, "its meta record at \(pin) is empty")
            }
            guard record.version == ChainRecord.currentVersion else {
                throw DatapathError(.recordVersion, chain: name, "its meta record has version \(record.version); "
                    + "this tailor reads version \(ChainRecord.currentVersion)")
            }
            self.record = record
        }
    }

    /// Whether `directory` holds a meta record tailor can read: a build pins it before
    /// anything else, and a chain moved aside takes its own along, so a directory
    /// named like a leftover without one is someone else's and is left alone.
    public static func hasRecord(_ directory: String) -> Bool {
        do {
            return try MetaRecordReader.read(ChainPins(directory: directory)[.meta]) != nil
        } catch {
            return false
        }
    }

    /// Sorts out what an interrupted apply left under `directory`. A chain moved
    /// aside (`_removing-`) gets its name back, and its replacement goes, when it is
    /// still attached while the replacement is not (the switch never happened), or
    /// when the apply died before its transaction finished (`transactionOpen`: the
    /// replacement went live, so the old root is attached again in its place).
    /// Anything else (`_creating-`, or a chain replaced by a finished transaction) is
    /// detached if still attached, then removed. Returns what it did.
    public static func recoverLeftover(_ directory: String, pinRoot: PinRoot, transactionOpen: Bool) throws
        -> String {
        let pins = ChainPins(directory: directory)
        let record = (try? MetaRecordReader.read(pins[.meta])) ?? nil
        let root = try? Program(pinnedAt: pins[.root])
        let attached = { (record: ChainRecord?, root: Program?) -> Bool in
            guard let record, let id = try? root?.info().id else { return false }
            return (try? record.settings.hook.attachedProgram()) == id
        }
        if let record, let root, (directory as NSString).lastPathComponent.hasPrefix(ChainPins.removingPrefix) {
            let final = ChainPins(record.settings.name, under: pinRoot)
            let replacement = (try? MetaRecordReader.read(final[.meta])) ?? nil
            let replacementRoot = try? Program(pinnedAt: final[.root])
            let live = attached(replacement, replacementRoot)
            if attached(record, root) && !live {
                try pinRoot.removeTree(final.directory)
                try pinRoot.rename(directory, to: final.directory)
                return "put chain \(record.settings.name) back: its replacement was interrupted before it went live"
            }
            if transactionOpen, let replacement, let replacementRoot, live {
                // The replacement went live in a transaction that never finished: undo its switch.
                let new = try open(replacement.settings.name, pinRoot: pinRoot)
                let old = try Chain(settings: record.settings, pinRoot: pinRoot, pins: pins, root: root,
                                    rootCounters: BPFMap(pinnedAt: pins[.rootCounters]),
                                    shared: SharedMaps(progs: BPFMap(pinnedAt: pins[.progs]),
                                                       meta: BPFMap(pinnedAt: pins[.packetMeta])),
                                    meta: MetaMap(map: BPFMap(pinnedAt: pins[.meta])),
                                    interface: NetworkInterface.lookup(record.settings.hook.interface,
                                                                       in: record.settings.hook.namespace.map(NetworkNamespace.named)))
                if record.settings.hook == replacement.settings.hook {
                    try old.attachToHook(root, replacing: replacementRoot)
                } else {
                    try new.detach()
                    try old.attachToHook(root, replacing: nil)
                }
                try new.waitForGracePeriod()
                try new.remove()
                try old.restoreName()
                return "put chain \(record.settings.name) back: the apply that replaced it never finished"
            }
        }
        if let record, let root, attached(record, root) {
            let hook = record.settings.hook
            let interface = try NetworkInterface.lookup(hook.interface, in: hook.namespace.map(NetworkNamespace.named))
            try hook.attachPoint.detach(root, from: interface)
            try GracePeriod().wait()
        }
        try pinRoot.removeTree(directory)
        return "removed \(directory), left by an interrupted apply"
    }

    /// Undoes or finishes a commit a controller did not complete (its record still
    /// says `pending`), from the pins alone. While every old instance is still
    /// pinned, the change is undone: each slot gets back the instance the record
    /// names (the commit slot last) and the new instances go. Once the old pins
    /// started to go, the switch had happened and only retiring was left: the staged
    /// instances are promoted. Either way, slots no instance owns are emptied after
    /// a grace period. Without a pending record, only staged leftovers and configs no
    /// record names are removed.
    /// Returns what it did.
    public static func recover(_ name: String, pinRoot: PinRoot) throws -> [String] {
        let pins = ChainPins(name, under: pinRoot)
        let meta = MetaMap(map: try BPFMap(pinnedAt: pins[.meta]))
        guard var record = try meta.read() else {
            throw DatapathError(.recordUnreadable, chain: name, "its meta record at \(pins[.meta]) is empty")
        }
        let configs = ConfigStore(pinRoot: pinRoot, chain: pins)
        guard let pending = record.pending else {
            var done: [String] = []
            if pinRoot.exists(pins.staging) {
                try pinRoot.removeTree(pins.staging)
                done.append("removed the instances an apply staged and never committed")
            }
            let removed = try configs.trim(to: record)
            if !removed.isEmpty { done.append("removed \(removed.count) config pin(s) no record names") }
            return done
        }
        let progs = try ProgramArray(pinnedAt: pins[.progs])
        let pinned = { (cube: CubePins) -> (Program, UInt32)? in
            guard let program = try? Program(pinnedAt: cube.program), let id = try? program.info().id else { return nil }
            return (program, id.rawValue)
        }
        var done: [String] = []
        let target: [String: CubeRecord]
        let oldIntact = record.cubes.allSatisfy { cube, old in pinned(pins.cube(cube))?.1 == old.program }
        if oldIntact {
            var bySlot: [Int: Program] = [:]
            for (cube, old) in record.cubes { bySlot[old.slot] = pinned(pins.cube(cube))?.0 }
            for (slot, program) in bySlot.sorted(by: { $0.key < $1.key }) where slot != pending.commitSlot {
                try progs.set(slot, to: program)
            }
            if let slot = pending.commitSlot {
                if let program = bySlot[slot] { try progs.set(slot, to: program) } else { try progs.clear(slot) }
            }
            target = record.cubes
            done.append("undid the interrupted commit: every slot holds the instance committed before it")
        } else {
            for (cube, new) in pending.cubes.sorted(by: { $0.key < $1.key }) {
                if pinned(pins.cube(cube))?.1 != new.program {
                    guard pinned(pins.staged(cube))?.1 == new.program else {
                        throw DatapathError(.interruptedCommit, chain: name, cube: cube, sentence:
                            "chain \(name): the interrupted commit cannot be undone or finished: "
                            + "cube \(cube)'s instance \(new.program) is neither pinned nor staged; "
                            + "destroy the chain and apply again")
                    }
                    try pinRoot.removeTree(pins.cube(cube).directory)
                    try pinRoot.rename(pins.staged(cube).directory, to: pins.cube(cube).directory)
                }
                if let (program, id) = pinned(pins.cube(cube)), try progs.program(at: new.slot)?.rawValue != id {
                    try progs.set(new.slot, to: program)
                }
            }
            for cube in record.cubes.keys where pending.cubes[cube] == nil {
                try pinRoot.removeTree(pins.cube(cube).directory)
            }
            target = pending.cubes
            done.append("finished the interrupted commit from its staged instances")
        }
        let owned = Set(target.values.map(\.slot))
        let stray = try progs.occupiedSlots().keys.filter { !owned.contains($0) }.sorted()
        if !stray.isEmpty {
            try GracePeriod().wait()
            for slot in stray { try progs.clear(slot) }
        }
        try pinRoot.removeTree(pins.staging)
        record.cubes = target
        record.pending = nil
        try meta.write(record)
        try configs.trim(to: record)
        return done
    }

    /// Pins again a cube's program and maps whose pins someone removed, while the
    /// instance still runs in its slot: from the descriptors `held` keeps, else the
    /// program from the slot (by id) and its maps among the maps the program uses,
    /// by name (the kernel keeps 15 characters). Opening by id needs CAP_SYS_ADMIN.
    static func repin(_ record: ChainRecord, of chain: String, pinRoot: PinRoot, held: HeldInstances?) throws {
        let chainPins = ChainPins(chain, under: pinRoot)
        let progs = try ProgramArray(pinnedAt: chainPins[.progs])
        for (cube, cubeRecord) in record.cubes.sorted(by: { $0.key < $1.key }) {
            let pins = chainPins.cube(cube)
            let missing = cubeRecord.maps.keys.filter { !pinRoot.exists(pins.map($0)) }.sorted()
            guard !pinRoot.exists(pins.program) || !missing.isEmpty else { continue }
            guard try progs.program(at: cubeRecord.slot)?.rawValue == cubeRecord.program else {
                throw DatapathError(.instanceGone, chain: chain, cube: cube,
                    "its pins are gone and its slot no longer holds its instance; destroy the chain and apply again")
            }
            let kept = held?.instance(chain: chain, cube: cube, program: cubeRecord.program)
            let program = try kept?.program ?? Program(id: ProgramID(rawValue: cubeRecord.program))
            try pinRoot.makeDirectory(pins.maps)
            if !pinRoot.exists(pins.program) { try program.pin(at: pins.program) }
            let usedIDs = Set(try program.info().mapIDs)
            var used: [BPFMap]?
            for name in missing {
                if let map = kept?.maps[name], usedIDs.contains(map.info.id) {
                    try map.pin(at: pins.map(name))
                    continue
                }
                if used == nil { used = try usedIDs.sorted().map { try BPFMap(id: $0) } }
                let candidates = (used ?? []).filter { $0.info.name == String(name.prefix(15)) }
                guard candidates.count == 1, let map = candidates.first else {
                    throw DatapathError(.ambiguousMap, chain: chain, cube: cube, map: name,
                        "cannot tell which map of its program is \(name) (\(candidates.count) candidates); "
                        + "destroy the chain and apply again")
                }
                try map.pin(at: pins.map(name))
            }
        }
    }

    /// Puts back what someone changed by hand, from this chain's own pins: a cube's
    /// program into its slot where the slot is empty or holds another program (one
    /// write per slot), and the root onto its hook when it was detached. A hook held
    /// by another program is left alone unless `takeover` is set. Returns what it did.
    @discardableResult
    public func repair(takeover: Bool = false) throws -> [String] {
        var done: [String] = []
        for (cube, instance) in instances.sorted(by: { $0.key < $1.key }) {
            let slot = instance.record.slot
            let current = try progs.program(at: slot)
            if current?.rawValue != instance.record.program {
                try progs.set(slot, to: instance.program)
                done.append("slot \(slot) of cube \(cube) rewritten from its pin")
            }
        }
        let rootID = try root.info().id
        let attached = try attachedProgram()
        if attached == nil {
            try attachRoot()
            done.append("root re-attached to \(settings.hook)")
        } else if let attached, attached != rootID {
            guard takeover else {
                throw DatapathError(.hookHeldByOther, chain: settings.name,
                    "\(settings.hook) is held by \(attached), not tailor's root; use --takeover to replace it")
            }
            try attachRoot(replacing: Program(id: attached))
            done.append("root took \(settings.hook) over from \(attached)")
        }
        return done
    }

    /// Writes `cube`'s tables back to `entries` (the blueprint's) after they were
    /// changed by hand: entries the spec does not name are removed (zeroed in array
    /// maps), the others rewritten. Entry by entry: the table was already wrong.
    public func restoreTables(of cube: String, to tables: [String: [TableEntry]]) throws {
        guard let instance = instances[cube] else { throw DatapathError.noSuchCube(cube, in: settings.name) }
        let generations = try instance.generations
        for (name, role) in instance.record.maps where role.isTable && role != .versionedTable && role != .contentKeyedTable {
            guard let map = instance.maps[name] else { continue }
            try Chain.sync(map, to: tables[name] ?? [])
        }
        try generations?.restore(tables)
    }

    /// Makes `map` hold exactly `entries`, writing only what differs: keys not in
    /// `entries` are removed (zeroed in array maps), the others written. A table
    /// that is right sees no write at all. `current` saves reading the map again.
    static func sync(_ map: BPFMap, to entries: [TableEntry], current: [TableEntry]? = nil) throws {
        let want = Dictionary(entries.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        let live = try current ?? map.lookupBatch().map { TableEntry(key: $0.key, value: $0.value) }
        let have = Dictionary(live.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        for (key, value) in have where want[key] == nil && value.contains(where: { $0 != 0 }) {
            if map.info.type.isArray {
                try map.update(key, [UInt8](repeating: 0, count: map.valueBufferSize))
            } else {
                try map.delete(key)
            }
        }
        try map.updateBatch(want.filter { have[$0.key] != $0.value }.map { ($0.key, $0.value) })
    }

    /// The chain's root program: pinned, or (its pin removed) the program on its
    /// hook when that program's identity names this chain under this pin root.
    /// Nil when neither holds it: the root program is gone, nothing of the chain runs.
    /// `hook` is where to look when the record is gone too (the spec's hook).
    /// Throws when the hook holds a program that is not provably this chain's root.
    public static func findRoot(_ name: String, pinRoot: PinRoot, hook: ChainHook?) throws -> Program? {
        let pins = ChainPins(name, under: pinRoot)
        if pinRoot.exists(pins[.root]) { return try Program(pinnedAt: pins[.root]) }
        let record = hasRecord(pins.directory) ? try MetaRecordReader.read(pins[.meta]) : nil
        guard let hook = record?.settings.hook ?? hook else {
            return try rootUsing(name, pinRoot: pinRoot)
                ?? unpinnedRoots(pinRoot: pinRoot).first { $0.identity.settings.name == name }?.program
        }
        guard let id = try hook.attachedProgram() else { return nil }
        let program = try Program(id: id)
        guard let identity = try ChainIdentity.of(program), identity.names(name, under: pinRoot) else {
            throw DatapathError(.hookHeldByOther, chain: name,
                "its root pin is gone and \(hook) holds \(id), which is not its root "
                + "(no identity of chain \(name) under \(pinRoot.path) in its data); it is left alone")
        }
        return program
    }

    /// With neither its root pin nor a record or spec saying where it is attached,
    /// the chain's root is the loaded program that uses one of the maps still pinned
    /// in its directory (progs, packet_meta, root_counters) and whose identity names
    /// the chain: found among every program loaded (by id, CAP_SYS_ADMIN).
    static func rootUsing(_ name: String, pinRoot: PinRoot) throws -> Program? {
        let pins = ChainPins(name, under: pinRoot)
        let pinned = ChainPins.Pin.rootMaps.map { pins[$0.pin] }.filter(pinRoot.exists)
        let maps = Set(try pinned.map { try BPFMap(pinnedAt: $0).info.id })
        guard !maps.isEmpty else { return nil }
        for id in try Program.loadedIDs() {
            guard let program = try loaded(id) else { continue }
            let info = try program.info()
            guard info.name.hasPrefix("root_"), !maps.isDisjoint(with: info.mapIDs),
                  let identity = try ChainIdentity.of(program), identity.names(name, under: pinRoot) else { continue }
            return program
        }
        return nil
    }

    /// The roots that still run on their hooks while no directory under `pinRoot`
    /// pins them (a chain directory removed by hand, its chain maybe gone from the
    /// specs too, so no spec says where to look): every loaded program whose
    /// identity names a chain under this pin root and that is the program on the
    /// identity's hook. Found by id (CAP_SYS_ADMIN); none without it.
    public static func unpinnedRoots(pinRoot: PinRoot) -> [(id: ProgramID, program: Program, identity: ChainIdentity)] {
        guard let ids = try? Program.loadedIDs() else { return [] }
        let directories = (try? FileManager.default.contentsOfDirectory(atPath: pinRoot.path)) ?? []
        let pinned = Set(directories.compactMap { try? Program(pinnedAt: ChainPins($0, under: pinRoot)[.root]).info().id })
        let others = notRoots.withLock { others in
            others.formIntersection(ids)
            return others
        }
        var found: [(id: ProgramID, program: Program, identity: ChainIdentity)] = []
        var seen: [ProgramID] = []
        for id in ids where !pinned.contains(id) && !others.contains(id) {
            guard let program = (try? loaded(id)) ?? nil, let info = try? program.info() else { continue }
            guard info.name.hasPrefix("root_") else {
                seen.append(id)
                continue
            }
            guard let identity = (try? ChainIdentity.of(program)) ?? nil,
                  identity.names(identity.settings.name, under: pinRoot),
                  (try? identity.settings.hook.attachedProgram()) == id else { continue }
            found.append((id, program, identity))
        }
        notRoots.withLock { $0.formUnion(seen) }
        return found
    }

    /// Loaded programs whose name says they are no chain's root. A program keeps its
    /// name while it lives and the kernel does not hand its id out again, so each is
    /// opened once per process rather than at every observe: a daemon on a host
    /// running thousands of others' programs would otherwise open them all at every
    /// reconcile (about 9 µs each here).
    private static let notRoots = Mutex<Set<ProgramID>>([])

    /// Program `id`, or nil when it was unloaded since it was listed.
    private static func loaded(_ id: ProgramID) throws -> Program? {
        do {
            return try Program(id: id)
        } catch {
            if error.code == .notFound { return nil }
            throw error
        }
    }

    /// Puts back the chain's own pins that are missing, from its root (`findRoot`):
    /// the directory, the root, the maps the root uses, and a record of the
    /// settings in the root's identity when the record is gone. Returns what it did;
    /// nothing when every pin is there. Throws when the root is gone (`removeRemains`
    /// is what is left to do then) or cannot be proven the chain's.
    @discardableResult
    public static func restorePins(_ name: String, pinRoot: PinRoot, hook: ChainHook? = nil) throws -> [String] {
        let pins = ChainPins(name, under: pinRoot)
        let directory = pins.directory
        let recorded = hasRecord(directory)
        let missing = ChainPins.Pin.allCases.filter { !pinRoot.exists(pins[$0]) }
        if recorded && missing.isEmpty { return [] }
        guard let root = try findRoot(name, pinRoot: pinRoot, hook: hook) else {
            throw DatapathError(.rootGone, chain: name,
                "its root program is gone (neither pinned nor on its hook), so nothing of it runs; "
                + "what is left of it can only be removed")
        }
        guard let identity = try ChainIdentity.of(root), identity.names(name, under: pinRoot) else {
            throw DatapathError(.notTailors, chain: name,
                "\(pins[.root]) is not the root of chain \(name) under \(pinRoot.path) "
                + "(no identity of it in the program's data); it is left alone")
        }
        var done: [String] = []
        if !pinRoot.exists(directory) { done.append("made \(directory) again") }
        try pinRoot.makeDirectory(pins.cubes)
        try pinRoot.makeDirectory(pins.config)
        if missing.contains(.root) {
            try root.pin(at: pins[.root])
            done.append("pinned the root again from the program on \(identity.settings.hook)")
        }
        let maps = try root.info().mapIDs.map { try BPFMap(id: $0) }
        for (pin, mapName) in ChainPins.Pin.rootMaps where missing.contains(pin) {
            let found = maps.filter { $0.info.name == mapName }
            guard found.count == 1, let map = found.first else {
                throw DatapathError(.ambiguousMap, chain: name, map: mapName,
                    "its root uses \(found.count) maps named \(mapName), so \(pin.rawValue) cannot be pinned again")
            }
            try map.pin(at: pins[pin])
            done.append("pinned \(pin.rawValue) again from the root's maps")
        }
        if !recorded {
            // A meta pin that does not read as a record is in the way: the directory is the chain's (its root says so).
            if pinRoot.exists(pins[.meta]) { try pinRoot.unpin(pins[.meta]) }
            let meta = try MetaMap.create()
            try meta.write(ChainRecord(settings: identity.settings))
            try meta.map.pin(at: pins[.meta])
            done.append("wrote a record of the settings in the root's identity (the cubes' records were lost)")
        }
        return done
    }

    /// Removes what is left of a chain whose root program is gone (nothing of it
    /// can run): its slots are emptied and its directory unpinned. Returns what it did.
    public static func removeRemains(_ name: String, pinRoot: PinRoot) throws -> String {
        let pins = ChainPins(name, under: pinRoot)
        let progs = pins[.progs]
        if pinRoot.exists(progs) {
            let array = try ProgramArray(pinnedAt: progs)
            for slot in try array.occupiedSlots().keys { try array.clear(slot) }
        }
        try pinRoot.removeTree(pins.directory)
        return "removed what was left of chain \(name) (its root program was gone: nothing of it ran)"
    }
}
