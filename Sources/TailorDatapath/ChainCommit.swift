import Foundation
import TailorKernel

/// New instances loaded and verified for a change, not yet reachable by any packet,
/// and the entries to change in place in the entry-safe tables of kept instances.
public struct PreparedCommit {
    public let plan: SlotPlan
    let instances: [String: CubeInstance]
    /// Cube -> its new blueprint digest and the entries its entry-safe tables get.
    public let tables: [String: TableUpdate]
    /// The spec digest and git revision to record with the change.
    let provenance: (specDigest: String, gitRevision: String?)?
    /// Per replaced cube, how each state map reaches the new instance.
    public let state: [String: [String: StateCarry]]
    /// State maps whose entries are copied into new maps (pre-copy, then a final pass).
    let migrations: [StateMigration]
    /// Why the change must not go ahead (a state map that cannot be carried over).
    public let refusals: [String]
    /// The configs of the cubes that get new records, by cube: encoded and written
    /// to the chain's `ConfigStore` by `switchOver`, before any record names them
    /// (not here: `Executor.verify` prepares every change only to drop it).
    let configs: [String: ConfigDocument]

    public var isEmpty: Bool { plan.isEmpty && tables.isEmpty }

    /// How many entries the old map of a migration holds now (nil for other maps).
    public func liveEntries(_ cube: String, _ map: String) throws -> Int? {
        try migrations.first { $0.cube == cube && $0.map == map }?.old.count()
    }
}

/// A state map to migrate: the old instance's map, the new instance's, and how
/// entries translate.
struct StateMigration {
    let cube: String
    let map: String
    let old: BPFMap
    let new: BPFMap
    let translation: EntryTranslation
}

/// What `Chain.statePlan` decided for one cube's state maps.
struct StatePlan {
    var carry: [String: BPFMap] = [:]
    var carries: [String: StateCarry] = [:]
    var migrate: [String: (BPFMap, EntryTranslation)] = [:]
    var refusals: [String] = []
}

/// The new entries of a kept instance's tables that change in place.
public struct TableUpdate: Sendable {
    public var digest: String
    /// The blueprint the new entries come from, and the live instance's record: the
    /// entries are built when the commit needs them, not by a plan's check.
    let blueprint: CubeBlueprint
    let record: CubeRecord
    /// The tables hold what `record.tableDigests` says (they were not left between two generations).
    let settled: Bool

    /// The digest of every in-place table after the change, for the record.
    var tableDigests: [String: String] { record.inPlaceDigests(of: blueprint) }

    /// The in-place tables whose digest the change changes: all of them when the
    /// earlier digests are unknown or unsettled.
    var changed: Set<String> {
        let digests = tableDigests
        let recorded = settled ? record.tableDigests : nil
        return Set(digests.keys.filter { recorded?[$0] != digests[$0] })
    }

    /// The new entries of the tables that change, and only those: the others are neither read nor written.
    public var entries: [String: [TableEntry]] {
        let changed = changed
        let tables = blueprint.tables(changed)
        return Dictionary(uniqueKeysWithValues: changed.map { ($0, tables[$0] ?? []) })
    }
    /// What the tables hold now, as the caller knows it (observed, or written by
    /// this process); nil: read from the kernel.
    public var before: [String: [TableEntry]]?
}

/// A prepared change made live by `Chain.switchOver`: packets take the new path,
/// and the old instances are still loaded and pinned, so `Chain.revert` can put
/// them back, even after `finish` retired them, for as long as this value lives.
public struct SwitchedCommit {
    let prepared: PreparedCommit
    let before: (instances: [String: CubeInstance], record: ChainRecord)
    /// Entries of the entry-safe tables changed in place, as they were.
    let tablesBefore: [String: [String: [TableEntry]]]
    /// Per cube, the switch of its versioned tables to the new generation.
    let generations: [String: GenerationSwitch]
    /// Each migrated map's old entries as the pre-copy read them.
    let copied: [FlatEntries]
    let started: ContinuousClock.Instant
    let committed: ContinuousClock.Instant

