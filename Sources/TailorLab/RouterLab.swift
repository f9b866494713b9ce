import CShims
import Foundation
import TailorKernel

/// Three network namespaces in a line, the middle one a router: a client, a
/// router and a server.
///
///     [ns …client] c 10.98.1.2 <--veth--> rc 10.98.1.1 [ns …router] rs 10.98.2.1 <--veth--> s 10.98.2.2 [ns …server]
///
/// IPv6 too (fd00:98:1::/64, fd00:98:2::/64). Two setups:
/// - Linux forwards (`linuxForwards`): where a firewall (iptables' FORWARD chain, or
///   a tailor chain on the router's client side) sits between client and server.
///   The router forwards to any destination through the server (default routes both
///   ways), reverse-path filtering off so any source address passes, neighbours
///   static; the client sends raw frames (`PacketSocket`) and the server sees them.
/// - Linux does not forward: the gateway lab (`tailor lab up --topology gateway`,
///   specs/gateway/). Packets cross the router only if tailor's cubes forward them.
///   The client's default route is the router; the server has no route beyond its
///   own network, so replies reach the client only when the router masquerades it.
///   No neighbour entry is made by hand: ARP and ND resolve every next hop.
public struct RouterLab: Sendable {
    public let client: VethLab.Side
    /// The router's interface on the client's network: where a firewall attaches.
    public let routerClientSide: VethLab.Side
    /// The router's interface on the server's network.
    public let routerServerSide: VethLab.Side
    public let server: VethLab.Side

    /// The lab with these names, whether or not it exists (to remove one).
    public static func named(namespacePrefix: String, interfacePrefix: String) -> RouterLab {
        let side = { (ns: String, name: String, net: Int, host: Int) in
            VethLab.Side(namespace: .named(namespacePrefix + ns), interfaceName: interfacePrefix + name,
                         ipv4: "10.98.\(net).\(host)", ipv6: "fd00:98:\(net)::\(host)", mac: "02:00:00:98:0\(net):0\(host)")
        }
        return RouterLab(client: side("client", "c", 1, 2), routerClientSide: side("router", "rc", 1, 1),
                         routerServerSide: side("router", "rs", 2, 1), server: side("server", "s", 2, 2))
    }

    /// Creates the namespaces `<namespacePrefix>client`/`router`/`server` and their
    /// veth pairs, Linux forwarding in the router's or not; removes what it made if a
    /// step fails.
    public static func create(namespacePrefix: String, interfacePrefix: String, linuxForwards: Bool) throws -> RouterLab {
        let lab = named(namespacePrefix: namespacePrefix, interfacePrefix: interfacePrefix)
        do {
            for side in lab.namespaces { try run("ip", ["netns", "add", side.namespaceName]) }
            let settings = linuxForwards
                ? ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv4.conf.all.rp_filter=0",
                   "net.ipv4.conf.default.rp_filter=0"]
                : ["net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"]
            for key in settings { try run("ip", ["netns", "exec", lab.routerClientSide.namespaceName, "sysctl", "-qw", key]) }
            try VethLab.connect(lab.client, lab.routerClientSide, ipv6: true, neighbours: linuxForwards)
            try VethLab.connect(lab.routerServerSide, lab.server, ipv6: true, neighbours: linuxForwards)
            for (side, via) in [(lab.client, lab.routerClientSide)] + (linuxForwards ? [(lab.server, lab.routerServerSide)] : []) {
                try run("ip", ["-n", side.namespaceName, "route", "add", "default", "via", via.ipv4])
                try run("ip", ["-n", side.namespaceName, "-6", "route", "add", "default", "via", via.ipv6])
            }
        } catch {
            lab.destroy()
            throw error
        }
        return lab
    }

    /// Runs `body` with a temporary directory holding the spec files of `directory`
    /// (specs/gateway/'s, written for `tailor lab up --topology gateway`) with that
    /// lab's names (tailor-gw-*, tgw-*) swapped for this lab's; removes it after.
    public func withAdaptedSpecs<R>(from directory: String, _ body: (String) throws -> R) throws -> R {
        let manager = FileManager.default
        let copy = manager.temporaryDirectory.appendingPathComponent("tailor-specs-\(UUID())").path
        try manager.createDirectory(atPath: copy, withIntermediateDirectories: true)
        defer { try? manager.removeItem(atPath: copy) }
        for file in try manager.contentsOfDirectory(atPath: directory) where file.hasSuffix(".yaml") {
            let text = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
                .replacingOccurrences(of: "tailor-gw-", with: String(client.namespaceName.dropLast("client".count)))
                .replacingOccurrences(of: "tgw-", with: String(client.interfaceName.dropLast()))
            try text.write(toFile: copy + "/" + file, atomically: true, encoding: .utf8)
        }
        return try body(copy)
    }

    /// One side in each namespace: client, router, server.
    public var namespaces: [VethLab.Side] { [client, routerClientSide, server] }

    /// Packets the server's interface has received so far.
    public func serverPackets() throws -> UInt64 {
        let json = try run("ip", ["-n", server.namespaceName, "-s", "-j", "link", "show", server.interfaceName])
        guard let links = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]],
              let stats = links.first?["stats64"] as? [String: Any], let rx = stats["rx"] as? [String: Any],
              let packets = rx["packets"] as? NSNumber
        else { throw CommandFailed(command: "ip -s -j link show \(server.interfaceName)", status: 0, stderr: json) }
        return packets.uint64Value
    }

    /// Deletes the three namespaces and with them the veth pairs and anything attached.
    public func destroy() {
        for side in namespaces { _ = try? run("ip", ["netns", "delete", side.namespaceName]) }
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
            // Room for a few hundred frames that arrive before the test reads any
            // (the default, 208 KiB, holds about two hundred small ones).
            var size: Int32 = 4 << 20
            guard setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                close(fd)
                throw Self.error("setsockopt(SO_RCVBUFFORCE)", side)
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
