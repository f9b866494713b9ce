import Foundation
import TailorDatapath
import TailorKernel

/// Something in the kernel that is not what tailor last committed.
public enum Drift: Sendable, Equatable, CustomStringConvertible {
    /// The chain has no readable meta record: not tailor's, or broken.
    case metaMissing(String)
    /// A change was being committed when the controller stopped: apply undoes it
    /// (or finishes it, if the switch had happened) from the pins.
    case interruptedApply
    /// Pins a chain build or removal left behind (`_creating-` / `_removing-`).
    case leftover
    /// The root is not attached to its hook, or another program is.
    case rootDetached
    case hookTaken(by: ProgramID)
    /// A slot a cube should occupy is empty, or holds another program.
    case slotEmpty(cube: String, slot: Int)
    case programSwapped(cube: String, slot: Int, found: ProgramID)
    /// A pin tailor made is gone and cannot be derived again (a cube's, while its
    /// instance no longer runs in its slot).
    case pinMissing(String)
    /// One of the chain's own pins (root, progs, packet_meta, root_counters) is gone
    /// while its root still runs: apply pins it again from the root (`Chain.restorePins`).
    case chainPinMissing(String)
    /// The meta record is gone (or unreadable) but the root, pinned or on the spec's
    /// hook, proves by its identity that the chain is tailor's: apply rebuilds the
    /// chain and swaps it in atomically.
    case recordLost
    /// The chain's directory is gone while its root, proven by its identity, still
    /// runs on the spec's hook: apply rebuilds the chain and swaps it in atomically.
    case orphaned(ProgramID)
    /// The root program is gone (its pin removed, nothing on the hook): nothing of
    /// the chain runs; apply removes what is left and builds it again.
    case rootGone
    /// A directory named like an interrupted apply's leftover holds no record of
    /// tailor's: it is someone else's and is left alone.
    case foreign
    /// A pin of a cube instance is gone while the instance still runs in its slot:
    /// apply pins it again from the program (and the maps it uses).
    case cubePinMissing(cube: String, pin: String)
    /// A cube's versioned tables were left between two generations (an apply
    /// stopped after the switch): apply makes the other generation equal again.
    case tablesUnsettled(cube: String)
    /// Config pins (`<chain>/config/<digest>`) no record names: an apply stopped
    /// between pinning a change's configs and writing the record that names them, or
    /// before it removed the configs its record no longer names. Recovery unpins them.
    case configsUnreferenced([String])
    /// A controller-owned table's entries were changed by hand (found by the planner,
    /// which knows what the table should hold).
    case tableChanged(cube: String, map: String, added: Int, changed: Int, removed: Int)
    /// One such entry, in the config's words where the cube type can say: `key`
    /// "10.0.0.0/8", `change` "changed out of band: X -> Y".
    case tableEntryChanged(cube: String, map: String, key: String, change: String)

    public var description: String {
        switch self {
        case .metaMissing(let why): "meta record unreadable: \(why)"
        case .interruptedApply: "an earlier apply was interrupted during a commit"
        case .leftover: "left behind by an interrupted apply"
        case .rootDetached: "the root program is not attached to its hook"
        case .hookTaken(let id): "the hook is held by another program (\(id))"
        case .slotEmpty(let cube, let slot): "slot \(slot) of cube \(cube) is empty"
        case .programSwapped(let cube, let slot, let found): "slot \(slot) of cube \(cube) holds \(found), not tailor's"
        case .pinMissing(let pin): "pin \(pin) is missing"
        case .chainPinMissing(let pin): "pin \(pin) is missing (the root still runs: pinned again from it)"
        case .recordLost: "the meta record is missing, while the root proves the chain is tailor's"
        case .orphaned(let id): "the chain's pins are gone while its root (\(id)) still runs on the hook"
        case .rootGone: "the root program is gone (not pinned, not on the hook): nothing of the chain runs"
        case .foreign: "no record of tailor's inside: someone else's directory, left alone"
        case .cubePinMissing(let cube, let pin): "pin \(pin) of cube \(cube) is missing (the instance still runs)"
        case .tablesUnsettled(let cube):
            "the tables of cube \(cube) were left between two generations by an interrupted apply"
        case .configsUnreferenced(let digests):
            "config pins no record names, left by an interrupted apply: \(digests.joined(separator: ", "))"
        case .tableChanged(let cube, let map, let added, let changed, let removed):
            "table \(map) of cube \(cube) was changed by hand (+\(added) ~\(changed) -\(removed) entries)"
        case .tableEntryChanged(let cube, let map, let key, let change):
            "entry \(key) in table \(map) of cube \(cube) \(change)"
        }
    }

