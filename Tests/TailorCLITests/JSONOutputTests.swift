import Foundation
import Testing
import TailorTestKit

/// `--output json` of the commands that change the kernel: one JSON document on
/// stdout, nothing else there, whatever happened.
@Suite("JSON output", .kernel, .serialized)
struct JSONOutputTests {
    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)")
    }

    @Test("apply --output json is one document: recovered, plan and applied (null when nothing changed); destroy --output json lists what went")
    func applyAndDestroy() async throws {
        try await TransactionTests.withSpecs { specs, root in
            let created = try TransactionTests.tailor(["apply", specs.v1, "--output", "json"], root)
            #expect(created.status == 0, "\(created.stderr)")
            let first = try Self.json(created.stdout)
            let applied = try #require(first["applied"] as? [String: Int])
            let chains = try #require((first["plan"] as? [String: Any])?["chains"] as? [[String: Any]])
            #expect(applied["added"] == chains.flatMap { ($0["cubes"] as? [Any]) ?? [] }.count && applied["added"]! > 0)
            #expect((first["recovered"] as? [String])?.isEmpty == true)

            let again = try Self.json(try TransactionTests.tailor(["apply", specs.v1, "--output", "json"], root).stdout)
            #expect(again["applied"] is NSNull)

            let destroyed = try TransactionTests.tailor(["destroy", "--all", "--output", "json"], root)
            #expect(destroyed.status == 0, "\(destroyed.stderr)")
            let names = try #require(try Self.json(destroyed.stdout)["destroyed"] as? [String])
            #expect(names == chains.compactMap { $0["name"] as? String }.sorted())
        }
    }
}
