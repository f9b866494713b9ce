import ArgumentParser
import Foundation
import TailorCommandLine
import TailorCubes
import TailorDaemon
import TailorDatapath
import TailorKernel
import TailorReconcile
import TailorSpec

/// Options every command that touches the kernel shares.
struct KernelOptions: ParsableArguments {
    @Option(help: "bpffs directory tailor pins its chains under.")
    var bpffs = PinRoot.defaultPath

    @Option(help: "Seconds to wait for another tailor holding the pin root.")
    var lockTimeout = 30.0

    func pinRoot() throws -> PinRoot {
        let root = try PinRoot(bpffs)
        try root.makeDirectory(root.path)
        return root
    }

    /// The pin root, locked against other controllers for as long as the lock lives.
    func lockedPinRoot() throws -> (PinRoot, PinRootLock) {
        let root = try pinRoot()
        return (root, try PinRootLock(root, timeout: lockTimeout))
    }
}

/// What `plan`, `apply` and `run` do with chains that are no longer in the specs.
struct PruneOptions: ParsableArguments {
    @Flag(help: "Keep chains that are no longer in the specs instead of removing them.")
    var noPrune = false

    @Flag(help: ArgumentHelp("Remove every chain when the specs hold none (refused otherwise: an empty, missing or "
                             + "half-synced spec directory looks the same)."))
    var allowEmpty = false

    func validate() throws {
        if noPrune && allowEmpty { throw ValidationError("--allow-empty and --no-prune contradict each other; give one") }
    }

    var prune: Prune { noPrune ? .keep : allowEmpty ? .pruneAllowingEmpty : .prune }
}

/// The desired state of spec `paths`, or exit 1 after printing the specs' errors.
func loadDesired(_ paths: [String]) throws -> [DesiredChain] {
    let (chains, diagnostics) = DesiredChain.load(paths)
    for diagnostic in diagnostics.sorted { FileHandle.standardError.write(Data("\(diagnostic)\n".utf8)) }
    if diagnostics.hasErrors { throw ExitCode(1) }
    return chains
}

/// Options of `plan` and `apply`.
struct PlanOptions: ParsableArguments {
    @Argument(help: "Spec files or directories (apply also takes a plan file saved with plan --out).")
    var paths: [String]

    @OptionGroup var pruning: PruneOptions

    @Option(help: "Output format: text or json.")
    var output: OutputFormat = .text

    @Option(help: "Colour: auto, always or never.")
    var color: ColorChoice = .auto

    @Flag(name: .shortAndLong, help: "Show unchanged cubes too.")
    var verbose = false

    @Flag(help: ArgumentHelp("Also read every table entry and compare it with the specs (entries changed out of band "
        + "show as drift).", discussion: "Without it the tables are taken to hold what the record says was applied."))
    var deep = false

    /// Exits 1, with the reasons on stderr, when the plan carries refusals.
    static func refuse(_ plan: Plan) throws {
        guard !plan.refusals.isEmpty else { return }
        for refusal in plan.refusals { FileHandle.standardError.write(Data("error: \(refusal)\n".utf8)) }
        throw ExitCode(1)
    }

    func show(_ plan: Plan) throws {
        if output == .json {
            try printJSON(plan)
        } else {
            print(PlanText.render(plan, color: color.enabled(forDescriptor: STDOUT_FILENO), verbose: verbose))
        }
    }
}

/// `tailor plan PATH...`: what apply would do, with every new program verified.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what apply would change; every new or changed program is loaded so the verifier checks it.",
        discussion: "Exit status: 0 no changes (or changes without --detailed-exitcode), 2 changes with "
            + "--detailed-exitcode, 1 error or refused plan (specs that hold no chain while chains are live, without "
            + "--allow-empty; state that cannot be carried over)."
    )

    @OptionGroup var options: PlanOptions
    @OptionGroup var kernel: KernelOptions

    @Flag(help: "Exit 2 when there are changes.")
    var detailedExitcode = false

    @Option(help: "Save the plan to this file, for `tailor apply FILE`.")
    var out: String?

    func run() throws {
        let desired = try loadDesired(options.paths)
        let (pinRoot, lock) = try kernel.lockedPinRoot()
        defer { withExtendedLifetime(lock) {} }
        let prune = options.pruning.prune
        let reconciliation = Reconciliation(desired: desired, executor: Executor(pinRoot: pinRoot), prune: prune,
                                            deep: options.deep)
        let plan = try reconciliation.verified(reconciliation.plan())
        try options.show(plan)
        try PlanOptions.refuse(plan)
        if let out {
            let file = PlanFile(paths: options.paths, prune: prune, deep: options.deep, desired: desired,
                                observed: reconciliation.observed, plan: plan)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(file).write(to: URL(fileURLWithPath: out))
            FileHandle.standardError.write(Data("Saved the plan to \(out); `tailor apply \(out)` applies exactly it.\n".utf8))
        }
        if detailedExitcode && !plan.isEmpty { throw ExitCode(2) }
    }
}

