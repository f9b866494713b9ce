import ArgumentParser
import TailorCommandLine
import TailorLab

/// `tailor lab up|down`: the built-in lab the example specs attach to: namespaces
/// tailor-lab-a and tailor-lab-b joined by the veth pair tl-a <-> tl-b
/// (10.99.0.1 <-> 10.99.0.2).
struct Lab: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or remove the lab network the example specs use (needs root).",
        subcommands: [Up.self, Down.self]
    )

    static func lab() -> VethLab {
        VethLab.named(namespacePrefix: "tailor-lab-", interfacePrefix: "tl-")
    }

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
        var a: Side?, b: Side?
    }

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create the lab namespaces and veth pair.")

        @Option(help: "Output format: text or json.")
        var output: OutputFormat = .text

        func run() throws {
            var lab = Lab.lab()
            let up = (try? lab.b.interface()) == nil
            if up {
                lab.destroy()  // a half-made lab from an interrupted run
                lab = try VethLab.create(namespacePrefix: "tailor-lab-", interfacePrefix: "tl-")
            }
            let state = up ? "up" : "already-up"
            guard output == .text else { return try printJSON(Outcome(state: state, a: Side(lab.a), b: Side(lab.b))) }
            print((state == "up" ? "Lab up: " : "Lab already up: ") + "\(lab.a.namespaceName) \(lab.a.interfaceName) "
                  + "\(lab.a.ipv4) <-> \(lab.b.ipv4) \(lab.b.interfaceName) \(lab.b.namespaceName)")
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the lab (and whatever is attached in it).")

        @Option(help: "Output format: text or json.")
        var output: OutputFormat = .text

        func run() throws {
            Lab.lab().destroy()
            if output == .json { return try printJSON(Outcome(state: "down")) }
            print("Lab down.")
        }
    }
}
