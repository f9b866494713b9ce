import Glibc
import TailorDatapath
import TailorKernel

/// The interfaces cubes name in their configs (a router's ports), bound to the
/// indexes they have now: the one place the kernel's interface indexes enter the
/// desired state. Binding before planning makes an interface deleted and made
/// anew a changed blueprint (new rodata), so the plan replaces the cube with the
/// new index, and says why.
public enum InterfaceBinding {
    /// `desired` with every cube's interfaces bound to their indexes in the chain's
    /// namespace; an interface (or namespace) that does not exist binds to 0.
    public static func bind(_ desired: [DesiredChain]) -> [DesiredChain] {
        desired.map { chain in
            let named = chain.topology.nodes.values.flatMap(\.blueprint.interfaces)
            guard !named.isEmpty else { return chain }
            let namespace = chain.settings.hook.namespace.map(NetworkNamespace.named)
            return chain.binding(to: indexes(of: Set(named), in: namespace))
        }
    }

    /// The index of each of `names` that exists in `namespace` (nil: the caller's).
    static func indexes(of names: Set<String>, in namespace: NetworkNamespace?) -> [String: UInt32] {
        let resolve = { () -> [String: UInt32] in
            Dictionary(uniqueKeysWithValues: names.compactMap { name in
                let index = if_nametoindex(name)
                return index == 0 ? nil : (name, index)
            })
        }
        guard let namespace else { return resolve() }
        return (try? namespace.run(resolve)) ?? [:]
    }

    /// Why a cube whose config is unchanged gets a new instance: the interfaces whose
    /// index differs from the live instance's (`CubeRecord.interfaces`).
    static func changes(live: [String: UInt32]?, desired: [String: UInt32]?) -> [String] {
        guard let desired, let live, live != desired else { return [] }
        let said = { (index: UInt32?) in index.map { $0 == 0 ? "absent" : "ifindex \($0)" } ?? "not named" }
        return Set(live.keys).union(desired.keys).sorted().compactMap { name in
            live[name] == desired[name] ? nil : "interface \(name): \(said(live[name])) -> \(said(desired[name]))"
        }
    }
}

extension DesiredChain {
    /// The chain with each cube's blueprint bound to `indexes` (interface -> ifindex).
    func binding(to indexes: [String: UInt32]) -> DesiredChain {
        var nodes = topology.nodes
        for (cube, node) in nodes where !node.blueprint.interfaces.isEmpty {
            nodes[cube]?.blueprint = node.blueprint.bound(to: indexes)
        }
        return DesiredChain(settings: settings, topology: Topology(entry: topology.entry, nodes: nodes),
                            suspend: suspend, repairDrift: repairDrift)
    }
}
