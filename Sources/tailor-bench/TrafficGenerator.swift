import ArgumentParser
import Foundation
import Glibc
import TailorKernel
import TailorLab

/// The kernel as a packet generator (bpf/bench/trafficgen.c run in live-frames
/// mode): frames sent out of a lab side's veth cost tens of nanoseconds each rather
/// than a socket's system call each, so what a benchmark measures is what the
/// packets meet after the veth, not the sender.
final class TrafficGenerator {
    let program: Program
    let side: VethLab.Side
    let index: InterfaceIndex
    let frame: [UInt8]

    /// A generator of `frame` (at least 64 bytes) out of `side`'s interface. A veth
    /// passes XDP frames to its peer only when the peer runs NAPI: `peer` gets GRO
    /// turned on for that.
    init(_ frame: [UInt8], on side: VethLab.Side, peer: VethLab.Side) throws {
        guard let bytes = benchObjects.bytes(named: "trafficgen") else {
            throw ValidationError("this tailor-bench binary was built without the trafficgen benchmark object")
        }
        guard frame.count >= 64 else { throw ValidationError("the generator's frame must have at least 64 bytes") }
        try TailorLab.run("ip", ["netns", "exec", peer.namespaceName, "ethtool", "-K", peer.interfaceName, "gro", "on"])
        index = try side.interface().index
        var object = try BPFObject(bytes: bytes, name: "trafficgen")
        try object.loadOnly(["trafficgen"])
        try object.setRodata("target_ifindex", to: UInt32(bitPattern: index.rawValue))
        try object.setRodata("headers", to: Array(frame.prefix(64)))
        try object.load()
        program = try object.program(named: "trafficgen")
        (self.side, self.frame) = (side, frame)
    }

    /// Sends the frame over and over for about `duration`; returns the seconds it took.
    func flood(for duration: Duration) throws -> Double {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < duration {
            try side.namespace.run { try program.sendLive(frame, count: 50_000, ingress: index) }
        }
        return (ContinuousClock.now - start).microseconds / 1e6
    }
}

/// The receiving end of a benchmark: an XDP program on `side`'s veth that drops
/// every frame (bpf/bench/trafficgen.c, `sink`), so the receiver's stack adds
/// nothing to what is measured; the interface still counts what it received.
final class TrafficSink {
    let program: Program
    let interface: NetworkInterface

    init(on side: VethLab.Side) throws {
        guard let bytes = benchObjects.bytes(named: "trafficgen") else {
            throw ValidationError("this tailor-bench binary was built without the trafficgen benchmark object")
        }
        var object = try BPFObject(bytes: bytes, name: "trafficgen")
        try object.loadOnly(["sink"])
        try object.load()
        program = try object.program(named: "sink")
        interface = try side.interface()
        try AttachPoint.xdp(.native).attach(program, to: interface, replacing: nil)
    }

    deinit { try? AttachPoint.xdp(.native).detach(program, from: interface) }
}
