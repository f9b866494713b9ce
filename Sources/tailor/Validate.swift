import ArgumentParser
import Foundation
import TailorCommandLine
import TailorCubes
import TailorSpec

/// `tailor validate PATH...`: checks spec files offline, without root, and prints
/// every problem compiler-style.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check spec files or directories (offline, no root needed).",
        discussion: "Exit status: 0 valid (warnings allowed), 1 invalid."
    )

    @Argument(help: "Spec files or directories (*.yaml, *.yml; hidden files are skipped).")
    var paths: [String]

    @Option(help: "Output format: text (file:line:col: error: message) or json.")
    var output: OutputFormat = .text

    @Option(help: "Colour: auto (on a terminal, unless NO_COLOR is set), always or never.")
    var color: ColorChoice = .auto

    @Flag(help: "When valid, print the chains as tailor reads them (defaults filled in, successors explicit).")
    var normalized = false

    func validate() throws {
        if normalized && output == .json {
            throw ValidationError("--normalized prints YAML; it cannot be combined with --output json")
        }
    }

    func run() throws {
        let (state, diagnostics) = SpecLoader(cubeTypes: CubeType.schemas).load(paths)
        var all = diagnostics
        // Turning configs into blueprints catches what the schema cannot (mixed IP versions, ...).
        for chain in state?.chains ?? [] { _ = chain.datapath(diagnostics: &all) }
        let sorted = all.sorted
        if output == .json {
            try printJSON(sorted.map(JSONDiagnostic.init))
        } else {
            let paint = color.enabled(forDescriptor: STDERR_FILENO)
            for diagnostic in sorted { FileHandle.standardError.write(Data((render(diagnostic, paint) + "\n").utf8)) }
            if let state, !all.hasErrors {
                if normalized {
                    print(try SpecWriter(cubeTypes: CubeType.schemas).yaml(state.chains), terminator: "")
                } else {
                    print("Valid: \(state.chains.count) chain(s) in \(paths.joined(separator: ", "))")
                }
            }
        }
        if all.hasErrors { throw ExitCode(1) }
    }

    func render(_ diagnostic: Diagnostic, _ paint: Bool) -> String {
        guard paint else { return diagnostic.description }
        let colour = diagnostic.severity == .error ? "\u{1b}[1;31m" : "\u{1b}[1;33m"
        return "\u{1b}[1m\(diagnostic.location):\u{1b}[0m \(colour)\(diagnostic.severity.rawValue):\u{1b}[0m "
            + diagnostic.message
    }

    struct JSONDiagnostic: Encodable {
        var file: String, line: Int, column: Int, severity: String, message: String
        init(_ d: Diagnostic) {
            (file, line, column, severity, message) =
                (d.location.file, d.location.line, d.location.column, d.severity.rawValue, d.message)
        }
    }
}

/// `--color auto|always|never`.
enum ColorChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, always, never

    /// `auto` paints on a terminal unless NO_COLOR is set to a non-empty value
    /// (no-color.org: an empty NO_COLOR does not count).
    func enabled(forDescriptor fd: Int32) -> Bool {
        switch self {
        case .always: true
        case .never: false
        case .auto: (ProcessInfo.processInfo.environment["NO_COLOR"] ?? "").isEmpty && isatty(fd) != 0
        }
    }
}
