/// A cube instance as it sits in a chain's prog_array.
public struct LiveInstance: Sendable, Equatable, Codable {
    public var slot: Int
    /// The blueprint digest it was loaded from.
    public var digest: String
    /// Per output, the slot it tail-calls, or nil where its path ends.
    public var next: [Int?]

    public init(slot: Int, digest: String, next: [Int?]) {
        self.slot = slot
        self.digest = digest
        self.next = next
    }
}

/// How a chain moves from its live layout to a desired topology with one
/// prog_array write (the commit), so that every packet is handled entirely by
/// the old chain or entirely by the new one.
///
/// New instances go into free slots, where no packet can reach them, except the
/// one written by the commit: the nearest cube that dominates every change (all
/// paths to a changed cube pass through it), written into its own slot, or into
/// slot 0 when the entry changes. Between that cube and each change, every cube
/// on the way gets a new instance too (the path copy); everything else is reused
/// where it is. Old instances are retired only after an RCU grace period, so a
/// packet already on the old path never finds an empty slot.
public struct SlotPlan: Sendable, Equatable {
    /// Instances to load: cube name -> its slot and wiring.
    public var load: [String: LiveInstance]
    /// The slot whose write makes the change visible, or nil when nothing changes.
    public var commitSlot: Int?
    /// The cube whose new instance the commit writes.
    public var commitCube: String?
    /// Cubes whose old instances leave after the commit (removed or re-instanced).
    public var retire: [String: LiveInstance]
    /// Slots to empty after the grace period (the commit slot is overwritten, not emptied).
    public var slotsToClear: [Int]
    /// The layout after the commit.
    public var result: [String: LiveInstance]

    public var isEmpty: Bool { load.isEmpty && retire.isEmpty }
}

/// Why a topology cannot be planned.
public struct SlotPlanError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

extension SlotPlan {
    /// Plans the move from `live` to `desired` in a prog_array of `capacity` slots.
    /// Pure: the same inputs always give the same plan. `digests` holds blueprint
    /// digests already computed (the rest are computed here).
    public static func make(
        live: [String: LiveInstance], desired: Topology, capacity: Int, digests: [String: String] = [:]
    ) throws(SlotPlanError) -> SlotPlan {
        let digest = { (cube: String, node: Topology.Node) in digests[cube] ?? node.blueprint.digest }
        let reachable = desired.reachable
        let members = Set(reachable)
        for cube in reachable {
            for case let next? in desired.nodes[cube]?.next ?? [] where desired.nodes[next] == nil {
                throw SlotPlanError(message: "cube \(cube) continues to \(next), which is not in the chain")
            }
        }
        let cubeAtSlot = Dictionary(live.map { ($0.value.slot, $0.key) }, uniquingKeysWith: { a, _ in a })
        let liveEntry = cubeAtSlot[0]

        // Cubes that need a new instance for their own sake.
        var changed: Set<String> = []
        for cube in reachable {
            guard let node = desired.nodes[cube], let old = live[cube] else {
                changed.insert(cube)
                continue
            }
            let oldNext = old.next.map { $0.flatMap { cubeAtSlot[$0] } }
            if old.digest != digest(cube, node) || oldNext != node.next { changed.insert(cube) }
        }
        if let entry = desired.entry, entry != liveEntry {
            changed.insert(entry)
            // The entry's slot is about to hold another cube: the old entry, if it
            // stays, must move.
            if let liveEntry, members.contains(liveEntry) { changed.insert(liveEntry) }
        }

        let leaving = live.filter { !members.contains($0.key) }
        guard !changed.isEmpty, let entry = desired.entry else {
            // Nothing new to load: at most cubes to drop (an emptied chain, or
            // instances left unreachable by an interrupted change).
            return SlotPlan(load: [:], commitSlot: desired.entry == nil && liveEntry != nil ? 0 : nil,
                            commitCube: nil, retire: leaving,
                            slotsToClear: leaving.values.map(\.slot).sorted(),
                            result: live.filter { members.contains($0.key) })
        }

        let dominators = Self.dominators(of: desired, from: entry, order: reachable)
        let commitCube = Self.nearestCommonDominator(of: changed, dominators)
        let commitSlot = commitCube == entry ? 0 : (live[commitCube]?.slot ?? 0)

        // The path copy: the commit cube and every cube between it and a change.
        let reachesChange = Self.cubesReaching(changed, in: desired, order: reachable)
        let fromCommit = Set(Topology(entry: commitCube, nodes: desired.nodes).reachable)
        let copied = fromCommit.intersection(reachesChange).union([commitCube])

        // Free slots: not 0, not the commit slot, not held by any live instance.
        let taken = Set(live.values.map(\.slot)).union([0, commitSlot])
        var free = (1..<capacity).filter { !taken.contains($0) }.makeIterator()
        var slots: [String: Int] = [commitCube: commitSlot]
        for cube in reachable where copied.contains(cube) && cube != commitCube {
            guard let slot = free.next() else {
                throw SlotPlanError(message: "the chain needs \(copied.count) new slots during the change "
                    + "and has \(capacity - taken.count) free of \(capacity)")
            }
            slots[cube] = slot
        }

        var load: [String: LiveInstance] = [:]
        var result: [String: LiveInstance] = [:]
        for cube in reachable {
            guard let node = desired.nodes[cube] else { continue }
            if let slot = slots[cube] {
                let next = node.next.map { $0.flatMap { slots[$0] ?? live[$0]?.slot } }
                load[cube] = LiveInstance(slot: slot, digest: digest(cube, node), next: next)
                result[cube] = load[cube]
            } else {
                result[cube] = live[cube]
            }
        }
        var retire = leaving
        for cube in copied { if let old = live[cube] { retire[cube] = old } }
        let clear = retire.values.map(\.slot).filter { $0 != commitSlot }.sorted()
        return SlotPlan(load: load, commitSlot: commitSlot, commitCube: commitCube, retire: retire,
                        slotsToClear: clear, result: result)
    }

