import Foundation
import Testing
import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

/// Runs the built `tailor` and compares stdout, stderr and the exit status with the
/// goldens in Goldens/ (NAME.stdout, NAME.stderr, NAME.status). Set
/// TAILOR_RECORD_GOLDENS=1 to write them from the current output instead.
enum Golden {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let goldens = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Goldens")
    /// The `tailor` built beside this test binary.
    static let tailor = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("tailor")
    /// The `tailor-bench` built beside it.
    static let tailorBench = tailor.deletingLastPathComponent().appendingPathComponent("tailor-bench")
    static let recording = ProcessInfo.processInfo.environment["TAILOR_RECORD_GOLDENS"] == "1"

    /// Runs tailor with `arguments` from the repository root; `replacing` maps
    /// run-specific text (a temporary pin root) to stable placeholders, and
    /// `patterns` does the same for regular expressions (program ids, digests).
    static func check(_ name: String, _ arguments: [String], replacing: [String: String] = [:],
                      patterns: [String: String] = [:]) throws {
        let (status, stdout, stderr) = try CLI.run(arguments)
        let scrub = { (text: String) in
            let literal = replacing.reduce(text) { $0.replacingOccurrences(of: $1.key, with: $1.value) }
            return patterns.reduce(literal) {
                $0.replacingOccurrences(of: $1.key, with: $1.value, options: .regularExpression)
            }
        }
        let actual = ["stdout": scrub(stdout), "stderr": scrub(stderr), "status": "\(status)\n"]
        for (stream, text) in actual.sorted(by: { $0.key < $1.key }) {
            let file = goldens.appendingPathComponent("\(name).\(stream)")
            if recording {
                try text.write(to: file, atomically: true, encoding: .utf8)
                continue
            }
            let expected = (try? String(contentsOf: file, encoding: .utf8)) ?? "<missing golden \(file.path)>"
            #expect(text == expected, "\(name).\(stream) differs from its golden")
        }
    }
}

/// Runs the built `tailor` from the repository root.
enum CLI {
    /// Exit status (or 128 + signal), stdout and stderr of `tailor arguments` (or of
    /// another program, such as strace running tailor).
    static func run(_ arguments: [String], environment: [String: String] = [:], executable: String? = nil) throws
        -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = executable.map { URL(fileURLWithPath: $0) } ?? Golden.tailor
        process.arguments = arguments
        process.currentDirectoryURL = Golden.root
        process.environment = ["NO_COLOR": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
            .merging(environment) { _, new in new }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal
            ? 128 + process.terminationStatus : process.terminationStatus
        return (status, stdout, stderr)
    }
}

@Suite("CLI goldens")
struct GoldenTests {
    @Test("validate: a valid directory")
    func validateGood() throws { try Golden.check("validate-good", ["validate", "specs"]) }

    @Test("validate: errors compiler-style, exit 1")
    func validateBad() throws {
        try Golden.check("validate-bad", ["validate", "Tests/TailorSpecTests/Fixtures/bad/filter-typo-match.yaml",
                                          "Tests/TailorSpecTests/Fixtures/bad/bad-hook.yaml"])
    }

    @Test("validate: JSON diagnostics")
    func validateJSON() throws {
        try Golden.check("validate-json", ["validate", "--output", "json",
                                           "Tests/TailorSpecTests/Fixtures/bad/cube-duplicate-name.yaml"])
    }

    @Test("usage errors exit 64")
    func usage() throws { try Golden.check("destroy-usage", ["destroy"]) }

    @Test("plan, plan --output json and status on an empty pin root", .kernel)
    func plan() async throws {
        try await TestPinRoot.with { root in
            let scrub = [root.path: "<pin root>"]
            try Golden.check("plan-create", ["plan", "specs", "--bpffs", root.path, "--detailed-exitcode"],
                             replacing: scrub)
            try Golden.check("plan-create-json", ["plan", "specs", "--bpffs", root.path, "--output", "json"],
                             replacing: scrub)
            try Golden.check("status-empty", ["status", "--bpffs", root.path], replacing: scrub)
            try Golden.check("status-missing", ["status", "specs", "--bpffs", root.path, "--output", "json"],
                             replacing: scrub)
            try Golden.check("status-unknown-chain", ["status", "specs", "edge", "nosuch", "--bpffs", root.path],
                             replacing: scrub)
        }
    }

    /// A spec directory of its own, removed after `body`.
    static func withDirectory<R>(_ body: (String) async throws -> R) async throws -> R {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tailor-golden-\(UniqueName.make(""))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await body(directory)
    }

