import TailorCubes
import TailorDatapath

/// A chain as the specs want it, in the datapath's terms.
public struct DesiredChain: Sendable {
    public let settings: ChainSettings
    public let topology: Topology
    /// `Topology.digest(settings:)`: equal digests build equal datapaths.
    public let digest: String
    /// Each cube's blueprint digest, computed once (tables can be large).
    public let cubeDigests: [String: String]
    /// A suspended chain is left as it is in the kernel.
    public var suspend: Bool
    /// Drift is put back when true, only reported when false.
    public var repairDrift: Bool

    public init(settings: ChainSettings, topology: Topology, suspend: Bool = false, repairDrift: Bool = true) {
        self.settings = settings
        self.topology = topology
        self.cubeDigests = topology.nodes.mapValues(\.blueprint.digest)
        self.digest = topology.digest(settings: settings, cubeDigests: cubeDigests)
        self.suspend = suspend
        self.repairDrift = repairDrift
    }
}

/// What will happen to one cube.
public struct CubeChange: Sendable, Equatable, Codable {
    public enum Action: String, Sendable, Codable {
        /// `update`: entries of entry-safe tables change in place; the instance stays.
        case add, replace, relink, update, remove, keep
    }
    public var name: String
    public var type: String
    public var action: Action
    /// Why: the attribute that forces a replacement, or what a relink changes.
    public var reasons: [String]
    /// Entry changes of tables updated in place.
    public var tables: [TableDelta] = []
    /// For a replaced cube, how each state map reaches the new instance (filled in
    /// by `Executor.verify`, which reads the live maps' layouts).
    public var state: [StateMapChange] = []
    /// What changes in its config, attribute by attribute (a created cube: all of it).
    public var changes: [AttributeChange] = []
    /// Per list, set or map with changes (`rules`): how many of its items stay.
    public var unchanged: [String: Int] = [:]
    /// Why `changes` is empty although the config changed: no trustworthy record of
    /// the live config to compare with (the plan then says only what the cube does).
    public var valuesUnavailable: String?

    public init(name: String, type: String, action: Action, reasons: [String], tables: [TableDelta] = [],
                state: [StateMapChange] = [], changes: [AttributeChange] = []) {
        (self.name, self.type, self.action, self.reasons, self.tables, self.state) =
            (name, type, action, reasons, tables, state)
        self.changes = changes
    }

    enum CodingKeys: String, CodingKey {
        case name, type, action, reasons, tables, state, changes, unchanged, valuesUnavailable
    }

    /// A cube the config comparison keeps (or updates in place) still gets a new
    /// instance when it lies between the commit cube and a change (`SlotPlan`, the
    /// path copy): it becomes a relink that says so, its maps taken over as they are.
    mutating func markPathCopy(_ slots: SlotPlan) {
        guard action == .keep || action == .update, slots.load[name] != nil else { return }
        action = .relink
        reasons.append("new instance, maps kept: on the path from cube \(slots.commitCube ?? "?") to a change (path copy)")
    }

    /// Plans saved before a field existed lack it: read as empty.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        type = try container.decode(String.self, forKey: .type)
        action = try container.decode(Action.self, forKey: .action)
        reasons = try container.decode([String].self, forKey: .reasons)
        tables = try container.decodeIfPresent([TableDelta].self, forKey: .tables) ?? []
        state = try container.decodeIfPresent([StateMapChange].self, forKey: .state) ?? []
        changes = try container.decodeIfPresent([AttributeChange].self, forKey: .changes) ?? []
        unchanged = try container.decodeIfPresent([String: Int].self, forKey: .unchanged) ?? [:]
        valuesUnavailable = try container.decodeIfPresent(String.self, forKey: .valuesUnavailable)
    }

    /// The attribute changes from the config `observed` recorded for this cube to
    /// `desired` (the spec's). With `replacing`, the changes `words` does not make
    /// in place are marked as forcing the replacement.
    mutating func compare(_ desired: ConfigDocument?, observed: ObservedChain, live: CubeRecord, words: CubeWords,
                          replacing: Bool) {
        guard let desired else { return }
        let recorded: ConfigDocument
        switch observed.configs[name] {
        case .json(let json):
            do {
                recorded = try ConfigDocument(json: json)
            } catch {
                valuesUnavailable = "its recorded config cannot be read: \(error)"
                return
            }
        case .unavailable(let why):
            valuesUnavailable = why
            return
        case nil:
            valuesUnavailable = "it was committed by a tailor that did not record configs"
            return
        }
        let inPlace = live.inPlaceTables
        let diff = ConfigDiff.between(recorded, desired) { replacing && !words.inPlace($0, inPlace) }
        (changes, unchanged) = (diff.changes, diff.unchanged)
    }
}

