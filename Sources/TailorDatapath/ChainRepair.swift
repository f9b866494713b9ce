import Foundation
import TailorKernel

/// A chain's own pins (not its cubes'): the root, the maps the root uses, and the
/// meta record. Every one can be derived again from the root program while it
/// runs, so pins removed by hand are put back instead of leaving the chain stuck:
/// the root from the hook (proven the chain's by its identity, `ChainIdentity`),
/// the maps from the root's maps, and, when the record is lost, a record of the
/// chain's settings without cubes (its cubes are then built again: the planner
/// replaces the chain).
extension Chain {
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
            throw DatapathError("chain \(name): its root pin is gone and \(hook) holds \(id), which is not its root "
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
        var found: [(id: ProgramID, program: Program, identity: ChainIdentity)] = []
        for id in ids where !pinned.contains(id) {
            guard let program = (try? loaded(id)) ?? nil, let info = try? program.info(), info.name.hasPrefix("root_"),
                  let identity = (try? ChainIdentity.of(program)) ?? nil,
                  identity.names(identity.settings.name, under: pinRoot),
                  (try? identity.settings.hook.attachedProgram()) == id else { continue }
            found.append((id, program, identity))
        }
        return found
    }

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
            throw DatapathError("chain \(name): its root program is gone (neither pinned nor on its hook), so "
                + "nothing of it runs; what is left of it can only be removed")
        }
        guard let identity = try ChainIdentity.of(root), identity.names(name, under: pinRoot) else {
            throw DatapathError("chain \(name): \(pins[.root]) is not the root of chain \(name) under "
                + "\(pinRoot.path) (no identity of it in the program's data); it is left alone")
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
                throw DatapathError("chain \(name): its root uses \(found.count) maps named \(mapName), so "
                    + "\(pin.rawValue) cannot be pinned again")
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
