import CShims
import Foundation
import TailorKernel

/// Three network namespaces in a line, the middle one a router: where a firewall
/// (iptables' FORWARD chain, or a tailor chain on the router's client-side
/// interface) sits between a client and a sink, and every packet the client sends
/// reaches the sink unless the firewall drops it.
///
///     [ns c] c 10.98.1.1 <--veth--> rc 10.98.1.2 [ns r] rs 10.98.2.1 <--veth--> s 10.98.2.2 [ns s]
///
/// The router forwards IPv4 and IPv6 to any destination through the sink (default
/// routes), with reverse-path filtering off so any source address passes; the
/// client sends raw frames (`PacketSocket`) and the sink sees them on its interface.
public struct RouterLab: Sendable {
    public let client: VethLab.Side
    /// The router's end facing the client: where a tailor firewall attaches.
    public let routerIn: VethLab.Side
    public let routerOut: VethLab.Side
    public let sink: VethLab.Side

    public static func named(namespacePrefix: String, interfacePrefix: String) -> RouterLab {
        let side = { (ns: String, name: String, net: Int, host: Int) in
            VethLab.Side(namespace: .named(namespacePrefix + ns), interfaceName: interfacePrefix + name,
                         ipv4: "10.98.\(net).\(host)", ipv6: "fd00:98:\(net)::\(host)",
                         mac: "02:00:00:98:0\(net):0\(host)")
        }
        return RouterLab(client: side("c", "c", 1, 1), routerIn: side("r", "rc", 1, 2),
                         routerOut: side("r", "rs", 2, 1), sink: side("s", "s", 2, 2))
    }

    /// Creates the namespaces `<namespacePrefix>c`/`r`/`s` and their veth pairs;
    /// removes what it made if a step fails.
    public static func create(namespacePrefix: String, interfacePrefix: String) throws -> RouterLab {
        let lab = named(namespacePrefix: namespacePrefix, interfacePrefix: interfacePrefix)
        do {
            for side in [lab.client, lab.routerIn, lab.sink] { try run("ip", ["netns", "add", side.namespaceName]) }
            let router = lab.routerIn.namespaceName
            for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv4.conf.all.rp_filter=0",
                        "net.ipv4.conf.default.rp_filter=0"] {
                try run("ip", ["netns", "exec", router, "sysctl", "-qw", key])
            }
            try VethLab.connect(lab.client, lab.routerIn, ipv6: true)
            try VethLab.connect(lab.routerOut, lab.sink, ipv6: true)
            for (side, via) in [(lab.client, lab.routerIn), (lab.routerOut, lab.sink)] {
                try run("ip", ["-n", side.namespaceName, "route", "add", "default", "via", via.ipv4])
                try run("ip", ["-n", side.namespaceName, "-6", "route", "add", "default", "via", via.ipv6])
            }
        } catch {
            lab.destroy()
            throw error
        }
        return lab
    }

    /// Packets the sink's interface has received so far.
    public func sinkPackets() throws -> UInt64 {
        let json = try run("ip", ["-n", sink.namespaceName, "-s", "-j", "link", "show", sink.interfaceName])
        guard let links = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]],
              let stats = links.first?["stats64"] as? [String: Any], let rx = stats["rx"] as? [String: Any],
              let packets = rx["packets"] as? NSNumber
        else { throw CommandFailed(command: "ip -s -j link show \(sink.interfaceName)", status: 0, stderr: json) }
        return packets.uint64Value
    }

    /// Deletes the three namespaces and with them the veth pairs and anything attached.
    public func destroy() {
        for side in [client, routerIn, sink] { _ = try? run("ip", ["netns", "delete", side.namespaceName]) }
    }
}

/// A raw packet socket (AF_PACKET) on one interface: sends whole Ethernet frames as
/// they are, and receives every frame the interface gets.
public final class PacketSocket {
    let fd: Int32

    /// Opens the socket inside `side`'s namespace, bound to its interface.
    public init(on side: VethLab.Side) throws {
        let protocolAll = UInt16(ETH_P_ALL).bigEndian
        fd = try side.namespace.run { () throws -> Int32 in
            let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(protocolAll))
            guard fd >= 0 else { throw Self.error("socket(AF_PACKET)", side) }
            var address = sockaddr_ll()
            address.sll_family = UInt16(AF_PACKET)
            address.sll_protocol = protocolAll
            address.sll_ifindex = Int32(if_nametoindex(side.interfaceName))
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                }
            }
            guard bound == 0 else {
                close(fd)
                throw Self.error("bind(AF_PACKET)", side)
            }
            return fd
        }
    }

    deinit { close(fd) }

    public func send(_ frame: [UInt8]) throws {
        let sent = frame.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == frame.count else { throw Self.error("send", nil) }
    }

    /// The next frame, or nil when none comes within `timeout`.
    public func receive(waitingAtMost timeout: Duration) throws -> [UInt8]? {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&entry, 1, ms) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 2048)
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n >= 0 else { throw Self.error("recv", nil) }
        return Array(buffer[0..<n])
    }

    /// Sends `frame` over and over for `duration`; returns how many were sent.
    public func flood(_ frame: [UInt8], for duration: Duration) throws -> Int {
        let deadline = ContinuousClock.now + duration
        var sent = 0
        while ContinuousClock.now < deadline {
            for _ in 0..<256 {
                let n = frame.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
                if n == frame.count { sent += 1 } else if errno != ENOBUFS && errno != EAGAIN { throw Self.error("send", nil) }
            }
        }
        return sent
    }

    /// Every frame that arrives until none has for `quiet`.
    public func drain(quiet: Duration) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        while let frame = try receive(waitingAtMost: quiet) { frames.append(frame) }
        return frames
    }

    static func error(_ operation: String, _ side: VethLab.Side?) -> Error {
        KernelError(.other, operation: operation, object: side.map { "packet socket on \($0.interfaceName)" } ?? "packet socket",
                    errno: errno)
    }
}
