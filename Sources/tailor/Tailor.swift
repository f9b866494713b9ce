import ArgumentParser
import CLibBPF
import Glibc
import TailorObjects

/// The `tailor` command line: declarative chains of eBPF network functions.
@main
struct Tailor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tailor",
        abstract: "Declarative, GitOps-style controller for chains of eBPF network functions.",
        version: versionText,
        subcommands: [
            Validate.self, PlanCommand.self, ApplyCommand.self, StatusCommand.self, DestroyCommand.self, Lab.self,
            Schema.self, Run.self,
        ]
    )

    /// tailor's own version.
    static let version = "0.1.0"

    /// `tailor --version`: what a bug report needs to say which tailor, built from
    /// what, ran on which libbpf and kernel (the verifier and the attach calls
    /// behave differently across both).
    static var versionText: String {
        var system = utsname()
        let release = uname(&system) == 0
            ? withUnsafeBytes(of: system.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            : "unknown"
        return """
            tailor \(version)
            commit \(BuildInfo.commit)
            libbpf \(libbpf_major_version()).\(libbpf_minor_version())
            kernel \(release)
            """
    }
}