    /// Whether `Chain.repair` puts it back from the chain's own pins (a taken hook
    /// only with --takeover; without it the apply stops with the reason).
    public var isRepairable: Bool {
        switch self {
        case .slotEmpty, .programSwapped, .rootDetached, .hookTaken, .tableChanged, .tableEntryChanged, .interruptedApply,
             .leftover, .cubePinMissing, .chainPinMissing, .recordLost, .orphaned, .rootGone, .tablesUnsettled, .configsUnreferenced: true
        case .metaMissing, .pinMissing, .foreign: false
        }
    }

    /// Whether `Executor.recover` sorts it out (`Chain.recover`) before anything is planned.
    public var isRecovered: Bool {
        switch self {
        case .interruptedApply, .configsUnreferenced: true
        default: false
        }
    }

    /// The kind, for logs and JSON.
    public var kind: DriftKind {
        switch self {
        case .metaMissing, .recordLost: .metaMissing
        case .interruptedApply, .tablesUnsettled, .configsUnreferenced: .interruptedApply
        case .leftover: .leftover
        case .rootDetached: .rootDetached
        case .hookTaken: .hookTaken
        case .slotEmpty: .slotEmpty
        case .programSwapped: .programSwapped
        case .pinMissing, .cubePinMissing, .chainPinMissing: .pinMissing
        case .orphaned: .directoryMissing
        case .rootGone: .rootGone
        case .foreign: .foreign
        case .tableChanged, .tableEntryChanged: .tableChanged
        }
    }
}

/// The kinds of drift, as plans, logs (`DRIFT_KIND`) and metrics name them.
public enum DriftKind: String, Sendable, Hashable, Codable, CaseIterable {
    case metaMissing = "meta-missing"
    case interruptedApply = "interrupted-apply"
    case leftover
    case rootDetached = "root-detached"
    case hookTaken = "hook-taken"
    case slotEmpty = "slot-empty"
    case programSwapped = "program-swapped"
    case pinMissing = "pin-missing"
    case directoryMissing = "directory-missing"
    case rootGone = "root-gone"
    case foreign
    case tableChanged = "table-changed"
}

/// A chain as the kernel holds it under tailor's pin root.
public struct ObservedChain: Sendable {
    public var name: String
    /// The meta record, when readable: what tailor last committed.
    public var record: ChainRecord?
    /// Program ids per occupied slot of the chain's prog_array.
    public var slots: [Int: ProgramID]
    /// Whatever differs from the record.
    public var drift: [Drift]
    /// Entries of each cube's controller-owned tables: cube -> map -> entries. Read
    /// only by a deep observe (`tablesRead`); otherwise empty.
    public var tables: [String: [String: [TableEntry]]]
    /// Whether `tables` was read: a deep observe.
    public var tablesRead = false
    /// The config each cube's instance was committed with, from the chain's
    /// `ConfigStore`; none for cubes whose record names no config.
    public var configs: [String: RecordedConfig]
    /// The identity of the chain's root, read when the pins that would say whose
    /// the chain is are gone (`recordLost`, `orphaned`).
    public var identity: ChainIdentity?

    /// Pins an interrupted apply left outside any chain, to be removed: named so,
    /// and holding tailor's record (a look-alike without one is left alone).
    public var isLeftover: Bool { ChainPins.isLeftover(name) && record != nil }

    /// Whether the chain is provably tailor's: its record reads, or its root's identity names it.
    public var isTailors: Bool { record != nil || identity != nil }

    /// Whether the chain is rebuilt from the spec and swapped in atomically: its
    /// record or directory is gone while its root runs.
    public var needsRebuild: Bool { drift.contains(.recordLost) || drift.contains { if case .orphaned = $0 { true } else { false } } }

    public init(name: String, record: ChainRecord?, slots: [Int: ProgramID], drift: [Drift],
                tables: [String: [String: [TableEntry]]] = [:], configs: [String: RecordedConfig] = [:]) {
        (self.name, self.record, self.slots, self.drift, self.tables) = (name, record, slots, drift, tables)
        self.configs = configs
    }
}