/// How one state map of a replaced cube is carried over.
public struct StateMapChange: Sendable, Equatable, Codable {
    public enum Action: String, Sendable, Codable {
        /// The same map, taken over as is.
        case kept
        /// A new map, entries translated field by field.
        case migrated
        /// Starts empty, as the spec asks.
        case reset
        /// Cannot be carried over: the plan is refused.
        case refused
    }
    public var map: String
    public var action: Action
    /// What changes (`+field -field ~field u32->u64`), or why it is refused.
    public var detail: String
    /// Entries the live map holds, for migrated maps.
    public var entries: Int?

    public init(map: String, carry: StateCarry, entries: Int? = nil) {
        self.map = map
        self.entries = entries
        switch carry {
        case .reuse: (action, detail) = (.kept, "")
        case .migrate(let translation): (action, detail) = (.migrated, translation.summary)
        case .reset: (action, detail) = (.reset, "migration: reset")
        case .refuse(let reason): (action, detail) = (.refused, reason)
        }
    }
}

/// How a table's entries change: counts, and each entry as `+|~|- KEY = VALUE` (hex).
public struct TableDelta: Sendable, Equatable, Codable {
    public var map: String
    public var added = 0, changed = 0, removed = 0
    public var entries: [String] = []

    public var isEmpty: Bool { added + changed + removed == 0 }
    public var summary: String { "table \(map): +\(added) ~\(changed) -\(removed) entries" }

    /// From `live` entries to `desired` ones.
    init(_ map: String, desired: [TableEntry], live: [TableEntry]) {
        self.map = map
        let hex = hexDigest(_:) as ([UInt8]) -> String
        let differences = Self.differences(from: live, to: desired)
        for change in differences where change.after == nil {
            removed += 1
            entries.append("- \(hex(change.key)) = \(hex(change.before ?? []))")
        }
        for change in differences where change.after != nil {
            if let before = change.before {
                changed += 1
                entries.append("~ \(hex(change.key)) = \(hex(before)) -> \(hex(change.after ?? []))")
            } else {
                added += 1
                entries.append("+ \(hex(change.key)) = \(hex(change.after ?? []))")
            }
        }
    }

    /// The entries that differ from `old` to `new`, by key: an entry of `new` that
    /// `old` holds otherwise, one `old` lacks, and one `new` lacks. An all-zero entry
    /// only one side holds counts as absent (array maps hold every key). Tables of
    /// 65,537 entries are compared on every plan: only the differences are sorted.
    static func differences(from old: [TableEntry], to new: [TableEntry]) -> [TableEntryChange] {
        if old == new { return [] }
        let before = Dictionary(old.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        let zero = { (value: [UInt8]) in !value.contains { $0 != 0 } }
        var changes: [TableEntryChange] = []
        for (key, value) in after where before[key] != value && (before[key] != nil || !zero(value)) {
            changes.append(TableEntryChange(key: key, before: before[key], after: value))
        }
        for (key, value) in before where after[key] == nil && !zero(value) {
            changes.append(TableEntryChange(key: key, before: value, after: nil))
        }
        return changes.sorted { $0.key.lexicographicallyPrecedes($1.key) }
    }
}

/// What will happen to one chain.
public struct ChainChange: Sendable, Equatable, Codable {
    public enum Action: String, Sendable, Codable {
        case create, update, replace, destroy, none
        /// Unchanged in the specs, but drift is put back from the chain's pins.
        case repair
        /// Not tailor's to change: suspended in the spec, or unreadable state.
        case skip
    }
    public var name: String
    public var action: Action
    /// Where the chain attaches; nil where nothing readable says (a directory
    /// without a record).
    @HookDescription public var hook: ChainHook?
    public var reasons: [String]
    public var cubes: [CubeChange]
    /// Drift observe found, shown first.
    public var drift: [DriftNote]
    /// Whether apply repairs the drift (slots and hook put back from the pins).
    public var repairsDrift = false
    /// Why the change cannot be made without `--takeover`: another program holds
    /// the chain's hook. The daemon applies every other chain and reports this one;
    /// `tailor apply` refuses the whole plan unless told to skip it.
    public var blocked: String?

