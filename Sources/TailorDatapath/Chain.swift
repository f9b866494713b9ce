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

/// One chain in the kernel: a root program on its hook, a prog_array of slots,
/// the packet metadata map, and the cube instances in the slots. All of it is
/// pinned under `<pin root>/<chain>/` so bpftool shows it and it outlives tailor.
///
/// Changes go through `prepare` (load and verify, nothing reachable) and `commit`
/// (fresh slots, then one write, then a grace period before old instances go).
public final class Chain {
    public let settings: ChainSettings
    /// The chain's pins: under `<pin root>/<name>` once it is live.
    public private(set) var pins: ChainPins
    /// The chain's pin directory.
    public var directory: String { pins.directory }
    let pinRoot: PinRoot
    let shared: SharedMaps
    let progs: ProgramArray
    let root: Program
    let rootCountersMap: BPFMap
    let interface: NetworkInterface
    /// Made on first use: many changes (a slot replaced in place, entries) never wait.
    private var gracePeriod: GracePeriod?
    let meta: MetaMap
    var instances: [String: CubeInstance] = [:]
    /// What the meta record says besides the cubes: digest and revision of the spec.
    var provenance: (specDigest: String?, gitRevision: String?)
    let logger = Logger(label: "tailor.datapath")
    /// Called with the name of each kernel change before it is made; throwing
    /// fails the change there (failpoints, and tests of every step's rollback).
    public var failpoint: ((String) throws -> Void)?

    /// The slots and wiring of the live instances.
    public var layout: [String: LiveInstance] { instances.mapValues(\.record.live) }

    /// The chain's meta record as this controller last committed it.
    public var record: ChainRecord {
        ChainRecord(settings: settings, specDigest: provenance.specDigest, gitRevision: provenance.gitRevision,
                    cubes: instances.mapValues(\.record), layouts: ChainRecord.layouts(of: Array(instances.values)))
    }

    init(settings: ChainSettings, pinRoot: PinRoot, pins: ChainPins, root: Program, rootCounters: BPFMap,
         shared: SharedMaps, meta: MetaMap, interface: NetworkInterface) throws {
        self.settings = settings
        self.pinRoot = pinRoot
        self.pins = pins
        self.root = root
        self.rootCountersMap = rootCounters
        self.shared = shared
        self.meta = meta
        self.progs = try ProgramArray(shared.progs)
        self.interface = interface
        self.provenance = (nil, nil)
    }

    /// Creates the chain and attaches it: `build`, then `attach`.
    /// With `takeover`, a program someone else attached to the hook is replaced
    /// (atomically, expecting exactly that program); without it, creation fails.
    public static func create(
        _ settings: ChainSettings, topology: Topology, pinRoot: PinRoot, takeover: Bool = false
    ) throws -> Chain {
        let final = ChainPins(settings.name, under: pinRoot)
        guard !pinRoot.exists(final.directory) else {
            throw DatapathError.chainExists(settings.name, at: final.directory)
        }
        let chain = try build(settings, topology: topology, pinRoot: pinRoot)
        do {
            try chain.attach(replacing: takeover ? chain.attachedProgram().map { try Program(id: $0) } : nil)
        } catch {
            let undo = Undo(settings.name, logger: chain.logger, failpoint: chain.failpoint)
            undo.attempt("remove the chain built") { try chain.pinRoot.removeTree(chain.directory) }
            throw undo.error(after: error)
        }
        return chain
    }