    /// Whether `finish` waits for packets on the old path: before old slots are
    /// emptied, before the final pass of a migration (the old instance must be done),
    /// and before the generation packets left is written (`GenerationSwitch.settle`).
    public var needsGrace: Bool {
        !prepared.plan.slotsToClear.isEmpty || !prepared.migrations.isEmpty || !generations.isEmpty
    }
}

/// What a commit did and how long each part took.
public struct CommitReport: Sendable {
    public var loaded: [String]
    public var retired: [String]
    public var commitSlot: Int?
    /// Staging the new instances, writing the fresh slots and the commit slot.
    public var commit: Duration
    /// Waiting for packets on the old path to finish.
    public var grace: Duration
}

/// The commit protocol. A change goes through `prepare` (load and verify, nothing
/// reachable), `switchOver` (new instances pinned under `staging/`, the record marked
/// pending, fresh slots filled, then the one write that switches packets), a grace
/// period, and `finish` (old slots emptied, staged pins promoted, record written).
/// A controller that dies half-way leaves the pending record and the staged pins,
/// from which `Chain.recover` undoes or finishes the change.
extension Chain {
    /// Loads every cube of a chain that does not exist yet, so the kernel verifier
    /// checks them all, against throwaway chain maps: nothing is pinned, attached or
    /// kept. Tables are checked to be the objects' own, not built or filled (the apply
    /// fills them before anything is switched: a 10,000-rule firewall's take a third of
    /// a first load). A rejected program throws with the verifier's log. Returns the refusals
    /// of state maps the cubes would share with a zone of another layout.
    public static func verify(_ settings: ChainSettings, topology: Topology, zones: StateZones) throws -> [String] {
        let shared = try LoadedRoot(settings, identity: ChainIdentity(settings: settings, pinRoot: zones.pinRoot)).shared
        let plan = try SlotPlan.make(live: [:], desired: topology, capacity: ABI.progSlots)
        var refusals: [String] = []
        for (cube, wiring) in plan.load.sorted(by: { $0.key < $1.key }) {
            guard let node = topology.nodes[cube] else { continue }
            var joined = StatePlan()
            try joined.join(zones, cube: cube, blueprint: node.blueprint)
            refusals += joined.refusals
            _ = try CubeInstance.load(node.blueprint, as: cube, hook: settings.hook, wiring: wiring,
                                      settings: settings, shared: shared, carry: joined.carry, fillingTables: false)
        }
        return refusals
    }

