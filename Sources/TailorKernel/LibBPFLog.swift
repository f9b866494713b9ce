import CShims
import Logging

/// Routes libbpf's own messages (which it would print to stderr) into swift-log.
enum LibBPFLog {
    static let logger = Logger(label: "tailor.libbpf")

    /// Installed once, before the first libbpf call of the process.
    static let installed: Void = {
        tailor_libbpf_set_sink { level, message in
            guard let message else { return }
            let text = String(cString: message).trimmingSuffix("\n")
            // libbpf's warnings are routine in normal operation (probing features, a
            // rejected program we report ourselves), so only debug output shows them.
            LibBPFLog.logger.debug("libbpf", metadata: ["level": "\(level)", "message": "\(text)"])
        }
    }()
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
