import Foundation
import Testing
import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

/// A cube can end the chain by sending the packet out of another interface
/// (`tailor_redirect`, TAILOR_REDIRECT in bpf/include/tailor/cube.h): what the
/// router and the load balancer forward with.
@Suite("redirect from a cube", .kernel)
struct RedirectTests {
    /// bpf/tests/bounce.c, sending every packet out of `ifindex` (0: on to the next cube).
    static func bounce(to ifindex: Int32) throws -> CubeBlueprint {
        CubeBlueprint(type: "bounce", object: try Fixtures.testObject("bounce"),
                      rodata: ["target_ifindex": withUnsafeBytes(of: UInt32(ifindex).littleEndian, Array.init)])
    }

    /// Packets the interface of `side` received, as its statistics count them.
    static func received(_ side: Lab.Side) throws -> Int {
        let json = try run("ip", ["-n", side.namespaceName, "-s", "-j", "link", "show", "dev", side.interfaceName])
        let links = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]]
        let stats = links?.first?["stats64"] as? [String: Any]
        return try #require((stats?["rx"] as? [String: Any])?["packets"] as? Int, "no rx count in \(json)")
    }

    @Test("a redirecting cube ends the chain with each hook's redirect code and counts the packet as passed",
          arguments: [(ChainHook.Kind.tcIngress, Int32(7)), (.xdp(.generic), Int32(4))])  // TC_ACT_REDIRECT, XDP_REDIRECT
    func verdict(kind: ChainHook.Kind, redirect: Int32) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: kind)
                let target = try lab.b.interface().index.rawValue
                let chain = try Chain.create(ChainSettings(name: "rd", hook: hook),
                                             topology: .line([("out", try Self.bounce(to: target))]), pinRoot: root)
                defer { try? chain.destroy() }
                let packet = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .udp(sport: 1, dport: 53)).bytes
                #expect(try chain.rootProgram.testRun(packet, repeat: 3).returnValue == redirect)
                let counters = try chain.counters(of: "out")
                #expect(counters.packets == 3 && counters.passed == 3 && counters.dropped == 0)

                // Told no interface, the cube hands packets on: the chain's end passes them.
                _ = try chain.apply(.line([("out", try Self.bounce(to: 0))]))
                #expect(try chain.rootProgram.testRun(packet).returnValue == (hook.isXDP ? 2 : 0))  // XDP_PASS, TC_ACT_OK
            }
        }
    }

    @Test("on TC ingress, packets redirected out of the interface they came in by go back to the sender, not up b's stack")
    func bounceBack() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                let chain = try Chain.create(
                    ChainSettings(name: "rd", hook: hook),
                    topology: .line([("out", try Self.bounce(to: try lab.b.interface().index.rawValue))]), pinRoot: root)
                defer { try? chain.destroy() }
                let before = try Self.received(lab.a)
                #expect(try Traffic.udp(in: lab, count: 20, timeout: .milliseconds(300)) == 0)
                #expect(try Self.received(lab.a) - before >= 20, "a got its datagrams back")
                #expect(try chain.counters(of: "out").passed >= 20)

                _ = try chain.apply(.line([("out", try Self.bounce(to: 0))]))
                #expect(try Traffic.udp(in: lab, count: 20) == 20)
            }
        }
    }
}
