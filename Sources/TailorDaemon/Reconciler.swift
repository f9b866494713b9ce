import Foundation
import Logging
import TailorDatapath
import TailorKernel
import TailorReconcile
import TailorSpec

/// One reconcile at a time: specs -> desired state, kernel -> observed state, plan,
/// and each chain applied on its own, so one that fails does not hold the others.
///
/// A spec directory with errors (missing and unreadable directories and files
/// included) changes nothing: the errors are logged with their positions and the
/// last good desired state is kept (its drift still repaired); nothing is pruned
/// then, since the broken specs may well hold the chains the last good ones lack.
/// A directory that holds no chain while chains are live is refused unless the
/// configuration prunes `pruneAllowingEmpty` (see `Prune`): nothing is applied.
/// A chain whose apply failed is not retried for the same desired state until its
/// backoff (5 s, doubling to 5 min) has passed; a new desired state is tried at once.
/// A chain whose interface (or its namespace) does not exist yet is pending, not
/// failed: nothing is tried for it and it has no backoff, since the interface
/// appearing later (at boot, a container started) is the normal course; the
/// outcome names the interfaces awaited, so the service can reconcile when one appears.
public final class Reconciler {
    public struct Configuration: Sendable {
        public var specDirectory: String
        public var pinRoot: PinRoot
        public var lockTimeout: Double
        /// What becomes of chains no longer in the specs (`--no-prune`, `--allow-empty`).
        public var prune: Prune
        /// Failures injected into applies (`TAILOR_FAILPOINTS`), as `tailor apply` takes them.
        public var failpoints: Failpoints?
        /// How often a reconcile also reads every table entry (`tailor plan --deep`),
        /// so entries changed out of band are found and put back: the first reconcile
        /// does, then the first one this long after the last that did.
        public var deepInterval: Duration

        public init(specDirectory: String, pinRoot: PinRoot, lockTimeout: Double = 30, prune: Prune = .prune,
                    failpoints: Failpoints? = nil, deepInterval: Duration = .seconds(300)) {
            (self.specDirectory, self.pinRoot, self.lockTimeout, self.prune) = (specDirectory, pinRoot, lockTimeout, prune)
            self.failpoints = failpoints
            self.deepInterval = deepInterval
        }
    }

    /// An interface a pending chain waits for.
    public struct AwaitedInterface: Sendable, Hashable {
        public var name: String
        /// The `ip netns` name of its namespace; nil for the daemon's own.
        public var namespace: String?

        init(_ hook: ChainHook) {
            (name, namespace) = (hook.interface, hook.namespace)
        }

        init(name: String, namespace: String?) {
            (self.name, self.namespace) = (name, namespace)
        }

        /// Why it cannot be used yet (it or its namespace does not exist), or nil when
        /// it is there, or when the lookup failed otherwise: that is the apply's to report.
        var missing: String? {
            do {
                _ = try NetworkInterface.lookup(name, in: namespace.map(NetworkNamespace.named))
                return nil
            } catch let error as KernelError where error.code == .interfaceNotFound || error.code == .notFound {
                return "\(error)"
            } catch {
                return nil
            }
        }
    }

    /// What a reconcile found and did, for logs, the service status line and metrics.
    public struct Outcome: Sendable, Equatable {
        public var chains = 0, synced = 0, drifted = 0, failed = 0, pending = 0
        /// Chains whose hook another program holds: not tried, reported (`chain blocked`).
        public var blocked = 0
        /// The interfaces the pending chains wait for, and those cubes name that do not exist yet.
        public var awaited: Set<AwaitedInterface> = []
        public var specErrors = 0
        /// Live chains kept because the plan was refused (specs that hold no chain).
        public var keptByRefusal = 0
        public var revision: GitRevision?
        /// Whether the reconcile stopped before applying anything: the pin root's
        /// lock, the recovery of an interrupted apply or observing failed.
        public var aborted = false
        /// The chains whose apply was tried and failed (not those waiting out a backoff).
        public var failedApplies: [String] = []
        /// The drift put back, one entry per chain and kind.
        public var repairs: [DriftRepair] = []
        /// The cubes of the live chains as the reconcile last observed them; nil
        /// when it did not get as far as observing.
        public var cubes: [LiveCube]?
        /// Whether the specs were read and parsed; false when no file under the
        /// directory changed since the last good load (`SpecFingerprint`).
        public var specsParsed = true

