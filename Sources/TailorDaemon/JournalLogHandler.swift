import CSystemd
import Foundation
import Glibc
import Logging

/// A swift-log handler for the systemd journal: each line is one journal entry
/// (`sd_journal_sendv`) with MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_FILE,
/// CODE_LINE and CODE_FUNC, and every metadata key as an upper-case field
/// (`chain` -> CHAIN, `plan_id` -> PLAN_ID). When no journald listens, lines go to
/// stderr: plain, with a `<priority>` prefix journald understands, when stderr
/// already goes to the journal (`$JOURNAL_STREAM`), else readable with a time and
/// the fields.
public struct JournalLogHandler: LogHandler {
    /// Where lines go when the journal does not take them.
    public enum Fallback: Sendable, Equatable {
        /// stderr is a journal stream: `<6>message KEY=value`.
        case journalStream
        /// A terminal or a file: `2026-11-22T10:00:00Z info message KEY=value`.
        case readable
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let identifier: String
    let fallback: Fallback
    /// Whether to try the journal socket at all (tests of the fallback turn it off).
    let useJournal: Bool

    public init(label: String, identifier: String = "tailor", useJournal: Bool = true,
                fallback: Fallback = JournalLogHandler.detectFallback()) {
        self.identifier = identifier
        self.useJournal = useJournal
        self.fallback = fallback
    }

    /// `.journalStream` when `$JOURNAL_STREAM` names stderr's device and inode.
    public static func detectFallback() -> Fallback {
        guard let stream = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return .readable }
        var status = stat()
        guard fstat(STDERR_FILENO, &status) == 0 else { return .readable }
        return stream == "\(status.st_dev):\(status.st_ino)" ? .journalStream : .readable
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let fields = Self.fields(metadata.merging(event.metadata ?? [:]) { _, new in new })
        if useJournal && sendToJournal(event, fields) { return }
        let line: String
        switch fallback {
        case .journalStream:
            line = "<\(Self.priority(event.level))>\(event.message)" + fields.map { " \($0.0)=\($0.1)" }.joined()
        case .readable:
            let time = ISO8601DateFormatter().string(from: Date())
            line = "\(time) \(event.level) \(event.message)" + fields.map { " \($0.0)=\($0.1)" }.joined()
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// The socket journald reads native entries from.
    static let socket = "/run/systemd/journal/socket"

    /// One journal entry; false when no journald takes it (libsystemd drops entries
    /// silently when the socket is missing, so that is checked first).
    private func sendToJournal(_ event: LogEvent, _ fields: [(String, String)]) -> Bool {
        guard access(Self.socket, W_OK) == 0 else { return false }
        let entries = ["MESSAGE=\(event.message)", "PRIORITY=\(Self.priority(event.level))",
                       "SYSLOG_IDENTIFIER=\(identifier)", "CODE_FILE=\(event.file)", "CODE_LINE=\(event.line)",
                       "CODE_FUNC=\(event.function)"] + fields.map { "\($0.0)=\($0.1)" }
        let strings = entries.map { strdup($0) }
        defer { for string in strings { free(string) } }
        let vectors = strings.map { iovec(iov_base: UnsafeMutableRawPointer($0), iov_len: $0.map { strlen($0) } ?? 0) }
        return sd_journal_sendv(vectors, Int32(vectors.count)) >= 0
    }

    /// syslog priorities, as the journal's PRIORITY field takes them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Metadata as journal fields, sorted by name: keys upper-cased, anything but
    /// A-Z, 0-9 and _ turned into _, and a leading _ or digit (reserved by the
    /// journal) prefixed with F.
    static func fields(_ metadata: Logger.Metadata) -> [(String, String)] {
        metadata.map { key, value in
            var name = String(key.uppercased().unicodeScalars.map {
                ("A"..."Z").contains($0) || ("0"..."9").contains($0) ? Character($0) : "_"
            })
            if name.first.map({ $0 == "_" || $0.isNumber }) ?? true { name = "F" + name }
            return (name, "\(value)")
        }.sorted { $0.0 < $1.0 }
    }
}
