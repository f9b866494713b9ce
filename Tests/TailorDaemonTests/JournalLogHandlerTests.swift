import Logging
import Testing
@testable import TailorDaemon

@Suite("journal log handler")
struct JournalLogHandlerTests {
    @Test("metadata keys become journal field names: upper case, A-Z 0-9 _, never a leading _ or digit")
    func fieldNames() {
        let fields = JournalLogHandler.fields([
            "chain": "edge", "plan_id": "3f9c", "drift-kind": "slot-empty", "_private": "x", "9lives": "y",
        ])
        #expect(fields.map(\.0) == ["CHAIN", "DRIFT_KIND", "F9LIVES", "F_PRIVATE", "PLAN_ID"])
        #expect(fields.first { $0.0 == "CHAIN" }?.1 == "edge")
    }

    @Test("levels map to syslog priorities")
    func priorities() {
        #expect([Logger.Level.trace, .debug, .info, .notice, .warning, .error, .critical]
            .map(JournalLogHandler.priority) == [7, 7, 6, 5, 4, 3, 2])
    }

    @Test("$JOURNAL_STREAM that does not name stderr leaves the readable format")
    func fallback() {
        // The test runner's stderr is no journal stream.
        #expect(JournalLogHandler.detectFallback() == .readable)
    }
}
