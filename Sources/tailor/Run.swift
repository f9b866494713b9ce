import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TailorDaemon
import TailorReconcile

/// `tailor run SPECDIR`: the reconcile daemon.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep the kernel matching a spec directory: reconcile on start, on every change, every interval.",
        discussion: "Logs go to the systemd journal (CHAIN, CUBE, ACTION, PLAN_ID, GIT_COMMIT, DURATION_US, "
            + "DRIFT_KIND, SPEC_FILE fields), or to stderr without one or with --log-to stderr. SIGHUP reconciles at once; SIGTERM stops "
            + "after the reconcile in progress and leaves the datapath as it is. With systemd (Type=notify): READY=1 "
            + "after the first reconcile, STATUS= after each, WATCHDOG=1 when WatchdogSec is set, withheld while a "
            + "reconcile has run longer than it. Specs with errors "
            + "(a missing or unreadable directory too) keep the last good state and prune nothing; a directory that "
            + "holds no chain while chains are live changes nothing unless --allow-empty. A chain whose interface "
            + "does not exist yet is pending, and applied as soon as the interface appears. With --metrics-address, "
            + "/metrics serves the cubes' counters and the reconcile loop's metrics for Prometheus (docs/daemon.md)."
    )

    @Argument(help: "The spec directory (a git work tree, or inside one, to record revisions).")
    var specDirectory: String

    @OptionGroup var kernel: KernelOptions

    @OptionGroup var pruning: PruneOptions

    @Option(help: "Seconds between reconciles that look for drift.")
    var interval = 30.0

    @Option(help: ArgumentHelp("Seconds between reconciles that also read every table entry, finding entries changed "
        + "out of band.", discussion: "The others compare what the records say was applied with the specs, without "
        + "reading the tables: a 10,000-rule firewall holds some 170,000 entries."))
    var deepInterval = 300.0

    @Option(help: "Milliseconds of quiet after a file change before reconciling.")
    var debounce = 100

    @Option(help: ArgumentHelp("Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9842, "
                               + "[::1]:9842); off without it.", valueName: "host:port"),
            transform: { text in
                do { return try ListenAddress(text) } catch { throw ValidationError("\(error)") }
            })
    var metricsAddress: ListenAddress?

    @Option(help: ArgumentHelp("Where logs go: journal (native entries with fields, stderr when no journald listens) "
                               + "or stderr (one readable line each, for a container's log collector or a terminal).",
                               valueName: "journal|stderr"))
    var logTo = LogTarget.journal

    enum LogTarget: String, ExpressibleByArgument, CaseIterable {
        case journal, stderr
    }

    func validate() throws {
        guard interval > 0, deepInterval >= 0, debounce >= 0 else {
            throw ValidationError("--interval must be > 0, --deep-interval and --debounce >= 0")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: specDirectory, isDirectory: &isDirectory), isDirectory.boolValue
        else { throw ValidationError("\(specDirectory) is not a directory") }
    }

    func run() async throws {
        let useJournal = logTo == .journal
        LoggingSystem.bootstrap { JournalLogHandler(label: $0, useJournal: useJournal) }
        let logger = Logger(label: "tailor.run")
        let directory = URL(fileURLWithPath: specDirectory).standardizedFileURL.path
        let failpoints = try ProcessInfo.processInfo.environment["TAILOR_FAILPOINTS"].map { text in
            do { return try Failpoints(text) } catch { throw ValidationError("TAILOR_FAILPOINTS: \(error)") }
        }
        let pinRoot = try kernel.pinRoot()
        let metrics = DaemonMetrics(pinRoot: pinRoot)
        // Bound before anything is applied: a port in use stops the daemon before its first reconcile.
        var server: MetricsServer?
        if let metricsAddress { server = try await MetricsServer.bind(metricsAddress, metrics: metrics, logger: logger) }
        let service = ReconcileService(
            .init(reconciler: .init(specDirectory: directory, pinRoot: pinRoot,
                                    lockTimeout: kernel.lockTimeout, prune: pruning.prune, failpoints: failpoints,
                                    deepInterval: .milliseconds(Int64(deepInterval * 1000))),
                  interval: .milliseconds(Int64(interval * 1000)), debounce: .milliseconds(debounce)),
            metrics: metrics, logger: logger)
        // Shut down in reverse order: the reconcile in progress finishes while scrapes are still answered.
        let services: [any Service] = (server.map { [$0] } ?? []) + [service]
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}
