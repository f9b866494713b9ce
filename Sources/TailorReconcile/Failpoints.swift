import Foundation
import Glibc
import TailorKernel

/// Failures injected at named steps of an apply, for crash and rollback testing of
/// a real `tailor` process: `TAILOR_FAILPOINTS="edge: commit slot=kill"` kills the
/// process just before chain edge's commit write. Each entry is `STEP=ACTION`,
/// entries are separated by `;`, and STEP matches every step whose name starts
/// with it (`Executor.failpoint` names them "<chain>: <step>"); the actions of all
/// entries that match run in order. Actions:
/// `kill` (SIGKILL, as a crash would), an errno name (`EPERM`, `ENOSPC`, `E2BIG`,
/// `ENODEV`, `ENOMEM`: the step fails with it, as the kernel would), `sleep:MS`,
/// or `trace` (the step's name on stderr: `=trace` lists every step of an apply).
public struct Failpoints: Sendable {
    public enum Action: Sendable, Equatable {
        case kill
        case fail(Int32)
        case sleep(milliseconds: Int)
        case trace
    }

    static let errnos: [String: Int32] = ["EPERM": EPERM, "ENOSPC": ENOSPC, "E2BIG": E2BIG, "ENODEV": ENODEV,
                                          "ENOMEM": ENOMEM, "EINVAL": EINVAL, "EBUSY": EBUSY]

    public let points: [(step: String, action: Action)]

    /// Parses `TAILOR_FAILPOINTS`; a malformed entry is an error, never ignored.
    public init(_ text: String) throws {
        points = try text.split(separator: ";").map { entry in
            guard let equals = entry.lastIndex(of: "=") else {
                throw FailpointError("failpoint '\(entry)' has no '=ACTION'")
            }
            let step = String(entry[..<equals]).trimmingCharacters(in: .whitespaces)
            let action = String(entry[entry.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            if action == "kill" { return (step, .kill) }
            if action == "trace" { return (step, .trace) }
            if let code = Failpoints.errnos[action] { return (step, .fail(code)) }
            if action.hasPrefix("sleep:"), let ms = Int(action.dropFirst(6)), ms >= 0 {
                return (step, .sleep(milliseconds: ms))
            }
            throw FailpointError("failpoint '\(entry)': unknown action '\(action)' (kill, trace, sleep:MS, or one of "
                + "\(Failpoints.errnos.keys.sorted().joined(separator: ", ")))")
        }
    }

    /// Runs the actions of every failpoint `step` matches, in order.
    public func hit(_ step: String) throws {
        for (prefix, action) in points where step.hasPrefix(prefix) { try run(action, at: step) }
    }

    private func run(_ action: Action, at step: String) throws {
        switch action {
        case .kill:
            Glibc.kill(getpid(), SIGKILL)
        case .fail(let code):
            throw KernelError(KernelError.code(for: code), operation: "failpoint", object: step, errno: code)
        case .sleep(let ms):
            usleep(useconds_t(ms) * 1000)
        case .trace:
            FileHandle.standardError.write(Data("failpoint: \(step)\n".utf8))
        }
    }
}

/// A `TAILOR_FAILPOINTS` value that cannot be parsed.
public struct FailpointError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
