import ArgumentParser
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

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create the lab namespaces and veth pair.")

        func run() throws {
            let existing = Lab.lab()
            if (try? existing.b.interface()) != nil {
                return print("Lab already up: \(describe(existing))")
            }
            existing.destroy()  // a half-made lab from an interrupted run
            print("Lab up: " + describe(try VethLab.create(namespacePrefix: "tailor-lab-", interfacePrefix: "tl-")))
        }

        func describe(_ lab: VethLab) -> String {
            "\(lab.a.namespaceName) \(lab.a.interfaceName) \(lab.a.ipv4) <-> \(lab.b.ipv4) \(lab.b.interfaceName) "
                + lab.b.namespaceName
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the lab (and whatever is attached in it).")

        func run() throws {
            Lab.lab().destroy()
            print("Lab down.")
        }
    }
}