    /// Loads every instance the move to `topology` needs; the kernel verifies each.
    /// Nothing is reachable by packets until `commit`.
    /// A cube whose blueprint differs only in entries of entry-safe tables keeps its
    /// instance; its entries are changed in place by `switchOver`.
    /// `specDigest` and `gitRevision`, when given, go into the record the commit
    /// writes; `digests` are the cubes' blueprint digests when the caller has them;
    /// `liveTables`, the entries of the cubes' tables as observed (what the kept
    /// instances' tables hold, so a change writes only the entries that differ).
    public func prepare(_ topology: Topology, specDigest: String? = nil, gitRevision: String? = nil,
                        digests: [String: String] = [:], zones: StateZones? = nil,
                        liveTables: [String: [String: [TableEntry]]] = [:]) throws -> PreparedCommit {
        let zones = zones ?? StateZones(pinRoot: pinRoot)
        var live = layout
        var inPlace: [String: TableUpdate] = [:]
        // The config of each cube that gets a new record: encoded when committed.
        var configs: [String: ConfigDocument] = [:]
        for (cube, instance) in instances {
            guard let blueprint = topology.nodes[cube]?.blueprint else { continue }
            let digest = digests[cube] ?? blueprint.digest
            guard instance.record.differsOnlyInEntries(from: blueprint, digest: digest) else { continue }
            live[cube]?.digest = digest
            inPlace[cube] = TableUpdate(
                digest: digest, blueprint: blueprint, record: instance.record,
                settled: !tableGenerationsUnsettled(instance.maps, roles: instance.record.maps),
                before: liveTables[cube] ?? instance.knownTables)
            configs[cube] = blueprint.config
        }
        let plan = try SlotPlan.make(live: live, desired: topology, capacity: progs.capacity, digests: digests)
        var loaded: [String: CubeInstance] = [:]
        var state: [String: [String: StateCarry]] = [:], migrations: [StateMigration] = [], refusals: [String] = []
        for (cube, record) in plan.load.sorted(by: { $0.key < $1.key }) {
            guard let node = topology.nodes[cube] else { continue }
            guard node.next.count == node.blueprint.outputs else {
                throw DatapathError(.outputsMismatch, chain: settings.name, cube: cube, sentence:
                    "cube \(cube) has \(node.blueprint.outputs) outputs but \(node.next.count) next cubes are given")
            }
            var carried = try statePlan(cube, to: node.blueprint, digest: record.digest)
            try carried.join(zones, cube: cube, blueprint: node.blueprint)
            let instance = try CubeInstance.load(
                node.blueprint, as: cube, hook: settings.hook, wiring: record, settings: settings,
                shared: shared, carry: carried.carry)
            try zones.register(instance)
            loaded[cube] = instance
            configs[cube] = node.blueprint.config
            if !carried.carries.isEmpty { state[cube] = carried.carries }
            refusals += carried.refusals
            for (name, (old, translation)) in carried.migrate.sorted(by: { $0.key < $1.key }) {
                guard let new = instance.maps[name] else { continue }
                migrations.append(StateMigration(cube: cube, map: name, old: old, new: new, translation: translation))
            }
        }
        // A cube the path copy loads anew gets its new tables with its new instance.
        return PreparedCommit(plan: plan, instances: loaded, tables: inPlace.filter { loaded[$0.key] == nil },
                              provenance: specDigest.map { ($0, gitRevision) }, state: state, migrations: migrations,
                              refusals: refusals, configs: configs)
    }

    /// How the state maps of `cube`'s live instance reach a new instance of
    /// `blueprint`: all maps are taken over when the blueprint is the same (a path
    /// copy); else each state map is reused, migrated, reset or refused by comparing
    /// the live map's layout with the new object's declaration. A map the new object
    /// no longer declares is dropped.
    func statePlan(_ cube: String, to blueprint: CubeBlueprint, digest: String) throws -> StatePlan {
        guard let old = instances[cube] else { return StatePlan() }
        if old.record.digest == digest { return StatePlan(carry: old.maps) }
        let declared = try MapLayout.declared(in: BPFObject(bytes: blueprint.object, name: cube))
        var plan = StatePlan()
        for (name, map) in old.maps.sorted(by: { $0.key < $1.key }) where old.record.maps[name] == .state {
            guard let layout = declared[name] else { continue }
            let carry = StateCarry.between(try MapLayout(of: map, recorded: old.stateLayouts[name]), layout,
                                           reset: blueprint.resetState.contains(name))
            plan.carries[name] = carry
            switch carry {
            case .reuse:
                plan.carry[name] = map
            case .migrate(let translation):
                if let limit = translation.shrinksTo, try map.count() > limit {
                    plan.refusals.append("cube \(cube): state map \(name) holds \(try map.count()) entries, more than "
                        + "the \(limit) the new object's map holds; add `migration: {\(name): reset}` to start it empty")
                }
                plan.migrate[name] = (map, translation)
            case .reset:
                break
            case .refuse(let reason):
                plan.refusals.append("cube \(cube): state map \(name) cannot be carried over: \(reason); add "
                    + "`migration: {\(name): reset}` to the cube to start it empty")
            }
        }
        return plan
    }