/// `tailor apply PATH...`: make the kernel match the specs.
struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Make the kernel match the specs: plan, verify, then change each chain with one commit.",
        discussion: "A saved plan is applied with the --no-prune or --allow-empty it was made with. Exit status: 0 "
            + "applied (or no changes), 1 error or refused plan (then nothing changes but the recovery of an "
            + "interrupted apply)."
    )

    @OptionGroup var options: PlanOptions
    @OptionGroup var kernel: KernelOptions

    @Flag(help: "Replace a program someone else attached to a chain's hook (otherwise apply stops).")
    var takeover = false

    @Flag(help: "Apply every chain but those whose hook another program holds (otherwise apply stops).")
    var skipBlocked = false

    func run() throws {
        var options = self.options
        let saved = try savedPlan()
        if let saved { options.paths = saved.paths }
        // A saved plan is applied with the prune choice it was made with.
        let prune = saved?.prune ?? options.pruning.prune
        let desired = try loadDesired(options.paths)
        let (pinRoot, lock) = try kernel.lockedPinRoot()
        defer { withExtendedLifetime(lock) {} }
        var executor = Executor(pinRoot: pinRoot, takeover: takeover)
        if let failpoints = try failpoints() { executor.failpoint = failpoints.hit }
        // Specs from one directory of a git work tree: its revision goes into each chain's record.
        let revision = options.paths.count == 1 ? GitRevision.of(options.paths[0]) : nil
        executor.gitRevision = revision?.description
        // A saved plan is applied against the state observed the way it was made.
        var reconciliation = Reconciliation(desired: desired, executor: executor, prune: prune,
                                            deep: saved?.deep ?? options.deep)
        if let saved, let why = saved.staleness(desired: desired, observed: reconciliation.observed) {
            throw CommandError("refusing the saved plan: \(why)")
        }
        // An apply killed half-way is sorted out first; the plan starts from what is left.
        let recovered = try reconciliation.recover()
        for line in recovered { FileHandle.standardError.write(Data("Recovered: \(line)\n".utf8)) }
        var plan = try reconciliation.verified(reconciliation.plan())
        // A blocked hook stops the whole apply (one transaction), unless it is taken over or skipped.
        let blocked = takeover ? [] : plan.chains.filter { $0.blocked != nil }
        if skipBlocked && !blocked.isEmpty {
            for change in blocked {
                FileHandle.standardError.write(Data("Skipped chain \(change.name): \(change.blocked ?? "")\n".utf8))
            }
            plan = Plan(chains: plan.chains.filter { $0.blocked == nil }, refusals: plan.refusals)
        } else {
            plan.refusals += blocked.map {
                "chain \($0.name) is blocked: \($0.blocked ?? ""); nothing is applied (--skip-blocked applies the others)"
            }
        }
        // JSON is one document, written once the outcome is known.
        if options.output == .text { try options.show(plan) }
        guard plan.refusals.isEmpty else {
            if options.output == .json { try printJSON(ApplyResult(recovered: recovered, plan: plan, applied: nil)) }
            // Nothing below this line runs for a refused plan: the kernel stays as recovery left it.
            return try PlanOptions.refuse(plan)
        }
        let report = try reconciliation.apply(plan)
        if let report, options.output == .text {
            print("\nApply complete: \(report.added) added, \(report.changed) changed, \(report.replaced) replaced, "
                  + "\(report.removed) removed" + (report.repaired > 0 ? ", \(report.repaired) repaired." : "."))
        }
        try reconciliation.finish()
        if options.output == .json { try printJSON(ApplyResult(recovered: recovered, plan: plan, applied: report)) }
    }
}

/// `tailor apply --output json`: what recovery did, the plan, and what was applied
/// (null when the plan was empty or refused).
struct ApplyResult: Encodable {
    var recovered: [String]
    var plan: Plan
    var applied: Executor.Report?

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(recovered, forKey: .recovered)
        try container.encode(plan, forKey: .plan)
        try container.encode(applied, forKey: .applied)
    }

    enum CodingKeys: String, CodingKey { case recovered, plan, applied }
}

