import CSystemd
import Foundation
import Synchronization

/// The service manager's notification protocol (`sd_notify`): a no-op when tailor
/// was not started by systemd (no NOTIFY_SOCKET).
///
/// Notifications go out from a thread of their own, in order. `sd_notify` blocks
/// while the receiver's queue is full (`net.unix.max_dgram_qlen`, 10 by default),
/// and the reconcile loop must not wait on it: a daemon whose receiver stopped
/// reading once stopped reconciling and ignored SIGTERM. A `STATUS=` not sent yet
/// is replaced by a newer one, and a message already waiting (`WATCHDOG=1`) is not
/// queued twice; nothing else is dropped.
public enum SystemdNotify {
    /// Sends `state` lines such as `READY=1` or `STATUS=...`; returns at once.
    public static func send(_ state: String) {
        notifier?.enqueue(state)
    }

    /// Waits until everything sent has gone, or `timeout` passed: before the process exits.
    public static func flush(within timeout: Duration) {
        notifier?.flush(within: timeout)
    }

    /// How often the service manager expects WATCHDOG=1 (WatchdogSec), or nil.
    public static var watchdogInterval: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds))
    }

    /// Started on the first notification, and only under a service manager.
    private static let notifier = getenv("NOTIFY_SOCKET") == nil ? nil : Notifier()
}

/// The queue of notifications and the thread that sends them.
private final class Notifier: Sendable {
    private struct Queue {
        var pending: [String] = []
        /// Whether the thread is sending one now.
        var sending = false
    }

    private let queue = Mutex(Queue())
    /// Signalled once per message enqueued.
    private let available = DispatchSemaphore(value: 0)

    init() {
        let thread = Thread { [self] in run() }
        thread.name = "tailor-sd-notify"
        thread.start()
    }

    func enqueue(_ state: String) {
        let isStatus = { (message: String) in message.hasPrefix("STATUS=") && !message.contains("\n") }
        let added = queue.withLock { queue -> Bool in
            // The same message waiting (WATCHDOG=1), or an older status: the new one takes its place.
            if let index = queue.pending.firstIndex(where: { $0 == state || (isStatus($0) && isStatus(state)) }) {
                queue.pending[index] = state
                return false
            }
            queue.pending.append(state)
            return true
        }
        if added { available.signal() }
    }

    func flush(within timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        while queue.withLock({ !$0.pending.isEmpty || $0.sending }), ContinuousClock.now < deadline {
            usleep(1_000)
        }
    }

    private func run() {
        while true {
            available.wait()
            guard let state = queue.withLock({ queue -> String? in
                guard !queue.pending.isEmpty else { return nil }
                queue.sending = true
                return queue.pending.removeFirst()
            }) else { continue }
            _ = sd_notify(0, state)
            queue.withLock { $0.sending = false }
        }
    }
}