    /// Makes a prepared change live: tables of kept instances first (entry-safe ones
    /// entry by entry, versioned ones by a switch of generations), then the new
    /// instances. On failure the chain is put back as it was.
    public func switchOver(_ prepared: PreparedCommit) throws -> SwitchedCommit {
        let clock = ContinuousClock()
        let start = clock.now
        let before = (instances: instances, record: record)
        let plan = prepared.plan
        var tablesBefore: [String: [String: [TableEntry]]] = [:]
        var generations: [String: GenerationSwitch] = [:]
        var copied: [FlatEntries] = []
        guard prepared.refusals.isEmpty else { throw DatapathError.refused(prepared.refusals, chain: settings.name) }
        if let new = prepared.provenance { provenance = (new.specDigest, new.gitRevision) }
        var recorded: [String: [UInt8]] = [:], digests: [String: String] = [:]
        for (cube, config) in prepared.configs {
            let json = config.canonicalJSON
            let digest = ConfigDocument.digest(of: json)
            (digests[cube], recorded[digest]) = (digest, json)
        }
        for (cube, instance) in prepared.instances { instance.record.configDigest = digests[cube] }
        do {
            // The record written below names these: they are there before it is.
            if plan.isEmpty && !recorded.isEmpty {
                try step("write configs") { try configs.write(recorded) }
            }
            for (cube, update) in prepared.tables.sorted(by: { $0.key < $1.key }) {
                guard let instance = instances[cube] else { continue }
                let (entries, tableDigests) = (update.entries, update.tableDigests)
                if !entries.isEmpty, let tables = try instance.generations {
                    try step("switch the tables of cube \(cube) to a new generation") {
                        generations[cube] = try tables.switchTo(entries, from: update.before,
                                                                grace: waitForGracePeriod)
                    }
                }
                for (name, entries) in entries.sorted(by: { $0.key < $1.key })
                where instance.record.maps[name] == .entrySafeTable {
                    guard let map = instance.maps[name] else { continue }
                    let current = try update.before?[name]
                        ?? map.lookupBatch().map { TableEntry(key: $0.key, value: $0.value) }
                    tablesBefore[cube, default: [:]][name] = current
                    try step("update table \(name) of cube \(cube)") { try Chain.sync(map, to: entries, current: current) }
                }
                var record = instance.record
                record.digest = update.digest
                record.configDigest = digests[cube]
                record.tableDigests = tableDigests
                // What this process knows the tables hold: what it knew, with what it wrote.
                let known = instance.knownTables.map { $0.merging(entries) { _, new in new } }
                    ?? (entries.count == tableDigests.count ? entries : nil)
                instances[cube] = CubeInstance(cube: cube, program: instance.program, maps: instance.maps, record: record,
                                               stateLayouts: instance.stateLayouts, knownTables: known)
            }
            if plan.isEmpty {
                // The old configs stay until `finish`: a revert puts the old record back.
                if record != before.record { try step("write record") { try meta.write(record) } }
                return SwitchedCommit(prepared: prepared, before: before, tablesBefore: tablesBefore,
                                      generations: generations, copied: [], started: start, committed: clock.now)
            }
            // Pre-copy while the old instance still runs; what it writes from now on
            // is picked up by the final pass.
            for migration in prepared.migrations {
                try step("migrate map \(migration.map) of cube \(migration.cube)") {
                    let entries = try migration.old.readAll()
                    try migration.new.writeAll(migration.translation.translate(entries, cpus: BPFMap.possibleCPUs))
                    copied.append(entries)
                }
            }
            var pending = before.record
            // Every cube of the result is either newly loaded or kept where it is.
            pending.pending = PendingCommit(
                cubes: Dictionary(uniqueKeysWithValues: plan.result.keys.compactMap { cube in
                    (prepared.instances[cube] ?? instances[cube]).map { (cube, $0.record) }
                }),
                commitSlot: plan.commitSlot)
            pending.layouts = ChainRecord.layouts(of: Array(instances.values) + Array(prepared.instances.values))
            for (cube, instance) in prepared.instances.sorted(by: { $0.key < $1.key }) {
                try step("stage cube \(cube)") { try pin(instance, at: pins.staged(cube)) }
            }
            // After staging, so an apply killed here leaves staged pins and recovery
            // removes these too; before the pending record, which names them.
            if !recorded.isEmpty { try step("write configs") { try configs.write(recorded) } }
            try step("write pending record") { try meta.write(pending) }
            for (cube, instance) in prepared.instances.sorted(by: { $0.key < $1.key }) where cube != plan.commitCube {
                try step("fill slot \(instance.record.slot)") { try progs.set(instance.record.slot, to: instance.program) }
            }
            if let cube = plan.commitCube, let slot = plan.commitSlot, let instance = prepared.instances[cube] {
                try step("commit slot \(slot)") { try progs.set(slot, to: instance.program) }
            } else if plan.commitSlot == 0 {
                try step("empty slot 0") { try progs.clear(0) }
            }
        } catch {
            let undo = rollBack(to: before, prepared: prepared, tables: tablesBefore, generations: generations)
            throw undo.error(after: error)
        }
        return SwitchedCommit(prepared: prepared, before: before, tablesBefore: tablesBefore, generations: generations,
                              copied: copied, started: start, committed: clock.now)
    }