    /// Builds the chain without attaching it: loads its root, fills its slots with
    /// `topology` and pins everything under `<pin root>/_creating-<name>/`, where no
    /// packet reaches it. `attach` moves it into place and makes it live. Undoes all
    /// of it if any step fails.
    public static func build(
        _ settings: ChainSettings, topology: Topology, pinRoot: PinRoot, zones: StateZones? = nil,
        failpoint: ((String) throws -> Void)? = nil
    ) throws -> Chain {
        let pins = ChainPins.building(settings.name, under: pinRoot)
        let directory = pins.directory
        // A build an earlier controller left behind was never attached: nothing uses it.
        // It is known by the record pinned first thing; a directory without one is not tailor's.
        if pinRoot.exists(directory) {
            guard try hasRecord(directory) || pinRoot.removeIfEmpty(directory) else {
                throw DatapathError(.notTailors, chain: settings.name, sentence:
                    "\(directory) holds no record of tailor's, so it is not a build tailor left "
                    + "behind and is left alone; move it away to create chain \(settings.name)")
            }
            try pinRoot.removeTree(directory)
        }
        let interface = try NetworkInterface.lookup(
            settings.hook.interface, in: settings.hook.namespace.map(NetworkNamespace.named))
        let root = try LoadedRoot(settings, identity: ChainIdentity(settings: settings, pinRoot: pinRoot))
        let chain = try Chain(settings: settings, pinRoot: pinRoot, pins: pins, root: root.program,
                              rootCounters: root.counters, shared: root.shared, meta: MetaMap.create(),
                              interface: interface)
        chain.failpoint = failpoint
        do {
            try chain.step("pin chain \(settings.name)") {
                // The record first: it is what marks the directory as tailor's.
                try pinRoot.makeDirectory(directory)
                try chain.meta.write(chain.record)
                try chain.meta.map.pin(at: pins[.meta])
                try pinRoot.makeDirectory(pins.cubes)
                try chain.root.pin(at: pins[.root])
                try chain.shared.progs.pin(at: pins[.progs])
                try chain.shared.meta.pin(at: pins[.packetMeta])
                try chain.rootCountersMap.pin(at: pins[.rootCounters])
                try pinRoot.makeDirectory(pins.config)
            }
            let prepared = try chain.prepare(topology, zones: zones)
            if let refusal = prepared.refusals.first { throw DatapathError.refused([refusal], chain: settings.name) }
            _ = try chain.commit(prepared)
        } catch {
            let undo = Undo(settings.name, logger: chain.logger, failpoint: failpoint)
            undo.attempt("remove the chain built") { try pinRoot.removeTree(directory) }
            throw undo.error(after: error)
        }
        return chain
    }

    /// Makes a built chain live: moves its pins into place, then attaches the root
    /// (the one write that sends packets into it). With `replacing`, the program on
    /// the hook must be exactly that one and is replaced atomically.
    public func attach(replacing expected: Program? = nil) throws {
        let final = ChainPins(settings.name, under: pinRoot)
        if pins != final {
            guard !pinRoot.exists(final.directory) else {
                throw DatapathError.chainExists(settings.name, at: final.directory)
            }
            try step("move chain \(settings.name) into place") { try pinRoot.rename(directory, to: final.directory) }
            pins = final
        }
        try step("attach root of \(settings.name)") { try attachRoot(replacing: expected) }
    }

    /// Detaches the root from its hook if it is attached there; packets already in
    /// the chain finish on their own (wait a grace period before emptying slots).
    public func detach() throws {
        let id = try root.info().id
        guard try attachedProgram() == id else { return }
        try step("detach root of \(settings.name)") { try settings.hook.attachPoint.detach(root, from: interface) }
    }

    /// Moves the chain's pins aside (to `_removing-<name>-<root program id>`, its
    /// own place even while a replacement of the same name is moved aside too), so
    /// the name is free for a replacement while this one is still live.
    /// `restoreName` undoes it.
    public func moveAside() throws {
        let aside = ChainPins.removing(settings.name, root: try root.info().id, under: pinRoot)
        try step("move chain \(settings.name) aside") { try pinRoot.rename(directory, to: aside.directory) }
        pins = aside
    }

    /// Moves the chain's pins back to its own name.
    public func restoreName() throws {
        let final = ChainPins(settings.name, under: pinRoot)
        guard pins != final else { return }
        try pinRoot.rename(directory, to: final.directory)
        pins = final
    }

    /// Removes a detached chain after a grace period: moves it aside, empties its
    /// slots and removes its pins.
    public func remove() throws {
        if pins == ChainPins(settings.name, under: pinRoot) { try moveAside() }
        try step("empty slots of \(settings.name)") {
            for slot in try progs.occupiedSlots().keys { try progs.clear(slot) }
        }
        instances = [:]
        try step("unpin chain \(settings.name)") { try pinRoot.removeTree(directory) }
    }

    /// Detaches the root, waits for packets in flight, empties the slots and removes the pins.
    public func destroy() throws {
        try detach()
        try waitForGracePeriod()
        try remove()
    }

