import Foundation
import Testing
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
    static let recording = ProcessInfo.processInfo.environment["TAILOR_RECORD_GOLDENS"] == "1"

    /// Runs tailor with `arguments` from the repository root; `replacing` maps
    /// run-specific text (a temporary pin root) to stable placeholders.
    static func check(_ name: String, _ arguments: [String], replacing: [String: String] = [:]) throws {
        let (status, stdout, stderr) = try CLI.run(arguments)
        let scrub = { (text: String) in replacing.reduce(text) { $0.replacingOccurrences(of: $1.key, with: $1.value) } }
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
        }
    }
}
