import Logging
import TailorDatapath
import TailorKernel

/// The only code that changes the kernel: carries out a plan as one transaction
/// over all its chains.
///
/// 1. Prepare: every new instance and chain is loaded, verified and pinned where no
///    packet reaches it; interrupted commits are undone or finished and drift is put
///    back first. A failure here leaves the live datapath untouched.
/// 2. Switch: per chain the one write that makes its change live (a commit slot,
///    an attach, a detach). A failure here switches the chains already switched back.
/// 3. One grace period for all chains, then retire what was replaced: the
///    reversible part first (old slots, pins, records; a failure still switches
///    every chain back), the removal of old chains last.
public struct Executor {
    public let pinRoot: PinRoot
    /// Replace a foreign program found on a chain's hook instead of failing.
    public let takeover: Bool
    /// Called before each kernel change with its name ("<chain>: <step>"); throwing
    /// fails the apply there (failpoints, `TAILOR_FAILPOINTS`).
    public var failpoint: ((String) throws -> Void)?
    /// The git revision of the specs, recorded in every chain this apply changes.
    public var gitRevision: String?
    /// Descriptors a long-running controller keeps of the live instances, to pin
    /// again an instance whose pins were removed without CAP_SYS_ADMIN.
    public var held: HeldInstances?

    public init(pinRoot: PinRoot, takeover: Bool = false) {
        self.pinRoot = pinRoot
        self.takeover = takeover
    }

    /// What an apply did, in the plan's terms.
    public struct Report: Sendable, Equatable, Codable {
        public var added = 0, changed = 0, replaced = 0, removed = 0, repaired = 0
    }

    /// Loads every new or changed program of the plan so the verifier checks it,
    /// before anything changes, and works out how each replaced cube's state maps
    /// are carried over: the plan comes back with that, with the cubes the change
    /// gives a new instance only because they sit on its path (`markPathCopy`),
    /// and with the refusals of state that cannot be. Prepared instances are dropped again.
    public func verify(_ plan: Plan, desired: [DesiredChain]) throws -> Plan {
        var plan = plan
        let byName = Dictionary(desired.map { ($0.settings.name, $0) }, uniquingKeysWith: { a, _ in a })
        let zones = StateZones(pinRoot: pinRoot)
        for (index, change) in plan.chains.enumerated() {
            guard let chain = byName[change.name] else { continue }
            // An interrupted commit is undone or finished first; until then, check every program.
            let interrupted = try change.action == .update
                && MetaRecordReader.read(ChainPins(change.name, under: pinRoot)[.meta])?.pending != nil
            // Pins removed by hand are put back only by the apply: until then, check every program too.
            let pins = ChainPins(change.name, under: pinRoot)
            let damaged = ChainPins.Pin.allCases.contains { !pinRoot.exists(pins[$0]) }
            switch change.action {
            case .update where interrupted || damaged:
                fallthrough
            case .create, .replace:
                plan.refusals += try Chain.verify(chain.settings, topology: chain.topology, zones: zones)
                    .map { "chain \(change.name): \($0)" }
            case .update:
                let prepared = try Chain.open(change.name, pinRoot: pinRoot)
                    .prepare(chain.topology, digests: chain.cubeDigests, zones: zones)
                for (cubeIndex, cube) in change.cubes.enumerated() {
                    plan.chains[index].cubes[cubeIndex].state = try (prepared.state[cube.name] ?? [:])
                        .sorted { $0.key < $1.key }.map { map, carry in
                            StateMapChange(map: map, carry: carry, entries: try prepared.liveEntries(cube.name, map))
                        }
                    plan.chains[index].cubes[cubeIndex].markPathCopy(prepared.plan)
                }
                plan.refusals += prepared.refusals.map { "chain \(change.name): \($0)" }
            case .destroy, .none, .skip, .repair:
                break
            }
        }
        // Counted again: path copies are changes too.
        return Plan(chains: plan.chains, refusals: plan.refusals)
    }