    /// A chain tailor made goes away; the removal of an interrupted apply's leftovers
    /// does not count (nothing that carried packets is lost).
    public var destroysChain: Bool { action == .destroy && !ChainPins.isLeftover(name) }
}

/// A chain's hook as plans write it: its description ("tc-ingress on tl-b in netns
/// tailor-lab-b"), "?" where it is not known, read back by `ChainHook(description:)`.
@propertyWrapper
public struct HookDescription: Sendable, Equatable, Codable {
    public var wrappedValue: ChainHook?

    public init(wrappedValue: ChainHook?) { self.wrappedValue = wrappedValue }

    public init(from decoder: any Decoder) throws {
        wrappedValue = ChainHook(description: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(wrappedValue?.description ?? "?")
    }
}

/// One drift found in a chain, as a plan records it: its kind (`root-detached`,
/// `table-changed`, ...) for logs, metrics and the apply, and what was found.
public struct DriftNote: Sendable, Equatable, Codable, CustomStringConvertible {
    public var kind: DriftKind
    public var what: String

    public init(_ drift: Drift) {
        kind = drift.kind
        what = drift.description
    }

    public var description: String { what }
}

/// What becomes of the chains tailor owns that the specs no longer hold.
///
/// One value instead of two flags, so the safety rule has one home: specs that hold
/// no chain at all look exactly like an empty, missing or half-synced spec directory,
/// so destroying every live chain takes `pruneAllowingEmpty`, never plain `prune`.
public enum Prune: Sendable, Equatable {
    /// Keep them (`--no-prune`).
    case keep
    /// Destroy them, except when the specs hold no chain while chains are live:
    /// that plan is refused.
    case prune
    /// Destroy them, also when that leaves no chain (`--allow-empty`).
    case pruneAllowingEmpty
}

/// The plan: per chain what changes and why, and totals over cubes.
public struct Plan: Sendable, Equatable, Codable {
    public static let formatVersion = 2

    public struct Summary: Sendable, Equatable, Codable {
        public var add = 0, change = 0, replace = 0, destroy = 0, repair = 0

        /// Counts a chain's cube changes and its repair.
        mutating func tally(_ chain: ChainChange) {
            if chain.repairsDrift { repair += 1 }
            for cube in chain.cubes {
                switch cube.action {
                case .add: add += 1
                case .relink, .update: change += 1
                case .replace: replace += 1
                case .remove: destroy += 1
                case .keep: break
                }
            }
        }
    }

    public var formatVersion = Plan.formatVersion
    public var chains: [ChainChange]
    public var summary: Summary
    /// Why the plan must not be applied: specs that hold no chain while chains are
    /// live (set by the planner, see `Prune`), state that cannot be carried over (set
    /// by `Executor.verify`). Plan and apply exit 1 when it is not empty, and the
    /// daemon applies nothing.
    public var refusals: [String] = []

    /// A plan of `chains`, with the totals counted from them.
    public init(chains: [ChainChange], refusals: [String] = []) {
        self.chains = chains
        self.refusals = refusals
        summary = Summary()
        for change in chains where change.action != .skip { summary.tally(change) }
    }

    /// No chain changes (drift alone is shown but changes nothing yet).
    public var isEmpty: Bool { chains.allSatisfy { $0.action == .none || $0.action == .skip } }
}

/// The planner: a pure function of (desired, observed) -> plan.
public enum Planner {
    /// Table entries changed by hand that drift lists one by one; past this many in
    /// a table, the table's counts come first.
    static let driftEntriesShown = 5