        /// How a reconcile ended, worst first: a chain (or the whole reconcile)
        /// failed, the specs have errors (the last good ones were used), the plan
        /// was refused (specs that hold no chain), or everything is as the specs
        /// want it or waits for its interface.
        public enum Conclusion: String, Sendable {
            case failed, specError = "spec_error", refused, ok
        }

        public var conclusion: Conclusion {
            if aborted || failed > 0 { return .failed }
            if specErrors > 0 { return .specError }
            return keptByRefusal > 0 ? .refused : .ok
        }

        /// How many of the specs' chains are in each state, as `tailor_chains` reports them.
        public var chainStates: [(state: String, count: Int)] {
            [("synced", synced), ("drifted", drifted), ("failing", failed), ("pending", pending), ("blocked", blocked)]
        }

        /// `3 chains synced, 0 drifted, rev abc1234`.
        public var status: String {
            var line = "\(synced) chain\(synced == 1 ? "" : "s") synced, \(drifted) drifted"
            if pending > 0 { line += ", \(pending) pending" }
            if blocked > 0 { line += ", \(blocked) blocked" }
            if failed > 0 { line += ", \(failed) failing" }
            if specErrors > 0 { line += ", specs have \(specErrors) error\(specErrors == 1 ? "" : "s")" }
            if keptByRefusal > 0 {
                line += ", specs hold no chains: refused, \(keptByRefusal) live chain\(keptByRefusal == 1 ? "" : "s") kept"
            }
            return line + (revision.map { ", rev \($0.short)" } ?? "")
        }
    }

    /// Drift of `kind` (`DRIFT_KIND`) that a reconcile put back in `chain`.
    public struct DriftRepair: Sendable, Equatable {
        public var chain: String
        public var kind: DriftKind
    }

    struct Failure {
        var digest: String
        var attempts: Int
        var retryAt: ContinuousClock.Instant
    }

    let configuration: Configuration
    let logger: Logger
    private var lastGood: [DesiredChain]?
    /// The directory's fingerprint when `lastGood` was loaded from it without errors.
    private var lastGoodFingerprint: String?
    /// When a reconcile last read every table entry.
    private var lastDeep: ContinuousClock.Instant?
    private var failures: [String: Failure] = [:]
    /// The live instances' descriptors, so pins removed by hand are put back
    /// without CAP_SYS_ADMIN (docs/daemon.md, capabilities).
    private let held = HeldInstances()
    /// Directories under the pin root that are not tailor's, already logged: each is reported once.
    private var reportedForeign: Set<String> = []