    /// Puts back a consistent state after an apply that was killed half-way, before
    /// anything is planned: leftovers of chain builds and removals are sorted out
    /// (`Chain.recoverLeftover`) and interrupted commits undone or finished
    /// (`Chain.recover`), with the configs they pinned and no record names.
    /// Returns what it did; nothing when there was nothing to do.
    public func recover(_ observed: [ObservedChain]) throws -> [String] {
        var done: [String] = []
        let open = pinRoot.exists(marker)
        for chain in observed where chain.isLeftover {
            done.append(try Chain.recoverLeftover(ChainPins(chain.name, under: pinRoot).directory, pinRoot: pinRoot, transactionOpen: open))
        }
        for chain in observed where !chain.isLeftover && chain.drift.contains(where: \.isRecovered) {
            done += try Chain.recover(chain.name, pinRoot: pinRoot).map { "chain \(chain.name): \($0)" }
        }
        if open {
            try pinRoot.unpin(marker)
            done.append("closed the transaction of the interrupted apply")
        }
        return done
    }

    /// Pinned while an apply's chains are being switched and finished.
    var marker: String { ChainPins.transactionMarker(under: pinRoot) }

    /// Carries out `plan`: all of it, or (when a step fails) none of it. `observed`,
    /// the state the plan was made from, tells what the live tables hold, so a change
    /// of entries writes only what differs without reading every table again.
    public func apply(_ plan: Plan, desired: [DesiredChain], observed: [ObservedChain] = []) throws -> Report {
        let byName = Dictionary(desired.map { ($0.settings.name, $0) }, uniquingKeysWith: { a, _ in a })
        let liveTables = Dictionary(observed.map { ($0.name, $0.tables) }, uniquingKeysWith: { a, _ in a })
        var tasks: [ChainTask] = []
        let zones = StateZones(pinRoot: pinRoot)
        do {
            for change in plan.chains {
                if let task = try prepare(change, byName[change.name], liveTables: liveTables[change.name] ?? [:],
                                          zones: zones) {
                    tasks.append(task)
                }
            }
        } catch {
            let undo = Undo("apply", logger: ChainTask.logger)
            for task in tasks { undo.include(task.discard()) }
            throw undo.error(after: error)
        }
        var switched: [ChainTask] = []
        do {
            try BPFMap.create(.array, name: "tailor_tx", keySize: 4, valueSize: 4, maxEntries: 1).pin(at: marker)
            for task in tasks {
                switched.append(task)
                try task.switchOver()
            }
            if tasks.contains(where: \.needsGrace) {
                try failpoint?("wait for a grace period")
                try GracePeriod().wait()
            }
            for task in tasks { try task.finish() }
            try pinRoot.unpin(marker)
        } catch {
            let undo = Undo("apply", logger: ChainTask.logger, failpoint: failpoint)
            for task in switched.reversed() { undo.include(task.revert()) }
            for task in tasks.dropFirst(switched.count) { undo.include(task.discard()) }
            undo.attempt("close the transaction") { try pinRoot.unpin(marker) }
            throw undo.error(after: error)
        }
        // Everything is live as planned; what follows removes what is no longer used.
        for task in tasks { try task.removeOld() }
        var done = Plan.Summary()
        for change in plan.chains where tasks.contains(where: { $0.name == change.name }) { done.tally(change) }
        return Report(added: done.add, changed: done.change, replaced: done.replace, removed: done.destroy,
                      repaired: done.repair)
    }

