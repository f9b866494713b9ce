import Logging

/// Runs the steps that put a failed change back. Every step is tried even when an
/// earlier one failed (each restores something of its own); a step that fails is
/// logged at once and kept, so the error the change throws names it: an undo that
/// did not finish is never silent.
public final class Undo {
    /// One step of putting a change back that failed, and why.
    public struct Failure: Sendable, CustomStringConvertible {
        public var step: String
        public var error: any Error

        public var description: String { "\(step): \(error)" }
    }

    let what: String
    let logger: Logger
    /// Called with "undo: <step>" before each step; throwing fails it (failpoints).
    let failpoint: ((String) throws -> Void)?
    public private(set) var failures: [Failure] = []

    /// Undoing a change of `what` (a chain's name, for the log).
    public init(_ what: String, logger: Logger, failpoint: ((String) throws -> Void)? = nil) {
        self.what = what
        self.logger = logger
        self.failpoint = failpoint
    }

    /// Runs one step; a failure is logged and kept, and the undo goes on.
    public func attempt(_ step: String, _ body: () throws -> Void) {
        do {
            try failpoint?("undo: " + step)
            try body()
        } catch {
            logger.error("undo step failed", metadata: ["chain": "\(what)", "step": "\(step)", "error": "\(error)"])
            failures.append(Failure(step: step, error: error))
        }
    }

    /// Keeps the failures of another undo (a chain's own, inside an apply's).
    public func include(_ other: [Failure]) { failures += other }

    /// What a change that failed with `cause` throws once it was put back: `cause`
    /// itself when every undo step succeeded, else `IncompleteUndo` naming them.
    public func error(after cause: any Error) -> any Error {
        failures.isEmpty ? cause : IncompleteUndo(cause: cause, failures: failures)
    }
}

/// A change that failed, and steps of putting it back that failed too: the kernel
/// may still hold part of the change. `tailor plan` shows what is left and the next
/// apply finishes or undoes it (an interrupted commit is recovered as after a crash).
public struct IncompleteUndo: Error, CustomStringConvertible {
    /// Why the change failed.
    public var cause: any Error
    /// The undo steps that failed, in order.
    public var failures: [Undo.Failure]

    public var description: String {
        "\(cause); putting the change back did not finish: "
            + failures.map(\.description).joined(separator: "; ")
            + ". Run `tailor plan` to see what is left; the next apply finishes or undoes it"
    }
}
