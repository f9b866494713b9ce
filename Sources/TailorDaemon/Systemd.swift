import CSystemd

/// The service manager's notification protocol (`sd_notify`): a no-op when tailor
/// was not started by systemd (no NOTIFY_SOCKET).
public enum SystemdNotify {
    /// Sends `state` lines such as `READY=1` or `STATUS=...`.
    public static func send(_ state: String) {
        _ = sd_notify(0, state)
    }

    /// How often the service manager expects WATCHDOG=1 (WatchdogSec), or nil.
    public static var watchdogInterval: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds))
    }
}