    /// Retires what a switched change replaced, once packets on the old path are
    /// done (the caller waits a grace period when `needsGrace`): settles switched
    /// tables, empties the old slots, promotes the staged pins and writes the record.
    /// On failure the chain is put back as it was before the switch.
    public func finish(_ switched: SwitchedCommit) throws {
        let prepared = switched.prepared
        let plan = prepared.plan
        do {
            for (cube, generation) in switched.generations.sorted(by: { $0.key < $1.key }) {
                try step("settle the tables of cube \(cube)") { try generation.settle() }
            }
            guard !plan.isEmpty else {
                if record != switched.before.record {
                    try step("remove unused configs") { try configs.trim(to: record) }
                }
                return
            }
            for (migration, copied) in zip(prepared.migrations, switched.copied) {
                try step("final pass of map \(migration.map) of cube \(migration.cube)") {
                    let (updates, deletes) = migration.translation.finalPass(
                        before: copied, after: try migration.old.readAll(), current: try migration.new.readAll(),
                        cpus: BPFMap.possibleCPUs)
                    try migration.new.writeAll(updates)
                    for key in deletes { _ = try migration.new.delete(key) }
                }
            }
            for slot in plan.slotsToClear { try step("empty slot \(slot)") { try progs.clear(slot) } }
            for cube in plan.retire.keys { instances[cube] = nil }
            for (cube, instance) in prepared.instances { instances[cube] = instance }
            for cube in plan.retire.keys.sorted() where prepared.instances[cube] == nil {
                try step("unpin cube \(cube)") { try pinRoot.removeTree(pins.cube(cube).directory) }
            }
            for cube in prepared.instances.keys.sorted() {
                try step("promote cube \(cube)") {
                    try pinRoot.removeTree(pins.cube(cube).directory)
                    try pinRoot.rename(pins.staged(cube).directory, to: pins.cube(cube).directory)
                }
            }
            try pinRoot.removeTree(pins.staging)
            try step("write record") { try meta.write(record) }
            try step("remove unused configs") { try configs.trim(to: record) }
        } catch {
            throw revert(switched).error(after: error)
        }
        logger.debug("chain commit", metadata: [
            "chain": "\(settings.name)", "loaded": "\(prepared.instances.keys.sorted())",
            "retired": "\(plan.retire.keys.sorted())", "slot": "\(plan.commitSlot.map(String.init) ?? "-")",
        ])
    }

    /// Puts the chain back as it was before `switched`, whether or not it was
    /// finished; the undo says which of its steps failed.
    public func revert(_ switched: SwitchedCommit) -> Undo {
        rollBack(to: switched.before, prepared: switched.prepared, tables: switched.tablesBefore,
                 generations: switched.generations)
    }