    /// Entries of `live` tables that differ from what the spec put there, each in
    /// the words of the cube's type where it has them (`words`, with the desired
    /// `config`), else as hex. Keys the spec does not name must be absent or all
    /// zero (array maps hold every key).
    static func tableDrift(_ cube: String, desired: [String: [TableEntry]], live: [String: [TableEntry]],
                           words: CubeWords = .none, config: ConfigDocument? = nil) -> [Drift] {
        live.sorted(by: { $0.key < $1.key }).flatMap { map, entries -> [Drift] in
            // What was done by hand is the change from the spec's entries to the live ones.
            let changes = TableDelta.differences(from: desired[map] ?? [], to: entries)
            guard !changes.isEmpty else { return [] }
            var drift: [Drift] = []
            if changes.count > driftEntriesShown {
                let added = changes.filter { $0.before == nil }.count, removed = changes.filter { $0.after == nil }.count
                drift.append(.tableChanged(cube: cube, map: map, added: added, changed: changes.count - added - removed,
                                           removed: removed))
            }
            for change in changes.prefix(driftEntriesShown) {
                let hex = { (bytes: [UInt8]?) in bytes.map(hexDigest) }
                let said = words.entry(map, change, config)
                    ?? EntryWords(key: hexDigest(change.key), before: hex(change.before), after: hex(change.after))
                let sentence = switch (change.before, change.after) {
                case (nil, _): "added out of band" + ((said.summary ?? said.after).map { ": \($0)" } ?? "")
                case (_, nil): "removed out of band" + ((said.summary ?? said.before).map { " (was \($0))" } ?? "")
                default: "changed out of band: " + (said.summary ?? "\(said.before ?? "?") -> \(said.after ?? "?")")
                }
                drift.append(.tableEntryChanged(cube: cube, map: map, key: said.key, change: sentence))
            }
            return drift
        }
    }

    /// The chains tailor owns that are live: a readable record, not an interrupted
    /// apply's leftovers (those are removed whatever the specs say).
    public static func liveChains(_ observed: [ObservedChain]) -> [String] {
        observed.filter { !$0.isLeftover && $0.record != nil }.map(\.name).sorted()
    }

