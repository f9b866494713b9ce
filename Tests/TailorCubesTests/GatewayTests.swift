import Foundation
import Testing
import TailorDatapath
import TailorKernel
import TailorLab
import TailorReconcile
import TailorSpec
import TailorTestKit

/// specs/gateway/ as it is in the repository, on a gateway lab of its own (the
/// specs' tailor-gw-* and tgw-* names swapped for the lab's): the router's Linux
/// does not forward and the server has no route back, so what gets through, the
/// cubes did.
@Suite("the gateway example", .kernel, .serialized)
struct GatewayTests {
    static let specs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("specs/gateway")

    /// Applies specs/gateway/ to `lab` under `root`.
    static func apply(_ lab: RouterLab, _ root: PinRoot) throws {
        let (desired, diagnostics) = try lab.withAdaptedSpecs(from: specs.path) { DesiredChain.load([$0]) }
        try #require(!diagnostics.hasErrors && desired.count == 3, "\(diagnostics.all)")
        let reconciliation = Reconciliation(desired: desired, executor: Executor(pinRoot: root), prune: .prune)
        _ = try reconciliation.apply(try reconciliation.verified(reconciliation.plan()))
    }

    /// The echo replies to `count` pings from the client to the server (as raw
    /// frames: the client's packet socket sees the replies arrive), waiting up to
    /// `within` for all of them (ARP may need a retry the first time).
    static func pings(_ lab: RouterLab, count: UInt16, within: Duration = .milliseconds(500)) throws -> Int {
        let socket = try PacketSocket(on: lab.client)
        _ = try socket.drain(quiet: .milliseconds(1))
        for sequence in 0..<count {
            var ping = PacketBuilder(from: lab.client.ipv4, to: lab.server.ipv4, .icmpEcho(id: 0x7a11, sequence: sequence))
            (ping.sourceMAC, ping.destinationMAC) = (lab.client.macBytes, lab.routerClientSide.macBytes)
            try socket.send(ping.bytes)
        }
        let server = PacketBuilder.Address(lab.server.ipv4).bytes, client = PacketBuilder.Address(lab.client.ipv4).bytes
        // IPv4, ICMP echo reply, from the server to the client, with the id sent.
        let isReply = { (frame: [UInt8]) in
            frame.count >= 42 && frame[12...13] == [8, 0] && frame[23] == 1 && Array(frame[26..<30]) == server
                && Array(frame[30..<34]) == client && frame[34] == 0 && frame[38...39] == [0x7a, 0x11]
        }
        var replies = 0
        let deadline = ContinuousClock.now + within
        while replies < count, ContinuousClock.now < deadline,
              let frame = try socket.receive(waitingAtMost: deadline - ContinuousClock.now) {
            if isReply(frame) { replies += 1 }
        }
        return replies
    }

    @Test("the client's UDP, TCP and pings reach the server from 10.98.2.1 and are answered; 10.98.2.1:8080 reaches the client's port 80; without the chains none of it does")
    func gateway() async throws {
        try await RouterLab.with(linuxForwards: false) { lab in
            try await TestPinRoot.with { root in
                let forwarded = (address: lab.routerServerSide.ipv4, port: UInt16(8080))
                // Linux alone: nothing crosses the router.
                #expect(try Traffic.udp(from: lab.client, to: lab.server, count: 3, timeout: .milliseconds(300)) == 0)
                #expect(try TCPConnection.open(from: lab.client, to: lab.server, port: 7001) == nil)
                #expect(try TCPConnection.open(from: lab.server, to: lab.client, port: 80, via: forwarded) == nil)
                #expect(try Self.pings(lab, count: 3) == 0)

                try Self.apply(lab, root)
                let wire = try PacketSocket(on: lab.server)
                #expect(try Traffic.udp(from: lab.client, to: lab.server, count: 5) == 5)
                let udp = try wire.drain(quiet: .milliseconds(200)).filter { $0.count > 34 && $0[12...13] == [8, 0] && $0[23] == 17 }
                #expect(!udp.isEmpty && udp.allSatisfy { frame in
                    let sport = UInt16(frame[34]) << 8 | UInt16(frame[35])
                    return IPAddress.format(Array(frame[26..<30])) == lab.routerServerSide.ipv4 && (20000...29999).contains(sport)
                }, "the server saw other sources")
                #expect(try TCPConnection.open(from: lab.client, to: lab.server, port: 7001)?.roundTrip(bytes: 3000) == true)
                #expect(try Self.pings(lab, count: 3, within: .seconds(3)) == 3)
                #expect(try TCPConnection.open(from: lab.server, to: lab.client, port: 80, via: forwarded)?.roundTrip() == true)

                for chain in ["gw-client-in", "gw-server-in", "gw-server-out"] { try Chain.open(chain, pinRoot: root).destroy() }
                #expect(try TCPConnection.open(from: lab.client, to: lab.server, port: 7002) == nil)
                #expect(try TCPConnection.open(from: lab.server, to: lab.client, port: 80, via: forwarded) == nil)
                #expect(try Self.pings(lab, count: 3) == 0)
            }
        }
    }
}