    /// Switches, waits a grace period if old slots need one, and finishes.
    public func commit(_ prepared: PreparedCommit) throws -> CommitReport {
        let switched = try switchOver(prepared)
        if switched.needsGrace {
            do {
                try step("wait for a grace period") { try waitForGracePeriod() }
            } catch {
                throw revert(switched).error(after: error)
            }
        }
        let graceDone = ContinuousClock.now
        try finish(switched)
        return CommitReport(loaded: prepared.instances.keys.sorted(), retired: prepared.plan.retire.keys.sorted(),
                            commitSlot: prepared.plan.commitSlot, commit: switched.committed - switched.started,
                            grace: graceDone - switched.committed)
    }

    /// Prepares and commits in one call.
    @discardableResult
    public func apply(_ topology: Topology) throws -> CommitReport {
        try commit(prepare(topology))
    }

    func step(_ name: String, _ body: () throws -> Void) throws {
        try failpoint?(name)
        try body()
    }

    /// Puts the chain back exactly as it was before a change: old instances into
    /// their slots (the commit slot last, so the old path is whole when packets
    /// return to it), fresh slots emptied after a grace period, pins and record as
    /// they were. A step that fails is logged and kept in the returned undo, and the
    /// rest goes on.
    func rollBack(
        to before: (instances: [String: CubeInstance], record: ChainRecord),
        prepared: PreparedCommit, tables: [String: [String: [TableEntry]]], generations: [String: GenerationSwitch]
    ) -> Undo {
        let undo = Undo(settings.name, logger: logger, failpoint: failpoint)
        let attempt = undo.attempt
        let oldBySlot = Dictionary(before.instances.values.map { ($0.record.slot, $0) }, uniquingKeysWith: { a, _ in a })
        let commitSlot = prepared.plan.commitSlot
        // A change of table entries alone wrote no slot.
        for (slot, instance) in oldBySlot.sorted(by: { $0.key < $1.key })
        where slot != commitSlot && !prepared.plan.isEmpty {
            attempt("restore slot \(slot)") { try self.progs.set(slot, to: instance.program) }
        }
        if let commitSlot {
            if let instance = oldBySlot[commitSlot] {
                attempt("restore slot \(commitSlot)") { try self.progs.set(commitSlot, to: instance.program) }
            } else {
                attempt("empty slot \(commitSlot)") { _ = try self.progs.clear(commitSlot) }
            }
        }
        let fresh = prepared.instances.values.map(\.record.slot).filter { oldBySlot[$0] == nil && $0 != commitSlot }
        if !fresh.isEmpty {
            attempt("wait for a grace period") { try self.waitForGracePeriod() }
            for slot in fresh { attempt("empty slot \(slot)") { _ = try self.progs.clear(slot) } }
        }
        for (cube, generation) in generations.sorted(by: { $0.key < $1.key }) {
            attempt("switch the tables of cube \(cube) back") { try generation.undo(grace: self.waitForGracePeriod) }
        }
        for (cube, maps) in tables {
            for (name, entries) in maps {
                guard let map = before.instances[cube]?.maps[name] else { continue }
                attempt("restore table \(name) of cube \(cube)") { try Chain.sync(map, to: entries) }
            }
        }
        instances = before.instances
        provenance = (before.record.specDigest, before.record.gitRevision)
        for cube in Set(prepared.instances.keys).union(prepared.plan.retire.keys) {
            attempt("restore pins of \(cube)") {
                try self.pinRoot.removeTree(self.pins.cube(cube).directory)
                if let instance = before.instances[cube] { try self.pin(instance, at: self.pins.cube(cube)) }
            }
        }
        attempt("remove staged pins") { try self.pinRoot.removeTree(self.pins.staging) }
        attempt("restore record") { try self.meta.write(before.record) }
        attempt("remove configs of the change") { try self.configs.trim(to: before.record) }
        return undo
    }
}
