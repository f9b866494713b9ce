import Crypto
import Foundation
import TailorKernel

/// The verdict at the end of a chain's paths, and for an empty slot.
public enum Verdict: String, Sendable, Hashable, Codable {
    case pass, drop
}

/// Where a chain's root is attached.
public struct ChainHook: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable, Codable {
        case xdp(XDPMode)
        case tcIngress
        case tcEgress
    }

    public var interface: String
    /// The network namespace (`ip netns` name); nil for the controller's own.
    public var namespace: String?
    public var kind: Kind

    public init(interface: String, namespace: String? = nil, kind: Kind) {
        self.interface = interface
        self.namespace = namespace
        self.kind = kind
    }

    /// Where on the interface the root runs: the one switch over the hook's kind.
    public var attachPoint: AttachPoint {
        switch kind {
        case .xdp(let mode): .xdp(mode)
        case .tcIngress: .tc(.ingress)
        case .tcEgress: .tc(.egress)
        }
    }

    /// Cube programs for this hook are loaded as XDP or as TC programs.
    public var isXDP: Bool { attachPoint.isXDP }

    /// Whether the hook's interface, or its namespace, does not exist (another
    /// failure to look it up, such as a permission refused, is not "gone").
    public var isGone: Bool {
        do {
            _ = try NetworkInterface.lookup(interface, in: namespace.map(NetworkNamespace.named))
            return false
        } catch let error as KernelError {
            return error.code == .interfaceNotFound || error.code == .notFound
        } catch {
            return false
        }
    }

    /// The interface `program` is attached to at this hook's attach point, looking
    /// in the hook's namespace (when it exists) and in the controller's own, where a
    /// physical interface goes back when its namespace is deleted: an interface
    /// renamed under its chain. Nil when it is on none of them.
    public func interface(holding program: ProgramID) -> String? {
        let namespaces = (namespace.map { [NetworkNamespace.named($0)] } ?? []) + [nil] as [NetworkNamespace?]
        for namespace in namespaces {
            let names = { () -> [String] in
                guard let list = if_nameindex() else { return [] }
                defer { if_freenameindex(list) }
                var names: [String] = []
                var entry = list
                while entry.pointee.if_index != 0 {
                    names.append(String(cString: entry.pointee.if_name))
                    entry += 1
                }
                return names
            }
            let found = (try? namespace.map { try $0.run(names) } ?? names()) ?? []
            for name in found {
                guard let interface = try? NetworkInterface.lookup(name, in: namespace) else { continue }
                if (try? attachPoint.attached(on: interface)) == program { return interface.description }
            }
        }
        return nil
    }

    public var description: String {
        "\(attachPoint) on \(interface)" + (namespace.map { " in netns \($0)" } ?? "")
    }

    /// The hook `description` spells (`tc-ingress on eth0 in netns blue`), as plans
    /// write it; nil for other text. Interface and namespace names hold no spaces.
    public init?(description text: String) {
        guard let on = text.range(of: " on ") else { return nil }
        let point = String(text[..<on.lowerBound]), rest = text[on.upperBound...]
        let netns = rest.range(of: " in netns ")
        let interface = String(netns.map { rest[..<$0.lowerBound] } ?? rest)
        let kinds: [Kind] = XDPMode.allCases.map(Kind.xdp) + [.tcIngress, .tcEgress]
        guard !interface.isEmpty, let kind = kinds.first(where: {
            ChainHook(interface: interface, kind: $0).attachPoint.description == point
        }) else { return nil }
        self.init(interface: interface, namespace: netns.map { String(rest[$0.upperBound...]) }, kind: kind)
    }
}

extension ChainHook {
    /// The program attached to this hook now, or nil when there is none.
    public func attachedProgram() throws -> ProgramID? {
        try attachedProgram(on: NetworkInterface.lookup(interface, in: namespace.map(NetworkNamespace.named)))
    }

    func attachedProgram(on interface: NetworkInterface) throws -> ProgramID? {
        try attachPoint.attached(on: interface)
    }
}

/// A chain as the datapath runs it: which cube comes first and, for each cube,
/// what it is (its blueprint) and where each of its outputs continues.
public struct Topology: Sendable, Equatable {
    /// One cube of the chain.
    public struct Node: Sendable, Equatable {
        public var blueprint: CubeBlueprint
        /// Per output, the next cube's name, or nil where the path ends.
        public var next: [String?]

        public init(blueprint: CubeBlueprint, next: [String?]) {
            self.blueprint = blueprint
            self.next = next
        }
    }

    /// The entry cube, which the root reaches through slot 0; nil for an empty chain.
    public var entry: String?
    public var nodes: [String: Node]

    public init(entry: String?, nodes: [String: Node]) {
        self.entry = entry
        self.nodes = nodes
    }

    /// A straight chain: each cube continues to the next, the last ends the path.
    public static func line(_ cubes: [(name: String, blueprint: CubeBlueprint)]) -> Topology {
        var nodes: [String: Node] = [:]
        for (index, cube) in cubes.enumerated() {
            let next = index + 1 < cubes.count ? cubes[index + 1].name : nil
            nodes[cube.name] = Node(blueprint: cube.blueprint, next: [next])
        }
        return Topology(entry: cubes.first?.name, nodes: nodes)
    }

    /// The cubes reachable from the entry, in depth-first preorder.
    public var reachable: [String] {
        var seen: Set<String> = []
        var order: [String] = []
        func visit(_ cube: String) {
            guard seen.insert(cube).inserted, let node = nodes[cube] else { return }
            order.append(cube)
            for case let next? in node.next { visit(next) }
        }
        if let entry { visit(entry) }
        return order
    }
}

extension Topology {
    /// sha256 over the chain's settings and every reachable cube's name, blueprint
    /// digest and next cubes, in a canonical order: two desired chains with the same
    /// digest build the same datapath. The meta record keeps it, so a plan can tell at
    /// a glance whether a chain is already what the specs say.
    public func digest(settings: ChainSettings) -> String {
        digest(settings: settings, cubeDigests: nodes.mapValues(\.blueprint.digest))
    }

    /// The same, from blueprint digests computed once by the caller.
    public func digest(settings: ChainSettings, cubeDigests: [String: String]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var hasher = SHA256()
        hasher.update(data: (try? encoder.encode(settings)) ?? Data())
        hasher.update(data: Array("entry=\(entry ?? "")".utf8))
        for cube in reachable.sorted() {
            guard let node = nodes[cube] else { continue }
            let next = node.next.map { $0 ?? "-" }.joined(separator: ",")
            hasher.update(data: Array("\n\(cube) \(cubeDigests[cube] ?? "") \(next)".utf8))
        }
        return hexDigest(hasher.finalize())
    }
}
