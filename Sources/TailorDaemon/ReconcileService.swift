import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// `tailor run`: reconciles at start, then after every change under the spec
/// directory (debounced), every `interval` (drift repair), on SIGHUP, and when an
/// interface a pending chain waits for appears.
/// Reconciles never overlap: triggers that arrive during one make one more.
/// Graceful shutdown (SIGTERM) lets a reconcile in progress finish, then stops;
/// the datapath stays as it is in the kernel.
public struct ReconcileService: Service {
    public struct Configuration: Sendable {
        public var reconciler: Reconciler.Configuration
        public var interval: Duration
        public var debounce: Duration

        public init(reconciler: Reconciler.Configuration, interval: Duration, debounce: Duration) {
            (self.reconciler, self.interval, self.debounce) = (reconciler, interval, debounce)
        }
    }

    enum Trigger: String, Sendable {
        case change, interval, signal = "SIGHUP", interface
    }

    let configuration: Configuration
    let metrics: DaemonMetrics
    let logger: Logger

    /// `metrics` counts each reconcile (served by `MetricsServer` when asked for).
    public init(_ configuration: Configuration, metrics: DaemonMetrics, logger: Logger) {
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
    }

    public func run() async throws {
        let reconciler = Reconciler(configuration.reconciler, logger: logger)
        let (triggers, sink) = AsyncStream<Trigger>.makeStream(bufferingPolicy: .bufferingNewest(64))
        // When each kind of trigger last came: a reconcile that started after it answered it
        // (triggers pile up while a reconcile runs longer than the interval), and the debounce
        // waits for a quiet period after the last file event.
        let lastFired = Mutex<[Trigger: ContinuousClock.Instant]>([:])
        let fire = { @Sendable (trigger: Trigger) in
            lastFired.withLock { $0[trigger] = .now }
            sink.yield(trigger)
        }
        let lastChange = { lastFired.withLock { $0[.change] ?? .now } }
        let watcher = try SpecWatcher(configuration.reconciler.specDirectory) { fire(.change) }
        defer { watcher.stop() }
        let interfaces = InterfaceWatcher(logger: logger) { fire(.interface) }
        defer { interfaces.stop() }

        let heartbeat = Heartbeat()
        let reconcile = { (reason: String) -> Reconciler.Outcome in
            let start = ContinuousClock.now
            let outcome = heartbeat.beat { reconciler.reconcile(reason: reason) }
            metrics.record(outcome, reason: reason, elapsed: ContinuousClock.now - start)
            interfaces.wait(for: outcome.awaited)
            return outcome
        }

        await withThrowingTaskGroup(of: Void.self) { group in
            if let watchdog = SystemdNotify.watchdogInterval {
                // From the start: the first reconcile can hang like any other.
                group.addTask { try await heartbeat.ping(every: watchdog / 2, stuckAfter: watchdog, logger: logger) }
            }
            let started = ContinuousClock.now
            var outcome = reconcile("start")
            SystemdNotify.send("READY=1\nSTATUS=\(outcome.status)")
            logger.notice("tailor run is ready", metadata: ["status": "\(outcome.status)"])
            group.addTask {
                while true {
                    try await Task.sleep(for: configuration.interval)
                    fire(.interval)
                }
            }
            group.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup) { fire(.signal) }
            }
            await withGracefulShutdownHandler {
                // When the last reconcile started: triggers that came before it were answered by it.
                var handled = started
                var finished = ContinuousClock.now
                for await trigger in triggers {
                    // Once SIGTERM came, triggers still queued are left: the reconcile in progress was the last.
                    if Task.isShuttingDownGracefully { break }
                    // Triggers queued while the last reconcile ran are all answered by one more.
                    if lastFired.withLock({ $0[trigger] ?? .now }) < handled { continue }
                    // A drift check comes an interval after the last reconcile ended: when one takes
                    // longer than the interval (a loaded host), the daemon does not reconcile back to
                    // back, using a core and leaving the loop no moment to notice SIGTERM.
                    if trigger == .interval && ContinuousClock.now - finished < configuration.interval { continue }
                    if trigger == .change {
                        while true {
                            let quiet = ContinuousClock.now - lastChange()
                            if quiet >= configuration.debounce { break }
                            try? await Task.sleep(for: configuration.debounce - quiet)
                        }
                    }
                    handled = .now
                    outcome = reconcile(trigger.rawValue)
                    finished = .now
                    SystemdNotify.send("STATUS=\(outcome.status)")
                    // The reconcile ran synchronously: let the service group (signals) and the others run.
                    await Task.yield()
                }
            } onGracefulShutdown: {
                logger.notice("stopping (SIGTERM or SIGINT) after the reconcile in progress")
                sink.finish()
            }
            SystemdNotify.send("STOPPING=1")
            logger.notice("tailor run is stopping; the datapath stays as it is")
            // What is still queued for the service manager goes before the process exits, unless it stopped reading.
            SystemdNotify.flush(within: .seconds(1))
            group.cancelAll()
        }
    }
}

/// What the watchdog pings stand for: that the reconcile loop is alive, not just
/// the process. The loop marks each reconcile's start and end; the pinger sends
/// WATCHDOG=1 only while no reconcile has run longer than the watchdog interval,
/// so systemd restarts a daemon whose reconcile hangs (a kernel call that never
/// returns, a lock never released) instead of a timer keeping it "healthy".
/// A reconcile may take up to the watchdog interval and still be pinged through:
/// WatchdogSec must exceed the longest legitimate one (a large state migration).
final class Heartbeat: Sendable {
    /// When the reconcile in progress started; nil between reconciles.
    private let started = Mutex<ContinuousClock.Instant?>(nil)

    /// Runs one reconcile, marked as in progress while it runs.
    func beat<R>(_ reconcile: () -> R) -> R {
        started.withLock { $0 = .now }
        defer { started.withLock { $0 = nil } }
        return reconcile()
    }

    /// How long the reconcile in progress has run, if it has run longer than `limit`.
    func stuck(longerThan limit: Duration) -> Duration? {
        started.withLock { $0.map { ContinuousClock.now - $0 } }.flatMap { $0 > limit ? $0 : nil }
    }

    /// Sends WATCHDOG=1 every `period`, except while a reconcile has run longer
    /// than `limit`; logs once per stuck reconcile that it withholds them.
    func ping(every period: Duration, stuckAfter limit: Duration, logger: Logger) async throws {
        var withheld = false
        while true {
            if let running = stuck(longerThan: limit) {
                if !withheld {
                    logger.error("reconcile stuck: watchdog pings withheld", metadata: [
                        "running_ms": "\(Int(running.microseconds / 1000))",
                    ])
                }
                withheld = true
            } else {
                if withheld { logger.notice("reconcile finished: watchdog pings resumed") }
                withheld = false
                SystemdNotify.send("WATCHDOG=1")
            }
            try await Task.sleep(for: period)
        }
    }
}
