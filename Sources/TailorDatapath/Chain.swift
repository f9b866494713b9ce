import Foundation
import Logging
import TailorKernel
import TailorObjects

/// How a chain behaves as a whole: its hook and its verdicts.
public struct ChainSettings: Sendable, Hashable, Codable {
    public var name: String
    public var hook: ChainHook
    /// The verdict at the end of every path.
    public var defaultVerdict: Verdict
    /// The verdict when a next slot is empty: pass fails open, drop fails closed.
    public var onEmptySlot: Verdict

    public init(name: String, hook: ChainHook, defaultVerdict: Verdict = .pass, onEmptySlot: Verdict = .drop) {
        self.name = name
        self.hook = hook
        self.defaultVerdict = defaultVerdict
        self.onEmptySlot = onEmptySlot
    }
}

/// A cube's own counters (the ABI's `tailor_counters`), summed over CPUs.
public struct CubeCounters: Sendable, Equatable {
    /// Packets that entered the cube, and their bytes.
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    /// Packets whose path ended in this cube with each verdict.
    public var passed: UInt64 = 0
    public var dropped: UInt64 = 0
    /// Tail calls that found the next slot empty.
    public var missed: UInt64 = 0

    public init(packets: UInt64 = 0, bytes: UInt64 = 0, passed: UInt64 = 0, dropped: UInt64 = 0, missed: UInt64 = 0) {
        (self.packets, self.bytes, self.passed, self.dropped, self.missed) = (packets, bytes, passed, dropped, missed)
    }

    /// Tail calls to a next cube attempted. Not counted on the hot path: every
    /// packet that did not end here was handed on, and a miss ends here too.
    public var forwarded: UInt64 { packets &- passed &- dropped &+ missed }

    /// Reads a pinned `tailor_counters` map.
    public init(pinnedAt path: String) throws {
        try self.init(reading: BPFMap(pinnedAt: path))
    }

    /// Reads a `tailor_counters` map: five u64 per CPU.
    init(reading map: BPFMap) throws {
        guard let buffer = try map.lookup([0, 0, 0, 0]) else { return }
        for value in map.perCPUValues(buffer) {
            let field = { (i: Int) in value.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) } }
            packets += field(0); bytes += field(1); passed += field(2); dropped += field(3); missed += field(4)
        }
    }
}

/// New instances loaded and verified for a change, not yet reachable by any packet.
public struct PreparedCommit {
    public let plan: SlotPlan
    let instances: [String: CubeInstance]
}

/// What a commit did and how long each part took.
public struct CommitReport: Sendable {
    public var loaded: [String]
    public var retired: [String]
    public var commitSlot: Int?
    /// Writing the fresh slots and the commit slot.
    public var commit: Duration
    /// Waiting for packets on the old path to finish.
    public var grace: Duration
}

/// One chain in the kernel: a root program on its hook, a prog_array of slots,
/// the packet metadata map, and the cube instances in the slots. All of it is
/// pinned under `<pin root>/<chain>/` so bpftool shows it and it outlives tailor.
///
/// Changes go through `prepare` (load and verify, nothing reachable) and `commit`
/// (fresh slots, then one write, then a grace period before old instances go).
public final class Chain {
    public let settings: ChainSettings
    /// The chain's pin directory.
    public let directory: String
    let pinRoot: PinRoot
    let shared: SharedMaps
    let progs: ProgramArray
    let root: Program
    let rootCountersMap: BPFMap
    let interface: NetworkInterface
    let grace: GracePeriod
    let meta: MetaMap
    private(set) var instances: [String: CubeInstance] = [:]
    /// What the meta record says besides the cubes: digest and revision of the spec.
    private(set) var provenance: (specDigest: String?, gitRevision: String?)
    private let logger = Logger(label: "tailor.datapath")

    /// The slots and wiring of the live instances.
    public var layout: [String: LiveInstance] { instances.mapValues(\.record.live) }

    /// The chain's meta record as this controller last committed it.
    public var record: ChainRecord {
        ChainRecord(settings: settings, specDigest: provenance.specDigest, gitRevision: provenance.gitRevision,
                    cubes: instances.mapValues(\.record))
    }

