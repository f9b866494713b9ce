import ArgumentParser

/// The `tailor` command line: declarative chains of eBPF network functions.
@main
struct Tailor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tailor",
        abstract: "Declarative, GitOps-style controller for chains of eBPF network functions.",
        subcommands: [
            Validate.self, PlanCommand.self, ApplyCommand.self, StatusCommand.self, DestroyCommand.self, Lab.self,
            Schema.self, Bench.self, Run.self,
        ]
    )
}