    @Test("status exits 0 when synced, 2 when out of sync, not in the specs or drifted; names select chains", .kernel)
    func statusExitCodes() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                try await Self.withDirectory { specs in
                    try lab.filterChainSpec(droppingUDP: 9).write(toFile: specs + "/edge.yaml", atomically: true,
                                                                  encoding: .utf8)
                    let tailor = { (arguments: [String]) in try CLI.run(arguments + ["--bpffs", root.path]) }
                    #expect(try tailor(["apply", specs]).status == 0)
                    let scrub = [root.path: "<pin root>", specs: "<specs>", lab.b.interfaceName: "<interface>",
                                 lab.b.namespaceName: "<netns>"]
                    let patterns = [#""program" : [0-9]+"#: #""program" : <id>"#,
                                    #""specDigest" : "[0-9a-f]+""#: #""specDigest" : "<digest>""#]
                    let check = { (name: String, arguments: [String]) in
                        try Golden.check(name, arguments + ["--bpffs", root.path, "--output", "json"],
                                         replacing: scrub, patterns: patterns)
                    }
                    try check("status-synced", ["status", specs, "edge"])
                    #expect(try tailor(["status"]).status == 0)

                    try lab.filterChainSpec(droppingUDP: 10).write(toFile: specs + "/edge.yaml", atomically: true,
                                                                   encoding: .utf8)
                    try check("status-out-of-sync", ["status", specs])
                    try FileManager.default.removeItem(atPath: specs + "/edge.yaml")
                    let notInSpecs = try tailor(["status", specs])
                    #expect(notInSpecs.status == 2 && notInSpecs.stdout.contains("chain edge  NotInSpecs"),
                            "\(notInSpecs)")

                    let rootID = try Program(pinnedAt: root.appending("edge", "root")).info().id
                    try TC.detach(from: lab.b.interface(), direction: .ingress, expected: rootID)
                    try check("status-drifted", ["status", "edge"])
                    #expect(try tailor(["destroy", "--all"]).status == 0)
                }
            }
        }
    }

    @Test("apply of specs that hold no chain refuses while a chain is live and changes nothing; --allow-empty destroys",
          .kernel)
    func emptySpecs() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                try await Self.withDirectory { directory in
                    let (specs, empty) = (directory + "/specs", directory + "/empty")
                    for path in [specs, empty] { try FileManager.default.createDirectory(atPath: path,
                                                                                         withIntermediateDirectories: true) }
                    try lab.filterChainSpec(droppingUDP: 9).write(toFile: specs + "/edge.yaml", atomically: true,
                                                                  encoding: .utf8)
                    let tailor = { (arguments: [String]) in try CLI.run(arguments + ["--bpffs", root.path]) }
                    let scrub = [root.path: "<pin root>", directory: "<dir>", lab.b.interfaceName: "<interface>",
                                 lab.b.namespaceName: "<netns>"]
                    let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                    #expect(try tailor(["apply", specs]).status == 0)
                    let before = try KernelSnapshot(root, hooks: [hook])

                    try Golden.check("apply-empty-refused", ["apply", empty, "--bpffs", root.path], replacing: scrub)
                    #expect(try KernelSnapshot(root, hooks: [hook]) == before, "a refused apply changed the kernel")
                    let plan = try tailor(["plan", empty, "--out", directory + "/plan.json"])
                    #expect(plan.status == 1 && plan.stderr.contains("error: the specs hold no chains while 1 chain"),
                            "\(plan.stderr)")
                    #expect(!FileManager.default.fileExists(atPath: directory + "/plan.json"))
                    let kept = try tailor(["apply", empty, "--no-prune"])
                    #expect(kept.status == 0 && kept.stdout.contains("chain edge: skipped (no longer in the specs; kept"),
                            "\(kept)")
                    #expect(try KernelSnapshot(root, hooks: [hook]) == before, "--no-prune changed the kernel")

                    try Golden.check("apply-empty-allowed", ["apply", empty, "--bpffs", root.path, "--allow-empty"],
                                     replacing: scrub)
                    let destroyed = try KernelSnapshot(root, hooks: [hook])
                    #expect(destroyed.pins.isEmpty && destroyed.hooks == ["\(hook)": "none"], "\(destroyed)")

                    // A saved plan keeps --allow-empty.
                    #expect(try tailor(["apply", specs]).status == 0)
                    let saved = try tailor(["plan", empty, "--allow-empty", "--out", directory + "/plan.json"])
                    #expect(saved.status == 0, "\(saved.stderr)")
                    let applied = try tailor(["apply", directory + "/plan.json"])
                    #expect(applied.status == 0 && applied.stdout.contains("2 removed"), "\(applied)")
                    #expect(try KernelSnapshot(root, hooks: [hook]).pins.isEmpty)
                }
            }
        }
    }
}