    private init(settings: ChainSettings, pinRoot: PinRoot, root: Program, rootCounters: BPFMap,
                 shared: SharedMaps, meta: MetaMap, interface: NetworkInterface) throws {
        self.settings = settings
        self.pinRoot = pinRoot
        self.directory = pinRoot.appending(settings.name)
        self.root = root
        self.rootCountersMap = rootCounters
        self.shared = shared
        self.meta = meta
        self.progs = try ProgramArray(shared.progs)
        self.interface = interface
        self.grace = try GracePeriod()
        self.provenance = (nil, nil)
    }

    /// Creates the chain: loads its root, fills its slots with `topology`, pins
    /// everything, and only then attaches the root, so the first packet already
    /// sees the whole chain. Undoes all of it if any step fails.
    /// With `takeover`, a program someone else attached to the hook is replaced
    /// (atomically, expecting exactly that program); without it, creation fails.
    public static func create(
        _ settings: ChainSettings, topology: Topology, pinRoot: PinRoot, takeover: Bool = false
    ) throws -> Chain {
        let directory = pinRoot.appending(settings.name)
        guard !pinRoot.exists(directory) else {
            throw DatapathError("chain \(settings.name) already exists at \(directory)")
        }
        let interface = try NetworkInterface.lookup(
            settings.hook.interface, in: settings.hook.namespace.map(NetworkNamespace.named))
        let root = try LoadedRoot(settings)
        let chain = try Chain(settings: settings, pinRoot: pinRoot, root: root.program, rootCounters: root.counters,
                              shared: root.shared, meta: MetaMap.create(), interface: interface)
        do {
            try pinRoot.makeDirectory(directory + "/cubes")
            try chain.root.pin(at: directory + "/root")
            try chain.shared.progs.pin(at: directory + "/progs")
            try chain.shared.meta.pin(at: directory + "/packet_meta")
            try chain.rootCountersMap.pin(at: directory + "/root_counters")
            try chain.meta.map.pin(at: directory + "/meta")
            try chain.meta.write(chain.record)
            _ = try chain.commit(chain.prepare(topology))
            try chain.attachRoot(replacing: takeover ? chain.attachedProgram() : nil)
        } catch {
            try? pinRoot.removeTree(directory)
            throw error
        }
        return chain
    }

    /// Loads every cube of a chain that does not exist yet, so the kernel verifier
    /// checks them all, against throwaway chain maps: nothing is pinned, attached or
    /// kept. A rejected program throws with the verifier's log.
    public static func verify(_ settings: ChainSettings, topology: Topology) throws {
        let shared = try LoadedRoot(settings).shared
        let plan = try SlotPlan.make(live: [:], desired: topology, capacity: ABI.progSlots)
        for (cube, wiring) in plan.load {
            guard let node = topology.nodes[cube] else { continue }
            _ = try CubeInstance.load(node.blueprint, as: cube, hook: settings.hook, wiring: wiring,
                                      settings: settings, shared: shared, carry: [:])
        }
    }

