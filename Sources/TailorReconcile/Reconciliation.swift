import TailorDatapath
import TailorKernel

/// One reconcile of the specs with the kernel: the steps `tailor plan`, `tailor
/// apply` and the daemon (`Reconciler`) share, in their order. Observe; recover what
/// an interrupted apply left (and observe again); plan, with every new program
/// verified; apply; record the specs' git revision; observe again to say how each
/// chain stands. The CLI applies a plan as one transaction; the daemon adds only its
/// schedule (a chain at a time, backoff, pending interfaces) and its logs.
public struct Reconciliation {
    public let desired: [DesiredChain]
    public let prune: Prune
    /// Whether every table entry is read (`--deep`) when the kernel is observed.
    public let deep: Bool
    /// What carries out the changes (its pin root, failpoints, the revision it records).
    public var executor: Executor
    /// The kernel as last observed.
    public private(set) var observed: [ObservedChain]

    /// Observes the chains under `executor`'s pin root and those `desired` names, and
    /// binds the interfaces `desired`'s cubes name to the indexes they have now.
    public init(desired: [DesiredChain], executor: Executor, prune: Prune, deep: Bool = false) {
        (self.executor, self.prune, self.deep) = (executor, prune, deep)
        self.desired = InterfaceBinding.bind(desired)
        observed = Observer.observe(pinRoot: executor.pinRoot, desired: self.desired, deep: deep)
    }

    /// Undoes or finishes what an interrupted apply left, observing again when it did
    /// anything. Returns what it did.
    public mutating func recover() throws -> [String] {
        let recovered = try executor.recover(observed)
        if !recovered.isEmpty { observed = Observer.observe(pinRoot: executor.pinRoot, desired: desired, deep: deep) }
        return recovered
    }

    /// What it takes to make the kernel match the specs, from what was observed.
    public func plan() -> Plan {
        Planner.plan(desired: desired, observed: observed, prune: prune)
    }

    /// `plan`, verified: every new program loaded so the verifier checks it, and
    /// what cannot be carried over refused.
    public func verified(_ plan: Plan) throws -> Plan {
        try executor.verify(plan, desired: desired)
    }

    /// Carries out `plan` as one transaction (all of it or none); nil when it is empty.
    public func apply(_ plan: Plan) throws -> Executor.Report? {
        plan.isEmpty ? nil : try executor.apply(plan, desired: desired, observed: observed)
    }

    /// Observes the kernel again (after an apply; tables are not read: what was just
    /// written is what the records say) and records the executor's git revision in
    /// each live chain of the specs that records another. Returns the chains it
    /// recorded it in.
    @discardableResult
    public mutating func finish() throws -> [String] {
        observed = Observer.observe(pinRoot: executor.pinRoot, desired: desired)
        guard let revision = executor.gitRevision else { return [] }
        return try executor.record(revision: revision, chains: Set(desired.map(\.settings.name)), observed: observed)
    }

    /// How each chain of the specs stands against them, from what was last observed.
    public func states() -> [String: SyncState] {
        let named = Set(desired.map(\.settings.name))
        return Dictionary(plan().chains.filter { named.contains($0.name) }.map { ($0.name, $0.syncState) },
                          uniquingKeysWith: { a, _ in a })
    }
}

/// How a chain stands against the specs: the one meaning of "in sync", which
/// `tailor status`, the daemon's status and `plan --detailed-exitcode` share.
public enum SyncState: String, Sendable, Encodable, CaseIterable {
    /// As recorded, and (with specs) as the specs want it: nothing to do.
    case synced = "Synced"
    /// The specs want it otherwise: apply would change it (or, suspended in the
    /// spec, leaves it as it is).
    case outOfSync = "OutOfSync"
    /// In the specs, not in the kernel: apply would create it.
    case missing = "Missing"
    /// In the kernel, not in the specs: apply would destroy it.
    case notInSpecs = "NotInSpecs"
    /// The kernel differs from the chain's record: observe found drift.
    case drifted = "Drifted"

    /// The `state` label of `tailor_chains`: Prometheus label values are snake_case.
    public var metricLabel: String {
        switch self {
        case .synced: "synced"
        case .outOfSync: "out_of_sync"
        case .missing: "missing"
        case .notInSpecs: "not_in_specs"
        case .drifted: "drifted"
        }
    }
}

extension ChainChange {
    /// How the chain stands, from what its plan would do.
    public var syncState: SyncState {
        if !drift.isEmpty { return .drifted }
        switch action {
        case .none: return .synced
        case .create: return .missing
        case .destroy: return .notInSpecs
        case .update, .replace, .repair, .skip: return .outOfSync
        }
    }
}