/// Plans that show values: a chain of every cube kind applied, then each cube's config
/// edited by one line, then entries changed by hand and a recorded config tampered with.
@Suite("CLI goldens: plans with values", .kernel)
struct PlanValueGoldenTests {
    /// The chain `shop` on TC ingress of the lab's side b: every cube kind, a
    /// firewall of 40 rules, and `edit` (one line of each cube changed) or not.
    static func spec(_ lab: Lab, objectDigest: String, edit: Bool) -> String {
        let rules = (0..<40).map { index in
            let port = 8000 + index + (edit && index == 20 ? 1 : 0)
            return "          - {match: {proto: tcp, dst: 10.0.\(index).0/24, dport: \(port)}, action: accept}"
        }
        return """
        apiVersion: tailor/v1
        kind: Chain
        metadata:
          name: shop
        spec:
          attach: {interface: \(lab.b.interfaceName), namespace: \(lab.b.namespaceName), hook: tc-ingress}
          cubes:
            - name: limit
              type: ratelimit
              config:
                rate: 1000
                burst: 200
                drop: [203.0.113.0/24\(edit ? ", 192.0.2.0/24" : ""), "2001:db8:bad::/48"]
            - name: acl
              type: filter
              config:
                rules:
                  - {match: {proto: tcp, dport: \(edit ? 2323 : 23)}, action: drop}
                  - {match: {proto: udp, dport: 5000-5100}, action: drop}
            - name: block
              type: object
              config:
                path: blocklist.o
                sha256: \(objectDigest)
                tables:
                  blocked:
                    - {key: 7001, value: 1}
                    - {key: 7002, value: \(edit ? 0 : 1)}
            - name: fw
              type: firewall
              config:
                policy: accept
                rules:
        \(rules.joined(separator: "\n"))
            - name: split
              type: classifier
              config:
                outputs: [web, other]
                rules:
                  - {match: {proto: tcp, dport: 80}, output: web}
                  - {match: {proto: udp, dport: 53}, output: \(edit ? "other" : "web")}
              outputs: {web: seen, other: count}
            - name: seen
              type: tag
              config: {id: \(edit ? 8 : 7)}
            - name: count
              type: counter

        """
    }

    @Test("a one-line edit of each cube kind plans as its attribute, text and JSON; drift and a tampered config too")
    func values() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                try await GoldenTests.withDirectory { directory in
                    let (v1, v2) = (directory + "/v1", directory + "/v2")
                    let object = try Fixtures.testObject("blocklist")
                    let digest = CubeBlueprint(type: "object", object: object).objectDigest
                    for (path, edit) in [(v1, false), (v2, true)] {
                        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                        try Data(object).write(to: URL(fileURLWithPath: path + "/blocklist.o"))
                        try Self.spec(lab, objectDigest: digest, edit: edit)
                            .write(toFile: path + "/shop.yaml", atomically: true, encoding: .utf8)
                    }
                    let tailor = { (arguments: [String]) in try CLI.run(arguments + ["--bpffs", root.path]) }
                    let applied = try tailor(["apply", v1])
                    #expect(applied.status == 0, "\(applied.stderr)")
                    let scrub = [root.path: "<pin root>", directory: "<dir>", lab.b.interfaceName: "<interface>",
                                 lab.b.namespaceName: "<netns>"]
                    let patterns = [digest: "<sha256>", "[0-9a-f]{64}": "<digest>"]
                    let check = { (name: String, arguments: [String]) in
                        try Golden.check(name, arguments + ["--bpffs", root.path], replacing: scrub, patterns: patterns)
                    }
                    try check("plan-values", ["plan", v2])
                    try check("plan-values-json", ["plan", v2, "--output", "json"])

                    // Entries changed by hand: a prefix listed, a filter rule rewritten, a firewall bit flipped.
                    let maps = root.appending("shop", "cubes")
                    try BPFMap(pinnedAt: maps + "/limit/maps/drop_v4").update([24, 0, 0, 0, 198, 51, 100, 0], [1])
                    var rule = [UInt8](repeating: 0, count: 48)
                    rule[1] = 6
                    rule.replaceSubrange(36..<46, with: [0, 0, 0xff, 0xff, 24, 0, 24, 0, 0, 0])
                    rule[46] = 1
                    try BPFMap(pinnedAt: maps + "/acl/maps/rules").update([0, 0, 0, 0], rule)
                    // Versioned: the generation (0, the only one applied so far) after the
                    // prefix length, which counts its 8 bits.
                    let destinations = try BPFMap(pinnedAt: maps + "/fw/maps/dst_v4")
                    let key: [UInt8] = [32, 0, 0, 0, 0, 10, 0, 3, 0]
                    var vector = try #require(try destinations.lookup(key))
                    vector[24] |= 1 << 5  // words start after 3 summary words: rule 5
                    try destinations.update(key, vector)
                    try check("plan-values-drift", ["plan", v1, "--deep"])
                    // Without --deep the tables are taken to hold what was applied.
                    #expect(try tailor(["plan", v1, "--detailed-exitcode"]).status == 0)
                    #expect(try tailor(["apply", v1, "--deep"]).status == 0)
                    #expect(try tailor(["plan", v1, "--deep", "--detailed-exitcode"]).status == 0)

                    // The firewall's recorded config changed outside tailor: its values are not shown.
                    let record = try #require(try MetaRecordReader.read(root.appending("shop", "meta")))
                    let pin = root.appending("shop", "config", try #require(record.cubes["fw"]?.configDigest))
                    let config = try BPFMap(pinnedAt: pin)
                    var element = try #require(try config.lookup([0, 0, 0, 0]))
                    element[10] ^= 1
                    try config.update([0, 0, 0, 0], element)
                    try check("plan-values-tampered", ["plan", v2])
                    #expect(try tailor(["destroy", "--all"]).status == 0)
                }
            }
        }
    }
}
