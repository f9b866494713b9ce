import ArgumentParser
import TailorCommandLine
import TailorLab

/// `tailor lab up|down [--topology pair|gateway]`: the built-in labs the example
/// specs attach to. `pair` (the default): namespaces tailor-lab-a and tailor-lab-b
/// joined by the veth pair tl-a <-> tl-b (10.99.0.1 <-> 10.99.0.2). `gateway`: a
/// client, a router with Linux forwarding off and a server (tailor-gw-client,
/// tailor-gw-router, tailor-gw-server), what specs/gateway/ attaches to.
struct Lab: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or remove a lab network the example specs use (needs root).",
        subcommands: [Up.self, Down.self]
    )

    enum Topology: String, ExpressibleByArgument, CaseIterable {
        case pair, gateway

        /// Every side of the lab: an interface in its namespace.
        var sides: [VethLab.Side] {
            switch self {
            case .pair:
                let lab = Lab.pair()
                return [lab.a, lab.b]
            case .gateway:
                let lab = Lab.gateway()
                return [lab.client, lab.routerClientSide, lab.routerServerSide, lab.server]
            }
        }

        /// Makes the lab, after removing what an interrupted run left of it;
        /// false when it was up already.
        func create() throws -> Bool {
            guard let last = sides.last, (try? last.interface()) == nil else { return false }
            destroy()
            switch self {
            case .pair: _ = try VethLab.create(namespacePrefix: "tailor-lab-", interfacePrefix: "tl-")
            case .gateway: _ = try RouterLab.create(namespacePrefix: "tailor-gw-", interfacePrefix: "tgw-", linuxForwards: false)
            }
            return true
        }

        func destroy() {
            switch self {
            case .pair: Lab.pair().destroy()
            case .gateway: Lab.gateway().destroy()
            }
        }
    }

    static func pair() -> VethLab { VethLab.named(namespacePrefix: "tailor-lab-", interfacePrefix: "tl-") }
    static func gateway() -> RouterLab { RouterLab.named(namespacePrefix: "tailor-gw-", interfacePrefix: "tgw-") }

    /// One side of the lab, as `--output json` shows it.
    struct Side: Encodable {
        var namespace: String, interface: String, ipv4: String

        init(_ side: VethLab.Side) {
            (namespace, interface, ipv4) = (side.namespaceName, side.interfaceName, "\(side.ipv4)")
        }
    }

    /// What `lab up` and `lab down` did, as `--output json` shows it.
    struct Outcome: Encodable {
        /// `up`, `already-up` or `down`.
        var state: String
        var topology: String
        /// The pair's two sides (topology `pair`).
        var a: Side?, b: Side?
        /// Every interface of the lab, in its namespace.
        var interfaces: [Side]?
    }

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a lab's namespaces and veth pairs.")

        @Option(help: "The lab: pair (tailor-lab-a/b) or gateway (client, router, server).")
        var topology: Topology = .pair

        @Option(help: "Output format: text or json.")
        var output: OutputFormat = .text

        func run() throws {
            let state = try topology.create() ? "up" : "already-up"
            let sides = topology.sides
            guard output == .text else {
                return try printJSON(Outcome(state: state, topology: topology.rawValue,
                                             a: topology == .pair ? Side(sides[0]) : nil,
                                             b: topology == .pair ? Side(sides[1]) : nil, interfaces: sides.map(Side.init)))
            }
            print((state == "up" ? "Lab up: " : "Lab already up: ") + Self.describe(sides))
        }

        /// `ns a if 10.0.0.1 <-> 10.0.0.2 if ns b`, one veth pair after another.
        static func describe(_ sides: [VethLab.Side]) -> String {
            stride(from: 0, to: sides.count - 1, by: 2).map { index in
                let (a, b) = (sides[index], sides[index + 1])
                return "\(a.namespaceName) \(a.interfaceName) \(a.ipv4) <-> \(b.ipv4) \(b.interfaceName) \(b.namespaceName)"
            }.joined(separator: "; ")
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a lab (and whatever is attached in it).")

        @Option(help: "The lab: pair or gateway.")
        var topology: Topology = .pair

        @Option(help: "Output format: text or json.")
        var output: OutputFormat = .text

        func run() throws {
            topology.destroy()
            if output == .json { return try printJSON(Outcome(state: "down", topology: topology.rawValue)) }
            print("Lab down.")
        }
    }
}