    /// Dominator sets of a DAG: dom(v) = {v} ∪ ⋂ dom(predecessors of v).
    static func dominators(of topology: Topology, from entry: String, order: [String]) -> [String: Set<String>] {
        var predecessors: [String: [String]] = [:]
        for cube in order {
            for case let next? in topology.nodes[cube]?.next ?? [] { predecessors[next, default: []].append(cube) }
        }
        let all = Set(order)
        var dominators = Dictionary(uniqueKeysWithValues: order.map { ($0, all) })
        dominators[entry] = [entry]
        var changed = true
        while changed {
            changed = false
            for cube in order where cube != entry {
                let preds = predecessors[cube] ?? []
                var set = preds.reduce(all) { $0.intersection(dominators[$1] ?? all) }
                set.insert(cube)
                if set != dominators[cube] {
                    dominators[cube] = set
                    changed = true
                }
            }
        }
        return dominators
    }

    /// The deepest cube that dominates every cube in `cubes`.
    static func nearestCommonDominator(of cubes: Set<String>, _ dominators: [String: Set<String>]) -> String {
        let common = cubes.reduce(nil as Set<String>?) { partial, cube in
            let own = dominators[cube] ?? []
            return partial.map { $0.intersection(own) } ?? own
        } ?? []
        // The deepest common dominator is the one with the most dominators of its own.
        return common.max { (dominators[$0]?.count ?? 0, $1) < (dominators[$1]?.count ?? 0, $0) } ?? ""
    }

    /// Cubes from which some cube in `targets` can be reached (targets included).
    static func cubesReaching(_ targets: Set<String>, in topology: Topology, order: [String]) -> Set<String> {
        var result = targets
        // Reverse preorder visits successors before predecessors in a DAG often enough;
        // iterate to a fixed point to be exact for any DAG.
        var grew = true
        while grew {
            grew = false
            for cube in order.reversed() where !result.contains(cube) {
                if (topology.nodes[cube]?.next ?? []).contains(where: { $0.map(result.contains) ?? false }) {
                    result.insert(cube)
                    grew = true
                }
            }
        }
        return result
    }
}