    /// The plan from `observed` to `desired`. With `prune`, specs that hold no chain
    /// while chains are live give a refused plan (see `Prune`).
    public static func plan(desired: [DesiredChain], observed: [ObservedChain], prune: Prune = .prune) -> Plan {
        var changes: [ChainChange] = []
        let destroys = prune != .keep
        let observedByName = Dictionary(observed.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let desiredNames = Set(desired.map(\.settings.name))
        for chain in desired.sorted(by: { $0.settings.name < $1.settings.name }) {
            changes.append(plan(chain, observedByName[chain.settings.name]))
        }
        for chain in observed where !desiredNames.contains(chain.name) {
            if chain.isLeftover {
                changes.append(ChainChange(name: chain.name, action: .destroy,
                                           hook: chain.record?.settings.hook,
                                           reasons: ["pins left behind by an interrupted apply; removed"], cubes: [],
                                           drift: chain.drift.map(DriftNote.init)))
                continue
            }
            if chain.record == nil, let identity = chain.identity {
                changes.append(ChainChange(
                    name: chain.name, action: destroys ? .destroy : .skip, hook: identity.settings.hook,
                    reasons: [destroys ? "no longer in the specs" : "no longer in the specs; kept (--no-prune)"],
                    cubes: [], drift: chain.drift.map(DriftNote.init)))
                continue
            }
            guard let record = chain.record else {
                changes.append(ChainChange(name: chain.name, action: .skip, hook: nil,
                                           reasons: ["not a chain tailor can read; left alone"], cubes: [],
                                           drift: chain.drift.map(DriftNote.init)))
                continue
            }
            let cubes = record.cubes.keys.sorted().map {
                CubeChange(name: $0, type: record.cubes[$0]?.type ?? "?", action: destroys ? .remove : .keep, reasons: [])
            }
            changes.append(ChainChange(
                name: chain.name, action: destroys ? .destroy : .skip, hook: record.settings.hook,
                reasons: [destroys ? "no longer in the specs" : "no longer in the specs; kept (--no-prune)"],
                cubes: cubes, drift: chain.drift.map(DriftNote.init)))
        }
        // Destroys first: they are what a reader of the plan must not miss.
        changes.sort { ($0.destroysChain ? 0 : 1, $0.name) < ($1.destroysChain ? 0 : 1, $1.name) }
        var plan = Plan(chains: changes)
        let live = liveChains(observed)
        if prune == .prune && desired.isEmpty && !live.isEmpty { plan.refusals.append(emptySpecsRefusal(live)) }
        return plan
    }

    /// Why a plan that would destroy every live chain (`live`, not empty) is refused.
    static func emptySpecsRefusal(_ live: [String]) -> String {
        let shown = live.count > 10 ? live.prefix(10).joined(separator: ", ") + ", and \(live.count - 10) more"
            : live.joined(separator: ", ")
        let (chains, all, them) = live.count == 1 ? ("1 chain is", "it", "it")
            : ("\(live.count) chains are", "them all", "them")
        return "the specs hold no chains while \(chains) live (\(shown)); refusing to destroy \(all): an empty, "
            + "missing or half-synced spec directory looks like this. Give --allow-empty to remove every chain, "
            + "or --no-prune to keep \(them)."
    }

    static func plan(_ desired: DesiredChain, _ observed: ObservedChain?) -> ChainChange {
        var drift = observed?.drift ?? []
        for cube in desired.topology.reachable {
            // Only a deep observe read the entries; the desired ones are built only then.
            guard let observed, observed.tables[cube] != nil, let node = desired.topology.nodes[cube],
                  observed.record?.cubes[cube]?.digest == desired.cubeDigests[cube] else { continue }
            drift += tableDrift(cube, desired: node.blueprint.tables, live: observed.tables[cube] ?? [:],
                                words: CubeType.words(of: node.blueprint.type), config: node.blueprint.config)
        }
        var change = plan(desired, observed, drift: drift)
        let taken = drift.compactMap { if case .hookTaken(let id) = $0 { id } else { nil } }
        if let id = taken.first, change.action != .skip {
            let reason = "\(desired.settings.hook) is held by \(id), a program that is not tailor's; --takeover replaces it"
            change.blocked = reason
            change.reasons.append("blocked: " + reason)
        }
        return change
    }

    /// The change of one chain, given every drift found in it (observed and in its tables).
    private static func plan(_ desired: DesiredChain, _ observed: ObservedChain?, drift observedDrift: [Drift])
        -> ChainChange {
        let name = desired.settings.name
        let hook = desired.settings.hook
        let reachable = desired.topology.reachable
        let type = { (cube: String) in desired.topology.nodes[cube]?.blueprint.type ?? "?" }
        let added = { (cube: String) in
            CubeChange(name: cube, type: type(cube), action: .add, reasons: [],
                       changes: desired.topology.nodes[cube]?.blueprint.config.map(ConfigDiff.created) ?? [])
        }
        guard let observed else {
            return ChainChange(name: name, action: desired.suspend ? .skip : .create, hook: hook,
                               reasons: desired.suspend ? ["suspended in the spec"] : [],
                               cubes: reachable.map {
                                   desired.suspend ? CubeChange(name: $0, type: type($0), action: .add, reasons: []) : added($0)
                               }, drift: [])
        }
        let drift = observedDrift.map(DriftNote.init)
        if !desired.suspend, observed.record == nil, !observed.isTailors,
           observed.drift.contains(where: { if case .hookTaken = $0 { true } else { false } }) {
            // No directory, and someone else's program on the hook.
            return ChainChange(name: name, action: .create, hook: hook, reasons: [], cubes: reachable.map(added),
                               drift: drift)
        }
        if !desired.suspend && (observed.needsRebuild || observedDrift.contains(.rootGone)) {
            let why = observedDrift.contains(.rootGone)
                ? "its root program is gone: what is left of it is removed and the chain built again"
                : "its pins are gone while its root still runs: the chain is rebuilt from the spec and swapped in "
                    + "atomically; its state starts empty"
            return ChainChange(name: name, action: observedDrift.contains(.rootGone) ? .create : .replace, hook: hook,
                               reasons: [why], cubes: reachable.map(added), drift: drift, repairsDrift: true)
        }
        guard let record = observed.record else {
            return ChainChange(name: name, action: .skip, hook: hook,
                               reasons: ["the pinned chain has no readable meta record; remove it by hand"],
                               cubes: [], drift: drift)
        }
        if desired.suspend {
            return ChainChange(name: name, action: .skip, hook: hook, reasons: ["suspended in the spec"], cubes: [],
                               drift: drift)
        }
        // Hook and verdicts are baked into every instance: a change rebuilds the chain.
        let old = record.settings, new = desired.settings
        var forced: [String] = []
        if old.hook != new.hook { forced.append("hook: \(old.hook) -> \(new.hook)") }
        if old.defaultVerdict != new.defaultVerdict {
            forced.append("defaultVerdict: \(old.defaultVerdict.rawValue) -> \(new.defaultVerdict.rawValue)")
        }
        if old.onEmptySlot != new.onEmptySlot {
            forced.append("onMissingCube: fail-\(old.onEmptySlot == .pass ? "open" : "closed") -> "
                          + "fail-\(new.onEmptySlot == .pass ? "open" : "closed")")
        }
        // What a cube's config changes from the live instance's record; with
        // `replacing`, the attributes its type cannot change in place are marked.
        let compared = { (change: CubeChange, live: CubeRecord, replacing: Bool) -> CubeChange in
            var change = change
            let blueprint = desired.topology.nodes[change.name]?.blueprint
            change.compare(blueprint?.config, observed: observed, live: live,
                           words: CubeType.words(of: change.type), replacing: replacing)
            return change
        }
        if !forced.isEmpty {
            let removed = record.cubes.keys.filter { !reachable.contains($0) }.sorted()
            return ChainChange(
                name: name, action: .replace, hook: hook,
                reasons: forced.map { "\($0) (forces replacement of the chain; its state starts empty)" },
                cubes: reachable.map { cube in
                    let change = CubeChange(name: cube, type: type(cube), action: .replace, reasons: ["chain replaced"])
                    return record.cubes[cube].map { compared(change, $0, false) } ?? added(cube)
                } + removed.map { CubeChange(name: $0, type: record.cubes[$0]?.type ?? "?", action: .remove, reasons: []) },
                drift: drift)
        }
        let cubeAtSlot = Dictionary(record.cubes.map { ($0.value.slot, $0.key) }, uniquingKeysWith: { a, _ in a })
        var cubes: [CubeChange] = []
        for cube in reachable {
            guard let node = desired.topology.nodes[cube] else { continue }
            guard let live = record.cubes[cube] else {
                cubes.append(added(cube))
                continue
            }
            let liveNext = live.next.map { $0.flatMap { cubeAtSlot[$0] } }
            let show = { (names: [String?]) in names.map { $0 ?? "end" }.joined(separator: ", ") }
            let relink = liveNext == node.next ? [] : ["next: \(show(liveNext)) -> \(show(node.next))"]
            if let digest = desired.cubeDigests[cube], live.differsOnlyInEntries(from: node.blueprint, digest: digest) {
                // Entry counts only from a deep observe; the config's changes say what changes.
                let deltas = !observed.tablesRead ? [] : live.inPlaceTables.sorted().map {
                    TableDelta($0, desired: node.blueprint.tables[$0] ?? [], live: observed.tables[cube]?[$0] ?? [])
                }.filter { !$0.isEmpty }
                // Rewired, the cube gets a new instance anyway, with the new entries.
                cubes.append(compared(CubeChange(name: cube, type: node.blueprint.type,
                                                 action: relink.isEmpty ? .update : .relink,
                                                 reasons: relink + deltas.map(\.summary), tables: deltas), live, false))
                continue
            }
            if live.digest != desired.cubeDigests[cube] {
                let moved = InterfaceBinding.changes(live: live.interfaces, desired: node.blueprint.interfaceIndexes)
                let reasons = live.objectDigest != node.blueprint.objectDigest ? ["object changed"]
                    : moved.isEmpty ? ["config changed (rodata or tables)"] : moved
                cubes.append(compared(CubeChange(name: cube, type: node.blueprint.type, action: .replace, reasons: reasons),
                                      live, true))
                continue
            }
            if !relink.isEmpty {
                cubes.append(CubeChange(name: cube, type: node.blueprint.type, action: .relink, reasons: relink))
                continue
            }
            cubes.append(CubeChange(name: cube, type: node.blueprint.type, action: .keep, reasons: []))
        }
        for cube in record.cubes.keys.sorted() where !reachable.contains(cube) {
            cubes.append(CubeChange(name: cube, type: record.cubes[cube]?.type ?? "?", action: .remove, reasons: []))
        }
        var entryMoved: [String] = []
        if let entry = desired.topology.entry, record.cubes[entry]?.slot != 0 {
            entryMoved = ["entry: \(cubeAtSlot[0] ?? "none") -> \(entry)"]
        }
        let changed = cubes.contains { $0.action != .keep } || !entryMoved.isEmpty
        let repairable = !observedDrift.isEmpty && observedDrift.allSatisfy(\.isRepairable) && desired.repairDrift
        var reasons = entryMoved
        if !observedDrift.isEmpty && !desired.repairDrift {
            reasons.append("drift is reported, not repaired (repairDrift: false)")
        } else if !observedDrift.isEmpty && !repairable {
            reasons.append("drift that tailor cannot put back by itself: destroy and re-apply the chain")
        }
        return ChainChange(name: name, action: changed ? .update : (repairable ? .repair : .none), hook: hook,
                           reasons: reasons, cubes: cubes, drift: drift, repairsDrift: repairable)
    }
}
