import Foundation
import Synchronization

/// Unique short names for the namespaces, interfaces and pin roots a test creates,
/// so tests run in parallel (interface names have at most 15 characters).
public enum UniqueName {
    private static let counter = Atomic<Int>(0)

    /// "<prefix><pid><n>", unique within this machine while the process lives.
    public static func make(_ prefix: String) -> String {
        let n = counter.add(1, ordering: .relaxed).newValue
        let pid = ProcessInfo.processInfo.processIdentifier % 100_000
        return "\(prefix)\(pid)x\(n)"
    }
}