    /// Adopts a chain an earlier controller built, from its pins and meta record,
    /// so this one can change it. Nothing in the kernel changes, unless
    /// `recovering` is set and a commit was interrupted: then `recover` undoes or
    /// finishes it first, and instances whose pins were removed are pinned again
    /// (from `held` where it holds them, else by id, which needs CAP_SYS_ADMIN).
    /// Recovering, the chain's own pins removed by hand are put back first
    /// (`restorePins`; `hook` is where its root is looked for when its record is gone).
    public static func open(_ name: String, pinRoot: PinRoot, recovering: Bool = false,
                            held: HeldInstances? = nil, hook: ChainHook? = nil) throws -> Chain {
        let stored = recovering ? try putBack(name, pinRoot: pinRoot, hook: hook, cubePins: .repin(held))
            : try StoredRecord(of: name, pinRoot: pinRoot)
        return try adopt(name, pinRoot: pinRoot, stored: stored, adoptingCubes: true, held: held)
    }

    /// Adopts a chain to destroy it: an interrupted commit is sorted out first, but
    /// the cube instances are not adopted. Detaching, emptying the slots and
    /// unpinning need only the root, the prog_array and the directory, so a chain
    /// whose cube pins someone removed can be destroyed without re-pinning them
    /// (which opens programs by id and so needs CAP_SYS_ADMIN).
    public static func openForRemoval(_ name: String, pinRoot: PinRoot) throws -> Chain {
        let stored = try putBack(name, pinRoot: pinRoot, hook: nil, cubePins: .leave)
        return try adopt(name, pinRoot: pinRoot, stored: stored, adoptingCubes: false, held: nil)
    }

    /// Destroys chain `name` however much of it someone removed by hand (its whole
    /// directory too, while its root runs: `unpinnedRoots`): its own
    /// pins are put back from its root first (`restorePins`), and when its root is
    /// gone what is left is removed (`removeRemains`). Returns what it found missing
    /// and did besides destroying.
    public static func destroy(_ name: String, pinRoot: PinRoot) throws -> [String] {
        let directory = ChainPins(name, under: pinRoot).directory
        // Without its directory, the chain is found by its running root, which says where it is attached.
        var hook: ChainHook?
        if !pinRoot.exists(directory) {
            guard let root = unpinnedRoots(pinRoot: pinRoot).first(where: { $0.identity.settings.name == name }) else {
                throw DatapathError.noChain(name, under: pinRoot.path)
            }
            hook = root.identity.settings.hook
        }
        let restored: [String]
        do {
            restored = try restorePins(name, pinRoot: pinRoot, hook: hook)
        } catch {
            // Only remains that carry tailor's record are removed: anything else is not provably tailor's.
            guard hasRecord(directory), try findRoot(name, pinRoot: pinRoot, hook: nil) == nil else { throw error }
            return [try removeRemains(name, pinRoot: pinRoot)]
        }
        let stored = try putBack(name, pinRoot: pinRoot, hook: hook, cubePins: .leave, pinsRestored: true)
        let recorded = stored.record.settings.hook
        if try hookGone(name, hook: recorded, pinRoot: pinRoot) {
            try pinRoot.removeTree(directory)
            return restored + ["\(recorded.interface)\(recorded.namespace.map { " in netns \($0)" } ?? "") is gone, "
                               + "and with it the chain's attachment: removed its pins"]
        }
        try adopt(name, pinRoot: pinRoot, stored: stored, adoptingCubes: false, held: nil).destroy()
        return restored
    }

    /// Whether chain `name`'s hook, its interface or namespace, is gone: deleting
    /// an interface detaches what ran on it, so there is nothing to detach and only
    /// pins to remove. Throws when the root still runs on another interface (one
    /// renamed under the chain): removing the pins would empty the slots under it.
    public static func hookGone(_ name: String, hook: ChainHook, pinRoot: PinRoot) throws -> Bool {
        guard hook.isGone else { return false }
        let root = try Program(pinnedAt: ChainPins(name, under: pinRoot)[.root]).info().id
        if let holder = hook.interface(holding: root) {
            throw DatapathError(.rootAttachedElsewhere, chain: name,
                "\(hook.interface) is gone, but its root still runs on \(holder) (renamed?): rename it back "
                + "and destroy the chain, or detach the root there first")
        }
        return true
    }

