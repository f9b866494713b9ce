import Foundation
import Testing
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorSpec
import TailorTestKit

@Suite("ratelimit cube", .kernel, .serialized)
struct RateLimitTests {
    static func prefix(_ text: String) -> IPPrefix { IPPrefix(text)! }

    static func udp(from source: String) -> [UInt8] {
        PacketBuilder(from: source, to: source.contains(":") ? "fd00::2" : "10.99.0.2", .udp(sport: 1000, dport: 53)).bytes
    }

    /// Passes and drops of `runs` test runs of `packet`, from the cube's own counters.
    static func verdicts(_ chain: Chain, _ packet: [UInt8], runs: Int) throws -> (passed: Int, dropped: Int) {
        let before = try chain.counters(of: "rl")
        for _ in 0..<runs { _ = try chain.rootProgram.testRun(packet) }
        let after = try chain.counters(of: "rl")
        return (Int(after.packets - before.packets - (after.dropped - before.dropped)),
                Int(after.dropped - before.dropped))
    }

    static func withChain(_ blueprint: CubeBlueprint, _ body: (Lab, Chain) async throws -> Void) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .xdp(.native))
                let chain = try Chain.create(ChainSettings(name: "rl", hook: hook),
                                             topology: .line([("rl", blueprint), ("count", try Counter.blueprint())]),
                                             pinRoot: root)
                defer { try? chain.destroy() }
                try await body(lab, chain)
            }
        }
    }

    @Test("a burst passes, the rest drops, and tokens come back at the rate")
    func bucket() async throws {
        try await Self.withChain(try RateLimit.blueprint(rate: 20, burst: 10)) { _, chain in
            let packet = Self.udp(from: "192.0.2.7")
            #expect(try Self.verdicts(chain, packet, runs: 25) == (10, 15))
            let start = ContinuousClock.now
            try await Task.sleep(for: .milliseconds(300))
            let result = try Self.verdicts(chain, packet, runs: 20)
            // 20 packets/s for the time that passed, capped by the burst.
            let seconds = Double((ContinuousClock.now - start).components.attoseconds) / 1e18
                + Double((ContinuousClock.now - start).components.seconds)
            let earned = min(10, Int(seconds * 20))
            #expect(result.passed >= min(10, Int(0.3 * 20)) && result.passed <= earned, "\(result) after \(seconds) s")
            #expect(result.passed + result.dropped == 20)
            let drops = try #require(chain.map("drops", of: "rl"))
            let overLimit = try drops.lookup([0, 0, 0, 0]).map { drops.perCPUValues($0) } ?? []
            #expect(overLimit.reduce(0) { $0 + $1.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
                == UInt64(15 + result.dropped))
        }
    }

    @Test("sources in one prefix share a bucket; other prefixes and families have their own")
    func prefixes() async throws {
        try await Self.withChain(try RateLimit.blueprint(rate: 1, burst: 3, ipv4Prefix: 24, ipv6Prefix: 64)) { _, chain in
            let runs = try [("192.0.2.7", 2), ("192.0.2.200", 2), ("192.0.3.1", 3), ("fd00:1::1", 2), ("fd00:1::ffff", 2)]
                .map { try Self.verdicts(chain, Self.udp(from: $0.0), runs: $0.1) }
            // 192.0.2.7 and .200 share a /24 bucket of 3; fd00:1::1 and ::ffff share a /64 one.
            #expect(runs.map(\.passed) == [2, 1, 3, 2, 1])
            #expect(runs.map(\.dropped) == [0, 1, 0, 0, 1])
            #expect(try chain.map("buckets", of: "rl")?.lookupBatch().count == 3)
        }
    }

    @Test("listed prefixes drop; the list changes in place, and a new rate keeps the buckets")
    func dropList() async throws {
        let listed = [Self.prefix("198.51.100.0/24"), Self.prefix("fd00:bad::/32")]
        try await Self.withChain(try RateLimit.blueprint(rate: 1000, burst: 1000, drop: listed)) { _, chain in
            #expect(try Self.verdicts(chain, Self.udp(from: "198.51.100.9"), runs: 3) == (0, 3))
            #expect(try Self.verdicts(chain, Self.udp(from: "fd00:bad::1"), runs: 3) == (0, 3))
            #expect(try Self.verdicts(chain, Self.udp(from: "198.51.101.9"), runs: 3) == (3, 0))
            let program = try #require(chain.record.cubes["rl"]?.program)
            let buckets = try #require(chain.map("buckets", of: "rl")).info.id

            // The list is an entry-safe table: the same instance, entries changed.
            try chain.apply(.line([("rl", try RateLimit.blueprint(rate: 1000, burst: 1000, drop: [listed[1]])),
                                   ("count", try Counter.blueprint())]))
            #expect(chain.record.cubes["rl"]?.program == program)
            #expect(try Self.verdicts(chain, Self.udp(from: "198.51.100.9"), runs: 3) == (3, 0))

            // Rate and burst are specialised: a new instance, the buckets carried over.
            try chain.apply(.line([("rl", try RateLimit.blueprint(rate: 1, burst: 5, drop: [listed[1]])),
                                   ("count", try Counter.blueprint())]))
            #expect(chain.map("buckets", of: "rl")?.info.id == buckets)
            // Listed sources never got a bucket: 198.51.101.9, then 198.51.100.9 once unlisted.
            #expect(try chain.map("buckets", of: "rl")?.lookupBatch().count == 2)
        }
    }

    @Test("a real burst over the veth pair: the burst arrives, the rest is dropped and counted")
    func realBurst() async throws {
        try await Self.withChain(try RateLimit.blueprint(rate: 1, burst: 20)) { lab, chain in
            let received = try Traffic.udp(in: lab, count: 60, timeout: .milliseconds(500))
            // One more token may have come back while the packets were sent.
            #expect((20...21).contains(received), "\(received) arrived")
            let counters = try chain.counters(of: "rl")
            #expect(counters.dropped == UInt64(60 - received))
            #expect(try chain.counters(of: "count").packets == UInt64(received))
        }
    }

    @Test("bad configs are refused with the reason")
    func refused() {
        #expect(throws: CubeConfigError.self) { try RateLimit.blueprint(rate: 0, burst: 1) }
        #expect(throws: CubeConfigError.self) { try RateLimit.blueprint(rate: 1, burst: 0) }
        #expect(throws: CubeConfigError.self) { try RateLimit.blueprint(rate: 1, burst: 1, ipv4Prefix: 33) }
    }
}
