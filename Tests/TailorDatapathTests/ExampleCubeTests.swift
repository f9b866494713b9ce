import Testing
import TailorCubes
import TailorDatapath
import TailorLab
import TailorTestKit

/// docs/cube-abi.md's example cube behaves as the page says.
@Suite("the cube ABI example", .kernel)
struct ExampleCubeTests {
    static func portcount(blocking port: UInt16) throws -> CubeBlueprint {
        CubeBlueprint(type: "portcount", object: try Fixtures.testObject("portcount"),
                      rodata: ["blocked_port": withUnsafeBytes(of: port.littleEndian, Array.init)])
    }

    @Test("portcount counts per port, drops the blocked one, and keeps its counts when replaced")
    func portcount() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                let chain = try Chain.create(
                    ChainSettings(name: "ex", hook: hook),
                    topology: .line([("count", try Self.portcount(blocking: 23)), ("tag", try Tag.blueprint(id: 1))]),
                    pinRoot: root)
                defer { try? chain.destroy() }
                let telnet = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .tcp(sport: 1, dport: 23, flags: .syn))
                let web = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .tcp(sport: 1, dport: 80, flags: .syn))
                #expect(try chain.rootProgram.testRun(telnet.bytes, repeat: 3).returnValue == 2)  // TC_ACT_SHOT
                #expect(try chain.rootProgram.testRun(web.bytes, repeat: 5).returnValue == 0)     // TC_ACT_OK
                #expect(try perPort(chain) == [23: 3, 80: 5])
                #expect(try chain.counters(of: "tag").packets == 5)

                // A new blocked port replaces the instance in place; its state stays.
                let report = try chain.apply(.line([("count", try Self.portcount(blocking: 0)),
                                                    ("tag", try Tag.blueprint(id: 1))]))
                #expect(report.loaded == ["count"] && report.commitSlot == 0)
                #expect(try chain.rootProgram.testRun(telnet.bytes).returnValue == 0)
                #expect(try perPort(chain) == [23: 4, 80: 5])
                #expect(try chain.counters(of: "count").packets == 9)
            }
        }
    }

    func perPort(_ chain: Chain) throws -> [UInt16: UInt64] {
        let map = try #require(chain.map("per_port", of: "count"))
        var counts: [UInt16: UInt64] = [:]
        for (key, value) in try map.entries() {
            let port = key.withUnsafeBytes { $0.loadUnaligned(as: UInt16.self) }
            counts[port] = map.perCPUValues(value).reduce(0) { $0 + $1.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
        }
        return counts
    }
}
