import TailorDatapath
import TailorKernel

/// The only code that changes the kernel: carries out a plan, chain by chain, each
/// chain through the datapath's prepare/commit (one write per chain).
public struct Executor {
    public let pinRoot: PinRoot
    /// Replace a foreign program found on a chain's hook instead of failing.
    public let takeover: Bool

    public init(pinRoot: PinRoot, takeover: Bool = false) {
        self.pinRoot = pinRoot
        self.takeover = takeover
    }

    /// What an apply did, in the plan's terms.
    public struct Report: Sendable, Equatable {
        public var added = 0, changed = 0, replaced = 0, removed = 0, repaired = 0
    }

    /// Loads every new or changed program of the plan so the verifier checks it,
    /// before anything changes. Prepared instances are dropped again.
    public func verify(_ plan: Plan, desired: [DesiredChain]) throws {
        let byName = Dictionary(desired.map { ($0.settings.name, $0) }, uniquingKeysWith: { a, _ in a })
        for change in plan.chains {
            guard let chain = byName[change.name] else { continue }
            switch change.action {
            case .create, .replace:
                try Chain.verify(chain.settings, topology: chain.topology)
            case .update:
                _ = try Chain.open(change.name, pinRoot: pinRoot).prepare(chain.topology)
            case .destroy, .none, .skip, .repair:
                break
            }
        }
    }

    /// Puts back the tables of cubes that stay as they are (a replaced cube gets fresh tables anyway).
    private func restoreTables(_ live: Chain, _ chain: DesiredChain) throws {
        for (cube, record) in live.record.cubes where record.digest == chain.cubeDigests[cube] {
            guard let node = chain.topology.nodes[cube], !node.blueprint.tables.isEmpty else { continue }
            try live.restoreTables(of: cube, to: node.blueprint.tables)
        }
    }

    /// Carries out `plan`. Chains are independent: each is created, changed or
    /// removed with its own commit.
    public func apply(_ plan: Plan, desired: [DesiredChain]) throws -> Report {
        let byName = Dictionary(desired.map { ($0.settings.name, $0) }, uniquingKeysWith: { a, _ in a })
        var done = Plan.Summary()
        for change in plan.chains {
            switch change.action {
            case .create:
                guard let chain = byName[change.name] else { continue }
                try Chain.create(chain.settings, topology: chain.topology, pinRoot: pinRoot, takeover: takeover)
                    .setProvenance(specDigest: chain.digest, gitRevision: nil)
            case .update:
                guard let chain = byName[change.name] else { continue }
                let live = try Chain.open(change.name, pinRoot: pinRoot)
                // Drift first, so the change starts from the chain tailor committed.
                if change.repairsDrift {
                    try live.repair(takeover: takeover)
                    try restoreTables(live, chain)
                }
                try live.apply(chain.topology)
                try live.setProvenance(specDigest: chain.digest, gitRevision: nil)
            case .repair:
                let live = try Chain.open(change.name, pinRoot: pinRoot)
                try live.repair(takeover: takeover)
                if let chain = byName[change.name] { try restoreTables(live, chain) }
            case .replace:
                guard let chain = byName[change.name] else { continue }
                try Chain.open(change.name, pinRoot: pinRoot).destroy()
                try Chain.create(chain.settings, topology: chain.topology, pinRoot: pinRoot, takeover: takeover)
                    .setProvenance(specDigest: chain.digest, gitRevision: nil)
            case .destroy:
                try Chain.open(change.name, pinRoot: pinRoot).destroy()
            case .none, .skip:
                continue
            }
            done.tally(change)
        }
        return Report(added: done.add, changed: done.change, replaced: done.replace, removed: done.destroy,
                      repaired: done.repair)
    }
}