    /// The prepare phase of one chain change; nil when there is nothing to do.
    private func prepare(_ change: ChainChange, _ desired: DesiredChain?, liveTables: [String: [String: [TableEntry]]],
                         zones: StateZones) throws -> ChainTask? {
        let fail = failpoint.map { hook in { (step: String) throws in try hook("\(change.name): \(step)") } }
        // A leftover the plan removes (one without tailor's record inside is skipped, left alone).
        if ChainPins.isLeftover(change.name) && change.action == .destroy {
            return ChainTask(name: change.name, work: .leftover(ChainPins(change.name, under: pinRoot).directory, pinRoot))
        }
        let build = { (chain: DesiredChain) in
            try Chain.build(chain.settings, topology: chain.topology, pinRoot: pinRoot, zones: zones, failpoint: fail)
        }
        let open = {
            let live = try Chain.open(change.name, pinRoot: pinRoot, recovering: true, held: held,
                                      hook: desired?.settings.hook)
            live.failpoint = fail
            return live
        }
        switch change.action {
        case .create:
            guard let desired else { return nil }
            if change.drift.contains(where: { $0.kind == .rootGone }) {
                _ = try Chain.removeRemains(change.name, pinRoot: pinRoot)
            }
            let chain = try build(desired)
            try chain.setProvenance(specDigest: desired.digest, gitRevision: gitRevision)
            let foreign = takeover ? try chain.settings.hook.attachedProgram() : nil
            return ChainTask(name: change.name, work: .create(chain, replacing: foreign))
        case .update, .repair:
            let live = try open()
            // Drift first, so the change starts from the chain tailor committed.
            if change.repairsDrift {
                try live.repair(takeover: takeover)
                if let desired { try restoreTables(live, desired) }
            }
            guard let desired, change.action == .update else { return ChainTask(name: change.name, work: .none) }
            let prepared = try live.prepare(desired.topology, specDigest: desired.digest, gitRevision: gitRevision,
                                            digests: desired.cubeDigests, zones: zones,
                                            liveTables: change.repairsDrift ? [:] : liveTables)
            return ChainTask(name: change.name, work: .update(live, prepared))
        case .replace:
            guard let desired else { return nil }
            let old = try open()
            let new = try build(desired)
            try new.setProvenance(specDigest: desired.digest, gitRevision: gitRevision)
            return ChainTask(name: change.name, work: .replace(old: old, new: new))
        case .destroy:
            // Its root gone, or its interface deleted and the root's attachment with it: only pins are left.
            if try change.drift.contains(where: { $0.kind == .rootGone })
                || change.hook.map({ try Chain.hookGone(change.name, hook: $0, pinRoot: pinRoot) }) == true {
                return ChainTask(name: change.name, work: .remains(change.name, pinRoot))
            }
            let chain = try Chain.openForRemoval(change.name, pinRoot: pinRoot)
            chain.failpoint = fail
            return ChainTask(name: change.name, work: .destroy(chain))
        case .none, .skip:
            return nil
        }
    }

    /// Records `revision` in the meta record of each chain named that is live and
    /// records another one: a spec commit that changed nothing in the kernel is
    /// still the revision applied. Returns the chains it wrote.
    public func record(revision: String, chains names: Set<String>, observed: [ObservedChain]) throws -> [String] {
        var recorded: [String] = []
        for chain in observed where names.contains(chain.name) && !chain.isLeftover {
            guard let record = chain.record, record.pending == nil, record.gitRevision != revision else { continue }
            try Chain.open(chain.name, pinRoot: pinRoot).setProvenance(specDigest: record.specDigest, gitRevision: revision)
            recorded.append(chain.name)
        }
        return recorded
    }

    /// Puts back the tables of cubes that stay as they are (a replaced cube gets fresh tables anyway).
    private func restoreTables(_ live: Chain, _ chain: DesiredChain) throws {
        for (cube, record) in live.record.cubes where record.digest == chain.cubeDigests[cube] {
            guard let node = chain.topology.nodes[cube], !node.blueprint.tableNames.isEmpty else { continue }
            try live.restoreTables(of: cube, to: node.blueprint.tables)
        }
    }
}

/// One chain's part of an apply, through the phases of the transaction.
private final class ChainTask {
    enum Work {
        /// Built under `_creating-`; attach makes it live, replacing a foreign program if set.
        case create(Chain, replacing: ProgramID?)
        case update(Chain, PreparedCommit)
        /// A new chain for the same name; the old one moves aside and is detached.
        case replace(old: Chain, new: Chain)
        case destroy(Chain)
        /// Pins an interrupted apply left under this path.
        case leftover(String, PinRoot)
        /// What is left of a chain whose root program is gone (nothing of it runs).
        case remains(String, PinRoot)
        /// Drift was repaired in the prepare phase; nothing else changes.
        case none
    }

    static let logger = Logger(label: "tailor.apply")

    /// How far a replacement's switch got, in the order of its writes.
    enum ReplaceProgress: Comparable {
        case notStarted
        /// The old chain moved aside (to `_removing-`), its name free.
        case movedAside
        /// The new root attached to a free hook; the old one still attached elsewhere.
        case newAttached
        /// Packets reach the new chain only: the old root replaced on the hook, or detached.
        case switched
    }

    let name: String
    let work: Work
    private var switched: SwitchedCommit?
    private var progress = ReplaceProgress.notStarted
    /// Whether the old root of a replacement was attached, and whether the new one
    /// took the hook over from it in one write.
    private var oldAttached = false, swapped = false

    init(name: String, work: Work) {
        (self.name, self.work) = (name, work)
    }