    /// Adopts a chain an earlier controller built, from its pins and meta record,
    /// so this one can change it. Nothing in the kernel changes.
    public static func open(_ name: String, pinRoot: PinRoot) throws -> Chain {
        let directory = pinRoot.appending(name)
        let meta = MetaMap(map: try BPFMap(pinnedAt: directory + "/meta"))
        guard let record = try meta.read() else {
            throw DatapathError("chain \(name): its meta record at \(directory)/meta is empty")
        }
        guard record.version == ChainRecord.currentVersion else {
            throw DatapathError("chain \(name): its meta record has version \(record.version); "
                + "this tailor reads version \(ChainRecord.currentVersion)")
        }
        let hook = record.settings.hook
        let chain = try Chain(
            settings: record.settings, pinRoot: pinRoot, root: Program(pinnedAt: directory + "/root"),
            rootCounters: BPFMap(pinnedAt: directory + "/root_counters"),
            shared: SharedMaps(progs: BPFMap(pinnedAt: directory + "/progs"),
                               meta: BPFMap(pinnedAt: directory + "/packet_meta")),
            meta: meta,
            interface: NetworkInterface.lookup(hook.interface, in: hook.namespace.map(NetworkNamespace.named)))
        for (cube, cubeRecord) in record.cubes {
            let pins = chain.cubeDirectory(cube)
            var maps: [String: BPFMap] = [:]
            for name in cubeRecord.maps.keys { maps[name] = try BPFMap(pinnedAt: pins + "/maps/" + name) }
            chain.instances[cube] = CubeInstance(
                cube: cube, program: try Program(pinnedAt: pins + "/prog"), maps: maps, record: cubeRecord)
        }
        chain.provenance = (record.specDigest, record.gitRevision)
        return chain
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
                throw DatapathError("chain \(settings.name): \(settings.hook) is held by \(attached), not tailor's "
                    + "root; use --takeover to replace it")
            }
            try attachRoot(replacing: attached)
            done.append("root took \(settings.hook) over from \(attached)")
        }
        return done
    }

    /// Writes `cube`'s tables back to `entries` (the blueprint's) after they were
    /// changed by hand: entries the spec does not name are removed (zeroed in array
    /// maps), the others rewritten. Entry by entry: the table was already wrong.
    public func restoreTables(of cube: String, to tables: [String: [TableEntry]]) throws {
        guard let instance = instances[cube] else { throw DatapathError("chain \(settings.name) has no cube \(cube)") }
        for (name, role) in instance.record.maps where role.isTable {
            guard let map = instance.maps[name] else { continue }
            let want = Dictionary((tables[name] ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            let have = Dictionary(try map.lookupBatch().map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            // Only what differs is written: a table that is right sees no write at all.
            for (key, value) in have where want[key] == nil && value.contains(where: { $0 != 0 }) {
                if map.info.type.isArray {
                    try map.update(key, [UInt8](repeating: 0, count: map.valueBufferSize))
                } else {
                    try map.delete(key)
                }
            }
            try map.updateBatch(want.filter { have[$0.key] != $0.value }.map { ($0.key, $0.value) })
        }
    }

    /// The program on the chain's hook, or nil.
    func attachedProgram() throws -> ProgramID? { try settings.hook.attachedProgram(on: interface) }

    private func attachRoot(replacing expected: ProgramID? = nil) throws {
        switch settings.hook.kind {
        case .xdp(let mode):
            try XDP.attach(root, to: interface, mode: mode == .native ? .native : .generic, replacing: expected)
        case .tcIngress, .tcEgress:
            try TC.createHook(on: interface)
            try TC.attach(root, to: interface, direction: settings.hook.kind == .tcIngress ? .ingress : .egress,
                          replacing: expected)
        }
    }

    /// Loads every instance the move to `topology` needs; the kernel verifies each.
    /// Nothing is reachable by packets until `commit`.
    public func prepare(_ topology: Topology) throws -> PreparedCommit {
        let plan = try SlotPlan.make(live: layout, desired: topology, capacity: progs.capacity)
        var loaded: [String: CubeInstance] = [:]
        for (cube, record) in plan.load.sorted(by: { $0.key < $1.key }) {
            guard let node = topology.nodes[cube] else { continue }
            guard node.next.count == node.blueprint.outputs else {
                throw DatapathError("cube \(cube) has \(node.blueprint.outputs) outputs but \(node.next.count) "
                    + "next cubes are given")
            }
            loaded[cube] = try CubeInstance.load(
                node.blueprint, as: cube, hook: settings.hook, wiring: record, settings: settings,
                shared: shared, carry: carriedMaps(cube, to: node.blueprint))
        }
        return PreparedCommit(plan: plan, instances: loaded)
    }

    /// The maps a new instance of `cube` takes over from the live one: all of them
    /// when the blueprint is the same (a path copy), else the state maps, whose
    /// layout must be unchanged.
    func carriedMaps(_ cube: String, to blueprint: CubeBlueprint) throws -> [String: BPFMap] {
        guard let old = instances[cube] else { return [:] }
        if old.record.digest == blueprint.digest { return old.maps }
        let declared = try BPFObject(bytes: blueprint.object, name: cube).maps
        var carry: [String: BPFMap] = [:]
        for (name, map) in old.maps where old.record.maps[name] == .state {
            guard let new = declared.first(where: { $0.name == name }) else { continue }
            let same = new.type == map.info.type && new.keySize == map.info.keySize
                && new.valueSize == map.info.valueSize && new.maxEntries == map.info.maxEntries
            guard same else {
                throw DatapathError("cube \(cube): state map \(name) changes layout (\(map.info.type) "
                    + "\(map.info.keySize)/\(map.info.valueSize)/\(map.info.maxEntries) -> \(new.type) "
                    + "\(new.keySize)/\(new.valueSize)/\(new.maxEntries)); carrying its state across a layout "
                    + "change needs state migration, which this version does not do")
            }
            carry[name] = map
        }
        return carry
    }

    /// Makes a prepared change live: fills the fresh slots, writes the commit slot
    /// (the one write that switches packets to the new path), waits a grace period,
    /// then empties the slots of retired instances and updates the pins.
    public func commit(_ prepared: PreparedCommit) throws -> CommitReport {
        let plan = prepared.plan
        guard !plan.isEmpty else {
            return CommitReport(loaded: [], retired: [], commitSlot: nil, commit: .zero, grace: .zero)
        }
        let before = (instances: instances, record: record)
        var pending = before.record
        // Every cube of the result is either newly loaded or kept where it is.
        pending.pending = Dictionary(uniqueKeysWithValues: plan.result.keys.compactMap { cube in
            (prepared.instances[cube] ?? instances[cube]).map { (cube, $0.record) }
        })
        let clock = ContinuousClock()
        let start = clock.now
        var committed = start, graceDone = start
        do {
            try step("write pending record") { try meta.write(pending) }
            for (cube, instance) in prepared.instances where cube != plan.commitCube {
                try step("fill slot \(instance.record.slot)") { try progs.set(instance.record.slot, to: instance.program) }
            }
            if let cube = plan.commitCube, let slot = plan.commitSlot, let instance = prepared.instances[cube] {
                try step("commit slot \(slot)") { try progs.set(slot, to: instance.program) }
            } else if plan.commitSlot == 0 {
                try step("empty slot 0") { try progs.clear(0) }
            }
            committed = clock.now
            // Packets still on the old path may tail-call the slots being emptied: let
            // them finish first. An instance replaced in place needs no wait; the kernel
            // frees it once the last packet using it is done.
            if !plan.slotsToClear.isEmpty {
                try step("wait for a grace period") { try grace.wait() }
                for slot in plan.slotsToClear { try step("empty slot \(slot)") { try progs.clear(slot) } }
            }
            graceDone = clock.now
            for cube in plan.retire.keys { instances[cube] = nil }
            for (cube, instance) in prepared.instances { instances[cube] = instance }
            for cube in plan.retire.keys where prepared.instances[cube] == nil {
                try step("unpin cube \(cube)") { try pinRoot.removeTree(cubeDirectory(cube)) }
            }
            for instance in prepared.instances.values { try step("pin cube \(instance.cube)") { try pin(instance) } }
            try step("write record") { try meta.write(record) }
        } catch {
            rollBack(to: before, prepared: prepared)
            throw error
        }
        logger.debug("chain commit", metadata: [
            "chain": "\(settings.name)", "loaded": "\(prepared.instances.keys.sorted())",
            "retired": "\(plan.retire.keys.sorted())", "slot": "\(plan.commitSlot.map(String.init) ?? "-")",
        ])
        return CommitReport(loaded: prepared.instances.keys.sorted(), retired: plan.retire.keys.sorted(),
                            commitSlot: plan.commitSlot, commit: committed - start, grace: graceDone - committed)
    }

    /// Called before each kernel change of a commit with its name; a test can throw
    /// from it to fail the commit at that step.
    @_spi(Testing) public var injectFault: ((String) throws -> Void)?

    private func step(_ name: String, _ body: () throws -> Void) throws {
        try injectFault?(name)
        try body()
    }

    /// Puts the chain back exactly as it was before a failed commit: old instances
    /// into their slots (the commit slot last, so the old path is whole when packets
    /// return to it), fresh slots emptied after a grace period, pins and record as
    /// they were. Best effort: a step that fails here is logged, the rest goes on.
    private func rollBack(
        to before: (instances: [String: CubeInstance], record: ChainRecord),
        prepared: PreparedCommit
    ) {
        let attempt = { (what: String, body: () throws -> Void) in
            do { try body() } catch {
                self.logger.error("rollback step failed", metadata: ["chain": "\(self.settings.name)",
                                                                     "step": "\(what)", "error": "\(error)"])
            }
        }
        let oldBySlot = Dictionary(before.instances.values.map { ($0.record.slot, $0) }, uniquingKeysWith: { a, _ in a })
        let commitSlot = prepared.plan.commitSlot
        for (slot, instance) in oldBySlot.sorted(by: { $0.key < $1.key }) where slot != commitSlot {
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
            attempt("wait for a grace period") { try self.grace.wait() }
            for slot in fresh { attempt("empty slot \(slot)") { _ = try self.progs.clear(slot) } }
        }
        instances = before.instances
        for cube in Set(prepared.instances.keys).union(prepared.plan.retire.keys) {
            attempt("restore pins of \(cube)") {
                try self.pinRoot.removeTree(self.cubeDirectory(cube))
                if let instance = before.instances[cube] { try self.pin(instance) }
            }
        }
        attempt("restore record") { try self.meta.write(before.record) }
    }

    /// Records what the chain was applied from (spec digest, git revision) in its meta record.
    public func setProvenance(specDigest: String?, gitRevision: String?) throws {
        provenance = (specDigest, gitRevision)
        try meta.write(record)
    }

    /// Prepares and commits in one call.
    @discardableResult
    public func apply(_ topology: Topology) throws -> CommitReport {
        try commit(prepare(topology))
    }

    private func cubeDirectory(_ cube: String) -> String { directory + "/cubes/" + cube }

    private func pin(_ instance: CubeInstance) throws {
        let dir = cubeDirectory(instance.cube)
        try pinRoot.removeTree(dir)
        try pinRoot.makeDirectory(dir + "/maps")
        try instance.program.pin(at: dir + "/prog")
        for (name, map) in instance.maps { try map.pin(at: dir + "/maps/" + name) }
    }

    /// The counters of `cube`'s instance.
    public func counters(of cube: String) throws -> CubeCounters {
        guard let map = instances[cube]?.maps[ABI.counters] else {
            throw DatapathError("chain \(settings.name) has no cube \(cube)")
        }
        return try CubeCounters(reading: map)
    }

    /// The root's counters: every packet that entered the chain, and misses of slot 0.
    public func rootCounters() throws -> CubeCounters { try CubeCounters(reading: rootCountersMap) }

    /// A map of `cube`'s live instance, by its declared name.
    public func map(_ name: String, of cube: String) -> BPFMap? { instances[cube]?.maps[name] }

    /// The root program (for BPF_PROG_TEST_RUN and inspection).
    public var rootProgram: Program { root }

    /// Detaches the root, waits for packets in flight, empties the slots and removes the pins.
    public func destroy() throws {
        let id = try root.info().id
        switch settings.hook.kind {
        case .xdp(let mode):
            try XDP.detach(from: interface, mode: mode == .native ? .native : .generic, expected: id)
        case .tcIngress, .tcEgress:
            try TC.detach(from: interface, direction: settings.hook.kind == .tcIngress ? .ingress : .egress,
                          expected: id)
        }
        try grace.wait()
        for slot in try progs.occupiedSlots().keys { try progs.clear(slot) }
        instances = [:]
        try pinRoot.removeTree(directory)
    }
}

/// A chain's root program, loaded for its hook with slot 0 as its next, and the maps
/// it creates for the chain (prog_array, packet metadata) and for itself (counters).
struct LoadedRoot {
    let program: Program
    let counters: BPFMap
    let shared: SharedMaps

    init(_ settings: ChainSettings) throws {
        guard let bytes = DatapathObjects.all.bytes(named: "root") else {
            throw DatapathError("this tailor binary was built without the chain root object")
        }
        var object = try BPFObject(bytes: bytes, name: "root of \(settings.name)")
        let name = try CubeInstance.hookProgram(in: object, for: settings.hook, cube: "root")
        try object.loadOnly([name])
        try CubeInstance.wire(&object, next: [0], settings: settings)
        try object.load()
        program = try object.program(named: name)
        counters = try object.map(named: ABI.counters)
        shared = SharedMaps(progs: try object.map(named: ABI.progs), meta: try object.map(named: ABI.meta))
    }
}
