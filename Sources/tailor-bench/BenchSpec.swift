import ArgumentParser
import Foundation
import TailorCommandLine
import TailorCubes
import TailorReference
import TailorSpec

/// `tailor-bench spec`: how long parsing and validating hostile or large inputs
/// takes (goal: any input up to 1 MiB accepted or rejected within 100 ms), against
/// libyaml building the node tree alone as the baseline.
struct BenchSpec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spec",
        abstract: "Time spec parsing+validation of 1 MiB inputs against the bare libyaml parse."
    )

    @Option(help: "Runs per input; the median is reported.")
    var runs = 7

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct Row: Codable {
        var input: String
        var bytes: Int
        var libyamlMs: Double
        var validateMs: Double
        var ratio: Double
        var verdict: String
    }

    func run() throws {
        let loader = SpecLoader(cubeTypes: CubeType.schemas)
        var rows: [Row] = []
        for (name, bytes) in Self.inputs() {
            let time = { (body: () -> Void) in
                median((0..<runs).map { _ in ContinuousClock().measure(body).microseconds / 1000 })
            }
            var verdict = ""
            let bare = time {
                var d = Diagnostics()
                _ = YAMLReader.documents(bytes, file: name, diagnostics: &d)
            }
            let full = time {
                var d = Diagnostics()
                for chain in loader.decode(bytes, file: name, diagnostics: &d) { _ = chain.datapath(diagnostics: &d) }
                verdict = d.hasErrors ? "rejected: " + (d.sorted.first?.message.prefix(50) ?? "") : "accepted"
            }
            rows.append(Row(input: name, bytes: bytes.count, libyamlMs: bare, validateMs: full,
                            ratio: bare > 0 ? full / bare : 0, verdict: verdict))
        }
        if output == .json {
            try printJSON(rows)
        } else {
            let f = { (v: Double) in String(format: "%.2f", v) }
            print("Spec parsing: median of \(runs) runs (ms); baseline = libyaml node tree only\n")
            print(table(["input", "bytes", "libyaml", "parse+validate", "ratio", "result"],
                        rows.map { [$0.input, "\($0.bytes)", f($0.libyamlMs), f($0.validateMs),
                                    String(format: "%.1fx", $0.ratio), $0.verdict] }))
        }
    }

    /// Inputs of about 1 MiB each: valid specs at scale and the shapes an attacker would try.
    static func inputs() -> [(String, [UInt8])] {
        let mib = 1 << 20
        func fill(_ unit: (Int) -> String, header: String = "") -> [UInt8] {
            var text = header
            var i = 0
            while text.utf8.count + unit(i).utf8.count < mib {
                text += unit(i)
                i += 1
            }
            return Array(text.utf8)
        }
        var index = 0
        var chains = ""
        while index < 1000 && chains.utf8.count < mib - 1200 {
            index += 1
            chains += """
                ---
                apiVersion: tailor/v1
                kind: Chain
                metadata: {name: chain\(index)}
                spec:
                  attach: {interface: eth\(index % 4096), namespace: ns\(index), hook: tc-ingress}
                  cubes:
                    - {name: count, type: counter}
                    - name: acl
                      type: filter
                      config:
                        rules:
                          - {match: {src: 10.\(index % 256).0.0/16, proto: tcp, dport: 22}, action: drop}
                          - {match: {dst: "fd00::/8", proto: udp, dport: 1000-2000}, action: drop}
                          - {match: {src: 192.168.\(index % 256).0/24, proto: tcp, tcpFlags: {mask: [syn, ack], set: [syn]}}, action: pass}
                          - {match: {src: "fd00:\(index % 65535)::/32", proto: icmpv6}, action: pass}
                          - {match: {proto: udp, sport: 53, dport: 1024-65535}, action: pass}
                    - {name: seen, type: tag, config: {id: \(index % 65535 + 1)}}

                """
        }
        // Filters at their 64-rule limit, as many chains as fit in 1 MiB.
        var fullFilters = ""
        for chain in 1... {
            let rules = (0..<64).map { rule in
                "          - {match: {src: 10.\(chain % 256).\(rule).0/24, proto: tcp, dport: \(1000 + rule)-\(2000 + rule)}, "
                    + "action: drop}\n"
            }.joined()
            let document = "---\napiVersion: tailor/v1\nkind: Chain\nmetadata: {name: c\(chain)}\nspec:\n"
                + "  attach: {interface: e\(chain), hook: xdp}\n  cubes:\n    - name: f\n      type: filter\n"
                + "      config:\n        rules:\n" + rules
            guard fullFilters.utf8.count + document.utf8.count <= mib else { break }
            fullFilters += document
        }
        // The largest single cube an operator writes: `tailor-bench firewall-update`'s
        // 10,000 rules, one a line (about 0.97 MB).
        let firewall = "apiVersion: tailor/v1\nkind: Chain\nmetadata: {name: fw}\nspec:\n"
            + "  attach: {interface: e, hook: tc-ingress}\n  cubes:\n    - name: fw\n      type: firewall\n"
            + "      config:\n        policy: drop\n        acceptEstablished: false\n        rules:\n"
            + FirewallBenchmarkSet(count: 10_000).set.rules.compactMap(FirewallRuleSet.specLine)
                .map { "          - \($0)\n" }.joined()
        var random = SystemRandomNumberGenerator()
        return [
            ("1,000 valid chains", Array(chains.utf8)),
            ("64-rule filters", Array(fullFilters.utf8)),
            ("10,000-rule firewall", Array(firewall.utf8)),
            ("one huge label map", fill({ "    l\($0): value\n" },
                                        header: "apiVersion: tailor/v1\nkind: Chain\nmetadata:\n  name: x\n  labels:\n")),
            ("49,000 labels", Array(("apiVersion: tailor/v1\nkind: Chain\nmetadata:\n  name: x\n  labels:\n"
                                     + (0..<49_000).map { "    l\($0): v\n" }.joined()
                                     + "spec:\n  attach: {interface: e, hook: xdp}\n  cubes: [{name: a, type: counter}]\n")
                                    .utf8)),
            ("15,000 cubes", Array(("apiVersion: tailor/v1\nkind: Chain\nmetadata: {name: x}\nspec:\n"
                                    + "  attach: {interface: e, hook: xdp}\n  cubes:\n"
                                    + (0..<15_000).map { "    - {name: c\($0), type: counter}\n" }.joined()).utf8)),
            ("45,000 unknown keys", Array(("apiVersion: tailor/v1\n" + (0..<45_000).map { "unknown\($0): 1\n" }.joined()).utf8)),
            ("one long enum value", Array(("apiVersion: tailor/v1\nkind: Chain\nmetadata: {name: x}\nspec:\n"
                                           + "  attach: {interface: e, hook: " + String(repeating: "x", count: mib - 200)
                                           + "}\n  cubes: [{name: a, type: counter}]\n").utf8)),
            ("one long scalar", Array(("name: \"" + String(repeating: "x", count: mib - 16) + "\"\n").utf8)),
            ("deep nesting", Array((String(repeating: "[", count: mib / 2) + String(repeating: "]", count: mib / 2)).utf8)),
            ("alias fan-out", fill({ _ in "- *a\n" }, header: "- &a [x, y, z]\n")),
            ("random bytes", (0..<mib).map { _ in UInt8.random(in: 0...255, using: &random) }),
            ("many small documents", fill({ "---\nk\($0): 1\n" })),
        ]
    }
}