    public init(_ configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Makes the kernel match the specs as far as it can; never throws.
    public func reconcile(reason: String) -> Outcome {
        let start = ContinuousClock.now
        var log = logger
        log[metadataKey: "plan_id"] = "\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        var revision: GitRevision?
        do {
            revision = try GitRevision.read(configuration.specDirectory)
        } catch {
            log.warning("git revision unreadable", metadata: ["error": "\(error)"])
        }
        if let revision { log[metadataKey: "git_commit"] = "\(revision)" }
        log.info("reconcile started", metadata: ["reason": "\(reason)"])
        var outcome = Outcome(revision: revision)

        // Unchanged files since the last good load: the same desired state, not parsed again.
        let fingerprint = SpecFingerprint.of(configuration.specDirectory)
        let unchanged = fingerprint != nil && fingerprint == lastGoodFingerprint
        let (chains, diagnostics) = unchanged ? (lastGood ?? [], Diagnostics())
            : DesiredChain.load([configuration.specDirectory])
        outcome.specsParsed = !unchanged
        lastGoodFingerprint = diagnostics.hasErrors ? nil : fingerprint
        let prune: Prune = diagnostics.hasErrors ? .keep : configuration.prune
        if diagnostics.hasErrors {
            for diagnostic in diagnostics.sorted where diagnostic.severity == .error {
                log.error("spec error", metadata: ["spec_file": "\(diagnostic.location.file)",
                                                   "position": "\(diagnostic.location)",
                                                   "error": "\(diagnostic)"])
            }
            outcome.specErrors = diagnostics.sorted.filter { $0.severity == .error }.count
        } else {
            lastGood = chains
        }
        guard let desired = lastGood else {
            log.error("no valid specs yet: nothing is changed until they are fixed")
            return finish(outcome, log, start)
        }
        do {
            // The pin root removed by hand is made again, so the chains still running can be found by their hooks.
            try configuration.pinRoot.makeDirectory(configuration.pinRoot.path)
            let lock = try PinRootLock(configuration.pinRoot, timeout: configuration.lockTimeout)
            defer { withExtendedLifetime(lock) {} }
            outcome = try apply(desired, prune: prune, outcome, revision, log)
        } catch {
            log.error("reconcile failed", metadata: ["error": "\(error)"])
            outcome.failed = desired.count
            outcome.aborted = true
        }
        return finish(outcome, log, start)
    }

    private func finish(_ outcome: Outcome, _ log: Logger, _ start: ContinuousClock.Instant) -> Outcome {
        log.info("reconcile finished", metadata: [
            "duration_us": "\(Int((ContinuousClock.now - start).microseconds))", "status": "\(outcome.status)",
        ])
        return outcome
    }

    private func apply(_ desired: [DesiredChain], prune: Prune, _ start: Outcome, _ revision: GitRevision?,
                       _ log: Logger) throws -> Outcome {
        var outcome = start
        let pinRoot = configuration.pinRoot
        var executor = Executor(pinRoot: pinRoot)
        executor.gitRevision = revision?.description
        executor.held = held
        executor.failpoint = configuration.failpoints?.hit
        defer { held.refresh(pinRoot: pinRoot) }
        let now = ContinuousClock.now
        let deep = lastDeep.map { now - $0 >= configuration.deepInterval } ?? true
        if deep { lastDeep = now }
        var reconciliation = Reconciliation(desired: desired, executor: executor, prune: prune, deep: deep)
        for line in try reconciliation.recover() {
            log.notice("interrupted apply recovered", metadata: ["what": "\(line)"])
        }
        let observed = reconciliation.observed
        let foreign = Set(observed.filter { !$0.isTailors && !$0.drift.isEmpty && pinRoot.exists(ChainPins($0.name, under: pinRoot).directory) }
            .map(\.name))
        for name in foreign.subtracting(reportedForeign).sorted() {
            log.warning("directory left alone: not tailor's", metadata: ["directory": "\(ChainPins(name, under: pinRoot).directory)"])
        }
        reportedForeign = foreign
        outcome.cubes = LiveCube.all(in: observed)
        let plan = reconciliation.plan()
        for change in plan.chains {
            for drift in change.drift {
                log.warning("drift found", metadata: ["chain": "\(change.name)", "drift_kind": "\(drift.kind.rawValue)",
                                                      "drift": "\(drift.what)"])
            }
        }
        guard plan.refusals.isEmpty else {
            let live = Planner.liveChains(observed)
            log.error("plan refused: nothing is changed", metadata: [
                "refusal": "\(plan.refusals.joined(separator: "; "))", "live_chains": "\(live.joined(separator: ","))",
            ])
            outcome.keptByRefusal = live.count
            return outcome
        }
        let byName = Dictionary(desired.map { ($0.settings.name, $0) }, uniquingKeysWith: { a, _ in a })
        // Pending chains are neither synced nor drifted: they are not there yet.
        var waiting: Set<String> = []
        /// Whether the change waits for its chain's interface: then it is logged and
        /// counted as pending, with no backoff, instead of being tried.
        func awaitsInterface(_ change: ChainChange, _ log: Logger) -> Bool {
            guard let hook = byName[change.name]?.settings.hook, let reason = AwaitedInterface(hook).missing else {
                return false
            }
            var metadata: Logger.Metadata = ["interface": "\(hook.interface)", "reason": "\(reason)"]
            if let namespace = hook.namespace { metadata["namespace"] = "\(namespace)" }
            log.notice("chain pending", metadata: metadata)
            failures[change.name] = nil
            waiting.insert(change.name)
            outcome.pending += 1
            outcome.awaited.insert(AwaitedInterface(hook))
            return true
        }
        var blocked: Set<String> = []
        for change in plan.chains where change.action != .none && change.action != .skip {
            var chainLog = log
            chainLog[metadataKey: "chain"] = "\(change.name)"
            chainLog[metadataKey: "action"] = "\(change.action.rawValue)"
            let digest = byName[change.name]?.digest ?? "absent"
            if awaitsInterface(change, chainLog) { continue }
            // Another program on the hook: the daemon never takes it over, and no backoff helps.
            if let reason = change.blocked {
                chainLog.warning("chain blocked", metadata: ["reason": "\(reason)"])
                failures[change.name] = nil
                blocked.insert(change.name)
                outcome.blocked += 1
                continue
            }
            if let failure = failures[change.name], failure.digest == digest, ContinuousClock.now < failure.retryAt {
                chainLog.warning("chain not retried yet", metadata: [
                    "attempts": "\(failure.attempts)",
                    "retry_in_ms": "\(Int((failure.retryAt - ContinuousClock.now).microseconds / 1000))",
                ])
                outcome.failed += 1
                continue
            }
            let chainStart = ContinuousClock.now
            do {
                let single = try reconciliation.verified(Plan(chains: [change]))
                guard single.refusals.isEmpty else { throw ReconcileRefusal(reasons: single.refusals) }
                _ = try reconciliation.apply(single)
                failures[change.name] = nil
                // The verified plan's cubes: path copies show as the new instances they are.
                for cube in single.chains.first?.cubes ?? [] where cube.action != .keep {
                    chainLog.info("cube changed", metadata: ["cube": "\(cube.name)", "cube_action": "\(cube.action.rawValue)",
                                                             "reasons": "\(cube.reasons.joined(separator: "; "))"])
                }
                if change.repairsDrift {
                    for kind in change.drift.map(\.kind) {
                        chainLog.notice("drift repaired", metadata: ["drift_kind": "\(kind.rawValue)"])
                        outcome.repairs.append(DriftRepair(chain: change.name, kind: kind))
                    }
                }
                chainLog.notice("chain reconciled", metadata: [
                    "duration_us": "\(Int((ContinuousClock.now - chainStart).microseconds))",
                ])
            } catch {
                // The interface went away while the chain was applied: it waits for it like any other.
                if awaitsInterface(change, chainLog) { continue }
                let attempts = (failures[change.name].map { $0.digest == digest ? $0.attempts : 0 } ?? 0) + 1
                let backoff = Duration.seconds(min(300, 5 << min(attempts - 1, 6)))
                failures[change.name] = Failure(digest: digest, attempts: attempts, retryAt: .now + backoff)
                outcome.failedApplies.append(change.name)
                chainLog.error("chain failed", metadata: ["error": "\(error)", "attempts": "\(attempts)",
                                                          "retry_in_ms": "\(Int(backoff.microseconds / 1000))"])
                outcome.failed += 1
            }
        }
        for name in try reconciliation.finish() {
            log.info("revision recorded", metadata: ["chain": "\(name)"])
        }
        outcome.cubes = LiveCube.all(in: reconciliation.observed)
        outcome.chains = desired.count
        // An interface a cube names that does not exist yet: when it comes, the cube is
        // replaced with its index at once, not at the next interval.
        for chain in reconciliation.desired where !waiting.contains(chain.settings.name) {
            for node in chain.topology.nodes.values {
                for (name, index) in node.blueprint.interfaceIndexes ?? [:] where index == 0 {
                    outcome.awaited.insert(AwaitedInterface(name: name, namespace: chain.settings.hook.namespace))
                }
            }
        }
        for (name, state) in reconciliation.states() where !waiting.contains(name) && !blocked.contains(name) {
            if state == .drifted { outcome.drifted += 1 } else if state == .synced { outcome.synced += 1 }
        }
        return outcome
    }
}

/// A chain's plan that must not be applied (state that cannot be carried over).
struct ReconcileRefusal: Error, CustomStringConvertible {
    let reasons: [String]
    var description: String { reasons.joined(separator: "; ") }
}

extension Duration {
    var microseconds: Double { Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12 }
}