extension ApplyCommand {
    /// Failures to inject, from `TAILOR_FAILPOINTS` (crash and rollback tests).
    func failpoints() throws -> Failpoints? {
        guard let text = ProcessInfo.processInfo.environment["TAILOR_FAILPOINTS"] else { return nil }
        do { return try Failpoints(text) } catch { throw CommandError("TAILOR_FAILPOINTS: \(error)") }
    }

    /// The plan file given instead of spec paths, if the only argument is one.
    func savedPlan() throws -> PlanFile? {
        guard options.paths.count == 1, let data = FileManager.default.contents(atPath: options.paths[0]),
              data.first == UInt8(ascii: "{"),
              let file = try? JSONDecoder().decode(PlanFile.self, from: data), file.kind == PlanFile.kind
        else { return nil }
        guard file.formatVersion == Plan.formatVersion else {
            throw CommandError("the saved plan has format \(file.formatVersion); this tailor reads \(Plan.formatVersion)")
        }
        return file
    }
}

/// `tailor status [SPEC...] [CHAIN...]`: the chains in the kernel, their cubes and
/// counters, drift, and whether they match the specs; the exit status says whether
/// anything needs attention, so a script or a monitor need not parse the output.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the chains in the kernel: hook, cubes, slots, counters, drift, and sync with the specs.",
        discussion: """
            Arguments are spec files or directories and chain names. An argument is a spec path when a file or \
            directory by that name exists or it holds a '/' or a '.' (chain names cannot); any other argument is a \
            chain name, and only the chains named are shown. A name no chain has, in the kernel or in the specs, is \
            an error.

            Exit status: 0 when every chain shown is Synced; 2 when one is Drifted, or (with spec paths) OutOfSync, \
            Missing or NotInSpecs; 1 on error. Without spec paths only drift makes it 2.
            """)

    @OptionGroup var kernel: KernelOptions

    /// Status also speaks Prometheus, for node_exporter's textfile collector on hosts without the daemon.
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json, prometheus
    }

    @Option(help: ArgumentHelp("Output format: text, json or prometheus (the cubes' counters and the chains by state, "
                               + "for node_exporter's textfile collector; docs/daemon.md)."))
    var output: Format = .text

    @Argument(help: ArgumentHelp("Spec files or directories to compare the chains with, and chain names to show.",
                                 valueName: "spec-or-chain"))
    var arguments: [String] = []

    struct CubeStatus: Encodable {
        var name: String, type: String, slot: Int, program: UInt32
        var packets: UInt64?, passed: UInt64?, dropped: UInt64?, missed: UInt64?
    }

    struct ChainStatus: Encodable {
        var name: String, hook: String, state: SyncState, specDigest: String?, gitRevision: String?
        var cubes: [CubeStatus], drift: [String]
    }

    /// The arguments told apart: spec paths, and the chain names to show.
    var selection: (paths: [String], names: [String]) {
        let isPath = { (argument: String) in
            FileManager.default.fileExists(atPath: argument) || argument.contains("/") || argument.contains(".")
        }
        return (arguments.filter(isPath), arguments.filter { !isPath($0) })
    }

    func run() throws {
        let pinRoot = try kernel.pinRoot()
        let (paths, names) = selection
        let specs = paths.isEmpty ? nil : InterfaceBinding.bind(try loadDesired(paths))
        let observedChains = Observer.observe(pinRoot: pinRoot, desired: specs ?? [])
        // With specs, each chain stands as its plan says; without, only drift tells.
        let states = specs.map { specs in
            Dictionary(Planner.plan(desired: specs, observed: observedChains, prune: .prune).chains
                .map { ($0.name, $0.syncState) }, uniquingKeysWith: { a, _ in a })
        }
        var chains = observedChains.map { observed -> ChainStatus in
            let record = observed.record
            let cubes = (record?.cubes ?? [:]).sorted { $0.value.slot < $1.value.slot }.map { name, cube in
                let counters = try? CubeCounters(
                    pinnedAt: ChainPins(observed.name, under: pinRoot).cube(name).map("tailor_counters"))
                return CubeStatus(name: name, type: cube.type, slot: cube.slot, program: cube.program,
                                  packets: counters?.packets, passed: counters?.passed, dropped: counters?.dropped,
                                  missed: counters?.missed)
            }
            let state = states?[observed.name] ?? (observed.drift.isEmpty ? .synced : .drifted)
            let hook = (record?.settings ?? observed.identity?.settings)?.hook.description ?? "?"
            return ChainStatus(name: observed.name, hook: hook, state: state,
                               specDigest: record?.specDigest, gitRevision: record?.gitRevision, cubes: cubes,
                               drift: observed.drift.map(\.description))
        }
        let present = Set(observedChains.map(\.name))
        for name in (specs?.map(\.settings.name).sorted() ?? []) where !present.contains(name) {
            chains.append(ChainStatus(name: name, hook: "-", state: .missing, specDigest: nil, gitRevision: nil,
                                      cubes: [], drift: []))
        }
        let unknown = names.filter { name in !chains.contains { $0.name == name } }
        guard unknown.isEmpty else {
            throw CommandError("no chain named \(unknown.map { "'\($0)'" }.joined(separator: ", ")) under \(pinRoot.path)"
                               + (specs == nil ? "" : " or in the specs"))
        }
        if !names.isEmpty { chains = chains.filter { names.contains($0.name) } }
        try show(chains, pinRoot: pinRoot)
        if chains.contains(where: { $0.state != .synced }) { throw ExitCode(2) }
    }

    func show(_ chains: [ChainStatus], pinRoot: PinRoot) throws {
        if output == .json { return try printJSON(chains) }
        if output == .prometheus {
            let cubes = chains.flatMap { chain in
                chain.cubes.map { LiveCube(chain: chain.name, cube: $0.name, type: $0.type) }
            }
            let states = SyncState.allCases.map { state in (state.metricLabel, chains.count { $0.state == state }) }
            return print(CubeMetrics.statusExposition(cubes, chainStates: states, pinRoot: pinRoot), terminator: "")
        }
        if chains.isEmpty { return print("No chains under \(pinRoot.path).") }
        for chain in chains {
            print("chain \(chain.name)  \(chain.state.rawValue)  \(chain.hook)"
                  + (chain.specDigest.map { "  spec \($0.prefix(12))" } ?? "")
                  + (chain.gitRevision.map { "  rev \($0.prefix(7))\($0.hasSuffix("+dirty") ? "+dirty" : "")" } ?? ""))
            for drift in chain.drift { print("  drift: \(drift)") }
            print(table(["  cube", "type", "slot", "prog", "packets", "passed", "dropped", "missed"],
                        chain.cubes.map { cube in
                            ["  " + cube.name, cube.type, "\(cube.slot)", "\(cube.program)",
                             cube.packets.map(String.init) ?? "?", cube.passed.map(String.init) ?? "?",
                             cube.dropped.map(String.init) ?? "?", cube.missed.map(String.init) ?? "?"]
                        }))
        }
    }
}

