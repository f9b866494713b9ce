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
    let logger: Logger

    public init(_ configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let reconciler = Reconciler(configuration.reconciler, logger: logger)
        let (triggers, sink) = AsyncStream<Trigger>.makeStream(bufferingPolicy: .bufferingNewest(64))
        // When the last file event came: the debounce waits for a quiet period after it.
        let lastChange = Mutex<ContinuousClock.Instant>(.now)
        let watcher = try SpecWatcher(configuration.reconciler.specDirectory) {
            lastChange.withLock { $0 = .now }
            sink.yield(.change)
        }
        defer { watcher.stop() }
        let interfaces = InterfaceWatcher(logger: logger) { sink.yield(.interface) }
        defer { interfaces.stop() }

        var outcome = reconciler.reconcile(reason: "start")
        interfaces.wait(for: outcome.awaited)
        SystemdNotify.send("READY=1\nSTATUS=\(outcome.status)")
        logger.notice("tailor run is ready", metadata: ["status": "\(outcome.status)"])

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while true {
                    try await Task.sleep(for: configuration.interval)
                    sink.yield(.interval)
                }
            }
            group.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup) { sink.yield(.signal) }
            }
            if let watchdog = SystemdNotify.watchdogInterval {
                group.addTask {
                    while true {
                        SystemdNotify.send("WATCHDOG=1")
                        try await Task.sleep(for: watchdog / 2)
                    }
                }
            }
            await withGracefulShutdownHandler {
                var handled = ContinuousClock.now
                for await trigger in triggers {
                    // Triggers queued while the last reconcile ran are all answered by one more.
                    if trigger == .change && lastChange.withLock({ $0 }) < handled { continue }
                    if trigger == .change {
                        while true {
                            let quiet = ContinuousClock.now - lastChange.withLock { $0 }
                            if quiet >= configuration.debounce { break }
                            try? await Task.sleep(for: configuration.debounce - quiet)
                        }
                    }
                    handled = .now
                    outcome = reconciler.reconcile(reason: trigger.rawValue)
                    interfaces.wait(for: outcome.awaited)
                    SystemdNotify.send("STATUS=\(outcome.status)")
                }
            } onGracefulShutdown: {
                sink.finish()
            }
            SystemdNotify.send("STOPPING=1")
            logger.notice("tailor run is stopping; the datapath stays as it is")
            group.cancelAll()
        }
    }
}