    var needsGrace: Bool {
        switch work {
        case .update: switched?.needsGrace ?? false
        case .replace, .destroy: true
        case .create, .leftover, .remains, .none: false
        }
    }

    /// Drops what the prepare phase built (nothing of it is live); returns the steps that failed.
    func discard() -> [Undo.Failure] {
        switch work {
        case .create(let chain, _), .replace(_, let chain):
            let undo = Undo(name, logger: Self.logger, failpoint: chain.failpoint)
            undo.attempt("remove the chain built") { try chain.remove() }
            return undo.failures
        case .update, .destroy, .leftover, .remains, .none:
            return []
        }
    }

    /// The visible write(s) of this chain's change. `progress` says how far a
    /// replacement got, so `revert` undoes exactly that.
    func switchOver() throws {
        switch work {
        case .create(let chain, let foreign):
            try chain.attach(replacing: foreign.map { try Program(id: $0) })
        case .update(let chain, let prepared):
            switched = try chain.switchOver(prepared)
        case .replace(let old, let new):
            // An old root someone detached is not swapped: the new one attaches to a free hook.
            oldAttached = try old.isAttached
            swapped = new.settings.hook == old.settings.hook && oldAttached
            try old.moveAside()
            progress = .movedAside
            if swapped {
                try new.attach(replacing: old.rootProgram)
                progress = .switched
            } else {
                try new.attach()
                progress = .newAttached
                try old.detach()
                progress = .switched
            }
        case .destroy(let chain):
            try chain.detach()
        case .leftover, .remains, .none:
            break
        }
    }

    /// Undoes `switchOver` (and `finish`). Every step is tried; returns those that failed.
    func revert() -> [Undo.Failure] {
        switch work {
        case .create(let chain, let foreign):
            let undo = Undo(name, logger: Self.logger, failpoint: chain.failpoint)
            if let foreign, let program = try? Program(id: foreign) {
                undo.attempt("give the hook back to \(foreign)") {
                    try chain.attachToHook(program, replacing: chain.rootProgram)
                }
            } else {
                undo.attempt("detach the new chain") { try chain.detach() }
            }
            // Packets that entered the chain while it was attached finish before its slots empty.
            undo.attempt("wait for a grace period") { try chain.waitForGracePeriod() }
            undo.attempt("remove the new chain") { try chain.remove() }
            return undo.failures
        case .update(let chain, _):
            return switched.map { chain.revert($0).failures } ?? []
        case .replace(let old, let new):
            let undo = Undo(name, logger: Self.logger, failpoint: new.failpoint)
            let reattach = { (replacing: Program?) in
                undo.attempt("attach the old root again") { try old.attachToHook(old.rootProgram, replacing: replacing) }
            }
            if progress == .switched && swapped {
                reattach(new.rootProgram)
            } else if progress >= .newAttached {
                undo.attempt("detach the new root") { try new.detach() }
                if progress == .switched && oldAttached { reattach(nil) }
            }
            if progress >= .newAttached { undo.attempt("wait for a grace period") { try new.waitForGracePeriod() } }
            undo.attempt("remove the new chain") { try new.remove() }
            if progress >= .movedAside { undo.attempt("give the old chain its name back") { try old.restoreName() } }
            return undo.failures
        case .destroy(let chain):
            let undo = Undo(name, logger: Self.logger, failpoint: chain.failpoint)
            undo.attempt("attach the root again") {
                if try !chain.isAttached { try chain.attachToHook(chain.rootProgram, replacing: nil) }
            }
            return undo.failures
        case .leftover, .remains, .none:
            return []
        }
    }

    /// The reversible rest of the change, after the grace period.
    func finish() throws {
        switch work {
        case .update(let chain, _):
            guard let done = switched else { return }
            switched = nil  // a finish that fails puts the chain back itself
            try chain.finish(done)
            switched = done
        case .create, .replace, .destroy, .leftover, .remains, .none:
            break
        }
    }

    /// Removes chains that are no longer live (not reversible: runs last).
    func removeOld() throws {
        switch work {
        case .replace(let old, _), .destroy(let old):
            try old.remove()
        case .leftover(let path, let pinRoot):
            _ = try Chain.recoverLeftover(path, pinRoot: pinRoot, transactionOpen: false)
        case .remains(let name, let pinRoot):
            _ = try Chain.removeRemains(name, pinRoot: pinRoot)
        case .create, .update, .none:
            break
        }
    }
}