/// `tailor destroy CHAIN...|--all`: detach and remove chains tailor made.
struct DestroyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "destroy", abstract: "Detach and remove chains (only tailor's own, under the pin root).")

    @OptionGroup var kernel: KernelOptions

    @Argument(help: "Chains to remove.")
    var chains: [String] = []

    @Flag(help: "Remove every chain under the pin root.")
    var all = false

    func validate() throws {
        guard all != !chains.isEmpty else { throw ValidationError("name chains to destroy, or give --all") }
    }

    @Option(help: "Output format: text or json ({recovered, repaired, destroyed}).")
    var output: OutputFormat = .text

    func run() throws {
        let (pinRoot, lock) = try kernel.lockedPinRoot()
        defer { withExtendedLifetime(lock) {} }
        let text = output == .text
        // What an interrupted apply left is sorted out first, so every chain is whole.
        let recovered = try Executor(pinRoot: pinRoot).recover(Observer.observe(pinRoot: pinRoot))
        if text { for line in recovered { print("Recovered: \(line)") } }
        // Chains provably tailor's: a readable record, or a root whose identity names the chain.
        let names = all ? Observer.observe(pinRoot: pinRoot).filter { $0.isTailors && !$0.isLeftover }.map(\.name) : chains
        var destroyed: [String] = [], repaired: [String] = []
        // A failure half-way still reports (in JSON too) the chains already gone.
        defer {
            if !text { try? printJSON(["recovered": recovered, "repaired": repaired, "destroyed": destroyed]) }
        }
        for name in names {
            // Pins removed by hand are put back from the root first, or what is left removed: said so.
            let done = try Chain.destroy(name, pinRoot: pinRoot).map { "chain \(name): \($0)" }
            repaired += done
            destroyed.append(name)
            if text {
                for line in done { print("Repaired: \(line)") }
                print("Destroyed chain \(name).")
            }
        }
        if text && names.isEmpty { print("No chains to destroy.") }
    }
}