/// Reads the observed state from the kernel only: pins, the meta records, the
/// prog_arrays, the hooks and the recorded configs. Never changes anything.
///
/// A deep observe also reads every entry of the controller-owned tables, which a
/// plan compares with what the specs put there (entries changed out of band). The
/// default does not: a 10,000-rule firewall holds some 170,000 entries, and what
/// the tables should hold is known from the record (the digest of what was
/// applied). `tailor plan --deep` and the daemon's deep check read them.
public enum Observer {
    /// The chains under `pinRoot`; with `hooks` (the specs' chains and their hooks),
    /// also each of those chains whose directory is gone while its root still runs
    /// on the hook, and each whose hook another program holds; and any other chain
    /// whose directory is gone while its root runs (`Chain.unpinnedRoots`, found by
    /// id: CAP_SYS_ADMIN). `deep` also reads every table entry.
    public static func observe(pinRoot: PinRoot, hooks: [String: ChainHook] = [:], deep: Bool = false) -> [ObservedChain] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: pinRoot.path)) ?? []
        // Chains are directories; the pin root also holds the transaction marker.
        let directories = names.filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: ChainPins(name, under: pinRoot).directory,
                                                  isDirectory: &isDirectory)
                && isDirectory.boolValue
        }
        let pinned = directories.map { observe($0, pinRoot: pinRoot, hook: hooks[$0], deep: deep) }
        let unpinned = hooks.filter { !directories.contains($0.key) }.compactMap { name, hook in
            observeHook(of: name, hook, pinRoot: pinRoot)
        }
        // Roots whose directory is gone and whose chain no spec names: found by their identity.
        let known = Set(directories).union(hooks.keys)
        let orphans = Chain.unpinnedRoots(pinRoot: pinRoot).filter { !known.contains($0.identity.settings.name) }
            .map { root in
                var chain = ObservedChain(name: root.identity.settings.name, record: nil, slots: [:],
                                          drift: [.orphaned(root.id)])
                chain.identity = root.identity
                return chain
            }
        return (pinned + unpinned + orphans).sorted { $0.name < $1.name }
    }

    /// The chains under `pinRoot`, and those of `desired` whose hook holds their
    /// root without a directory, or someone else's program (see `observe(pinRoot:hooks:)`).
    public static func observe(pinRoot: PinRoot, desired: [DesiredChain], deep: Bool = false) -> [ObservedChain] {
        observe(pinRoot: pinRoot, hooks: Dictionary(desired.map { ($0.settings.name, $0.settings.hook) },
                                                    uniquingKeysWith: { a, _ in a }), deep: deep)
    }

    /// A chain of the specs without a directory: whatever holds its hook, its own
    /// root (proven by the root's identity) or someone else's program; nil when the
    /// hook is free or cannot be read (no interface yet).
    static func observeHook(of name: String, _ hook: ChainHook, pinRoot: PinRoot) -> ObservedChain? {
        guard let attached = try? hook.attachedProgram() else { return nil }
        var chain = ObservedChain(name: name, record: nil, slots: [:], drift: [])
        if let identity = identity(of: { try Program(id: attached) }), identity.names(name, under: pinRoot) {
            chain.identity = identity
            chain.drift = [.orphaned(attached)]
        } else {
            chain.drift = [.hookTaken(by: attached)]
        }
        return chain
    }

    /// The identity a program carries, when it can be opened and carries one.
    static func identity(of program: () throws -> Program?) -> ChainIdentity? {
        guard let program = (try? program()) ?? nil else { return nil }
        return (try? ChainIdentity.of(program)) ?? nil
    }

    public static func observe(_ name: String, pinRoot: PinRoot, hook: ChainHook? = nil, deep: Bool = false)
        -> ObservedChain {
        let pins = ChainPins(name, under: pinRoot)
        var chain = ObservedChain(name: name, record: nil, slots: [:], drift: [])
        if ChainPins.isLeftover(name) {
            chain.record = (try? MetaRecordReader.read(pins[.meta])) ?? nil
            chain.drift = [chain.record == nil ? .foreign : .leftover]
            return chain
        }
        var why = "empty"
        do {
            chain.record = try MetaRecordReader.read(pins[.meta])
        } catch {
            why = pinRoot.exists(pins[.meta]) ? "\(error)" : "no meta pin"
        }
        if chain.record == nil {
            // Without its record, the chain is still tailor's when its root says so.
            // Its root: pinned, on the spec's hook, or the program using the root's maps still pinned.
            if let identity = identity(of: { try Chain.findRoot(name, pinRoot: pinRoot, hook: hook) }),
               identity.names(name, under: pinRoot) {
                chain.identity = identity
                chain.drift.append(.recordLost)
            } else {
                chain.drift.append(.metaMissing(why))
            }
            return chain
        }
        guard let record = chain.record else { return chain }
        let root = try? Program(pinnedAt: pins[.root]).info().id
        let attached = try? record.settings.hook.attachedProgram()
        if root == nil {
            // The root's pin is gone: its program may still run on the hook.
            if let attached, let identity = identity(of: { try Program(id: attached) }),
               identity.names(name, under: pinRoot) {
                chain.drift.append(.chainPinMissing(ChainPins.Pin.root.rawValue))
            } else {
                chain.drift.append(.rootGone)
                if let attached { chain.drift.append(.hookTaken(by: attached)) }
                return chain
            }
        }
        for pin in [ChainPins.Pin.packetMeta, .rootCounters] where !pinRoot.exists(pins[pin]) {
            chain.drift.append(.chainPinMissing(pin.rawValue))
        }
        let slots = try? ProgramArray(pinnedAt: pins[.progs]).occupiedSlots()
        if slots == nil { chain.drift.append(.chainPinMissing(ChainPins.Pin.progs.rawValue)) }
        chain.slots = slots ?? [:]
        // Mid-commit, slots and pins are between two records: recovery sorts them out.
        let interrupted = record.pending != nil || pinRoot.exists(pins.staging)
        if interrupted { chain.drift.append(.interruptedApply) }
        let configs = ConfigStore(pinRoot: pinRoot, chain: pins)
        let unreferenced = configs.unreferenced(by: record)
        if !interrupted && !unreferenced.isEmpty { chain.drift.append(.configsUnreferenced(unreferenced)) }
        for (cube, cubeRecord) in record.cubes.sorted(by: { $0.key < $1.key }) where !interrupted {
            // Read whole and checked here; parsed only by a plan that changes the cube.
            if let digest = cubeRecord.configDigest { chain.configs[cube] = configs.read(digest) }
            let running = chain.slots[cubeRecord.slot]?.rawValue == cubeRecord.program
            let missing = { (pin: String) -> Drift in
                running ? .cubePinMissing(cube: cube, pin: pin) : .pinMissing(pin)
            }
            let cubePins = pins.cube(cube)
            if !pinRoot.exists(cubePins.program) {
                chain.drift.append(missing(ChainPins.relative.cube(cube).program))
            }
            var tables: [String: BPFMap] = [:]
            for (map, role) in cubeRecord.maps.sorted(by: { $0.key < $1.key }) {
                guard pinRoot.exists(cubePins.map(map)) else {
                    chain.drift.append(missing(ChainPins.relative.cube(cube).map(map)))
                    continue
                }
                if role.isTable && deep || role == .generation { tables[map] = try? BPFMap(pinnedAt: cubePins.map(map)) }
            }
            if deep, let entries = try? liveTables(tables, roles: cubeRecord.maps), !entries.isEmpty {
                chain.tables[cube] = entries
            }
            if tableGenerationsUnsettled(tables, roles: cubeRecord.maps) { chain.drift.append(.tablesUnsettled(cube: cube)) }
            guard slots != nil else { continue }
            if let found = chain.slots[cubeRecord.slot] {
                if found.rawValue != cubeRecord.program {
                    chain.drift.append(.programSwapped(cube: cube, slot: cubeRecord.slot, found: found))
                }
            } else {
                chain.drift.append(.slotEmpty(cube: cube, slot: cubeRecord.slot))
            }
        }
        chain.tablesRead = deep && !interrupted
        if let attached, root != nil, attached != root {
            chain.drift.append(.hookTaken(by: attached))
        } else if attached == nil {
            // Nothing attached, or the interface or its namespace is gone: nothing can be attached.
            chain.drift.append(.rootDetached)
        }
        return chain
    }
}