    /// The chain whose meta record `stored` holds, from its pins.
    private static func adopt(_ name: String, pinRoot: PinRoot, stored: StoredRecord, adoptingCubes: Bool,
                              held: HeldInstances?) throws -> Chain {
        let pins = ChainPins(name, under: pinRoot)
        let (meta, record) = (stored.meta, stored.record)
        let hook = record.settings.hook
        let chain = try Chain(
            settings: record.settings, pinRoot: pinRoot, pins: pins,
            root: Program(pinnedAt: pins[.root]),
            rootCounters: BPFMap(pinnedAt: pins[.rootCounters]),
            shared: SharedMaps(progs: BPFMap(pinnedAt: pins[.progs]),
                               meta: BPFMap(pinnedAt: pins[.packetMeta])),
            meta: meta,
            interface: NetworkInterface.lookup(hook.interface, in: hook.namespace.map(NetworkNamespace.named)))
        for (cube, cubeRecord) in record.cubes where adoptingCubes {
            let cubePins = pins.cube(cube)
            var maps: [String: BPFMap] = [:]
            for name in cubeRecord.maps.keys { maps[name] = try BPFMap(pinnedAt: cubePins.map(name)) }
            chain.instances[cube] = CubeInstance(
                cube: cube, program: try Program(pinnedAt: cubePins.program), maps: maps, record: cubeRecord,
                stateLayouts: record.layouts?[cubeRecord.objectDigest] ?? [:])
        }
        chain.provenance = (record.specDigest, record.gitRevision)
        return chain
    }

    /// Returns once every packet that was in the chain when it was called is done.
    public func waitForGracePeriod() throws {
        if gracePeriod == nil { gracePeriod = try GracePeriod() }
        try gracePeriod?.wait()
    }

    /// Whether the chain's root is the program on its hook.
    public var isAttached: Bool {
        get throws { try attachedProgram() == root.info().id }
    }

    /// The program on the chain's hook, or nil.
    func attachedProgram() throws -> ProgramID? { try settings.hook.attachedProgram(on: interface) }

    func attachRoot(replacing expected: Program? = nil) throws {
        try attachToHook(root, replacing: expected)
    }

    /// Attaches `program` to the chain's hook: its root, or (when an apply is undone)
    /// the program it took the hook over from. With `replacing` nil the hook must be
    /// free; else it must hold exactly that program, which is swapped atomically.
    public func attachToHook(_ program: Program, replacing expected: Program?) throws {
        try settings.hook.attachPoint.attach(program, to: interface, replacing: expected)
    }

    /// Records what the chain was applied from (spec digest, git revision) in its meta record.
    public func setProvenance(specDigest: String?, gitRevision: String?) throws {
        provenance = (specDigest, gitRevision)
        try meta.write(record)
    }

    /// The configs the chain's cubes were committed with (`<chain>/config/`).
    var configs: ConfigStore { ConfigStore(pinRoot: pinRoot, chain: pins) }

    /// Pins `instance` at `cube` (what was pinned there before goes).
    func pin(_ instance: CubeInstance, at cube: CubePins) throws {
        try pinRoot.removeTree(cube.directory)
        try pinRoot.makeDirectory(cube.maps)
        try instance.program.pin(at: cube.program)
        for (name, map) in instance.maps { try map.pin(at: cube.map(name)) }
    }

    /// The counters of `cube`'s instance.
    public func counters(of cube: String) throws -> CubeCounters {
        guard let map = instances[cube]?.maps[ABI.counters] else {
            throw DatapathError.noSuchCube(cube, in: settings.name)
        }
        return try CubeCounters(reading: map)
    }

    /// The root's counters: every packet that entered the chain, and misses of slot 0.
    public func rootCounters() throws -> CubeCounters { try CubeCounters(reading: rootCountersMap) }

    /// A map of `cube`'s live instance, by its declared name.
    public func map(_ name: String, of cube: String) -> BPFMap? { instances[cube]?.maps[name] }

    /// The root program (for BPF_PROG_TEST_RUN and inspection).
    public var rootProgram: Program { root }
}

/// A chain's root program, loaded for its hook with slot 0 as its next, and the maps
/// it creates for the chain (prog_array, packet metadata) and for itself (counters).
struct LoadedRoot {
    let program: Program
    let counters: BPFMap
    let shared: SharedMaps

    init(_ settings: ChainSettings, identity: ChainIdentity) throws {
        guard let bytes = DatapathObjects.all.bytes(named: "root") else {
            throw DatapathError(.objectMissing, "this tailor binary was built without the chain root object")
        }
        var object = try BPFObject(bytes: bytes, name: "root of \(settings.name)")
        let name = try CubeInstance.hookProgram(in: object, for: settings.hook, cube: "root")
        try object.loadOnly([name])
        try CubeInstance.wire(&object, next: [0], settings: settings)
        try object.setRodata(ChainIdentity.variable, to: identity.encoded())
        try object.load()
        program = try object.program(named: name)
        counters = try object.map(named: ABI.counters)
        shared = SharedMaps(progs: try object.map(named: ABI.progs), meta: try object.map(named: ABI.meta))
    }
}
