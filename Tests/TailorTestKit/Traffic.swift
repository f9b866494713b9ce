import Foundation
import TailorKernel
import TailorLab

/// Real packets across a lab's veth pair, from side a to side b, bounded in count
/// and in time. Sockets are opened inside each namespace (a socket stays in the
/// namespace it was created in), so one thread drives both ends.
public enum Traffic {
    /// Sends `count` UDP datagrams of `size` payload bytes from a to b and returns
    /// how many arrived within `timeout`.
    public static func udp(
        in lab: Lab, count: Int, size: Int = 64, port: UInt16 = 9999, timeout: Duration = .seconds(2)
    ) throws -> Int {
        try udp(from: lab.a, to: lab.b, count: count, size: size, port: port, timeout: timeout)
    }

    /// Sends `count` UDP datagrams from side `from` to side `to`'s IPv4 address
    /// (through whatever lies between) and returns how many arrived within `timeout`.
    public static func udp(
        from: Lab.Side, to: Lab.Side, count: Int, size: Int = 64, port: UInt16 = 9999, timeout: Duration = .seconds(2)
    ) throws -> Int {
        let receiver = try to.namespace.run { try Socket(udpBoundTo: to.ipv4, port: port) }
        let sender = try from.namespace.run { try Socket(udpConnectedTo: to.ipv4, port: port) }
        let payload = [UInt8](repeating: 0x5a, count: size)
        for _ in 0..<count { try sender.send(payload) }
        var received = 0
        let deadline = ContinuousClock.now + timeout
        while received < count, ContinuousClock.now < deadline {
            if try receiver.receive(waitingAtMost: deadline - ContinuousClock.now) != nil { received += 1 }
        }
        return received
    }

    /// Opens a TCP connection from a to b, sends `bytes` bytes, closes, and returns
    /// how many bytes b read before end of stream or `timeout`.
    public static func tcp(
        in lab: Lab, bytes: Int, port: UInt16 = 9998, timeout: Duration = .seconds(2)
    ) throws -> Int {
        let listener = try lab.b.namespace.run { try Socket(tcpListeningOn: lab.b.ipv4, port: port) }
        let client = try lab.a.namespace.run { try Socket(tcpConnectedTo: lab.b.ipv4, port: port, timeout: timeout) }
        try client.send([UInt8](repeating: 0x42, count: bytes))
        client.shutdownWrite()
        let server = try listener.accept(waitingAtMost: timeout)
        var received = 0
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, let chunk = try server.receive(waitingAtMost: deadline - ContinuousClock.now) {
            if chunk.isEmpty { break }
            received += chunk.count
        }
        return received
    }
}

/// A TCP connection from one side of a lab to the other, kept open while the test
/// changes what is between them.
public final class TCPConnection {
    let client: Socket
    let server: Socket

    init(client: Socket, server: Socket) {
        (self.client, self.server) = (client, server)
    }

    /// Connects from `from` to `to`'s `port`, or to `via` (an address and port a
    /// NAT forwards to `to`'s `port`); nil when the handshake does not complete
    /// within `timeout` (a firewall dropped it).
    public static func open(from: Lab.Side, to: Lab.Side, port: UInt16, via: (address: String, port: UInt16)? = nil,
                            timeout: Duration = .seconds(1)) throws -> TCPConnection? {
        let listener = try to.namespace.run { try Socket(tcpListeningOn: to.ipv4, port: port) }
        let (address, target) = via ?? (to.ipv4, port)
        guard let client = try? from.namespace.run({ try Socket(tcpConnectedTo: address, port: target, timeout: timeout) })
        else { return nil }
        return TCPConnection(client: client, server: try listener.accept(waitingAtMost: timeout))
    }

    /// Sends `bytes` from the client to the server and back; true when both
    /// arrive in full within `timeout`.
    public func roundTrip(bytes: Int = 100, timeout: Duration = .seconds(1)) throws -> Bool {
        let payload = [UInt8](repeating: 0x42, count: bytes)
        try client.send(payload)
        guard try Self.read(bytes, from: server, timeout: timeout) else { return false }
        try server.send(payload)
        return try Self.read(bytes, from: client, timeout: timeout)
    }

    static func read(_ count: Int, from socket: Socket, timeout: Duration) throws -> Bool {
        var received = 0
        let deadline = ContinuousClock.now + timeout
        while received < count, ContinuousClock.now < deadline,
              let chunk = try socket.receive(waitingAtMost: deadline - ContinuousClock.now), !chunk.isEmpty {
            received += chunk.count
        }
        return received == count
    }
}

/// A socket this value owns: just enough of BSD sockets for the traffic helpers.
final class Socket {
    let fd: Int32

    private init(type: Int32) throws {
        fd = socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Socket.error("socket") }
    }

    private init(adopting fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    convenience init(udpBoundTo address: String, port: UInt16) throws {
        try self.init(type: Int32(SOCK_DGRAM.rawValue))
        try bindRetrying(address, port)
    }

    /// Binds, waiting out EADDRINUSE for up to a second: a socket this process just
    /// closed stays bound while a child forked by another thread (tests spawn `ip`)
    /// still holds a copy of the descriptor, until that child execs.
    private func bindRetrying(_ address: String, _ port: UInt16) throws {
        for _ in 0..<1000 {
            do {
                return try withAddress(address, port) { Glibc.bind(fd, $0, $1) }
            } catch let error as KernelError where error.errno == EADDRINUSE {
                usleep(1000)
            }
        }
        try withAddress(address, port) { Glibc.bind(fd, $0, $1) }
    }

    convenience init(udpConnectedTo address: String, port: UInt16) throws {
        try self.init(type: Int32(SOCK_DGRAM.rawValue))
        try withAddress(address, port) { Glibc.connect(fd, $0, $1) }
    }

    convenience init(tcpListeningOn address: String, port: UInt16) throws {
        try self.init(type: Int32(SOCK_STREAM.rawValue))
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        try bindRetrying(address, port)
        guard listen(fd, 8) == 0 else { throw Socket.error("listen") }
    }

    convenience init(tcpConnectedTo address: String, port: UInt16, timeout: Duration) throws {
        try self.init(type: Int32(SOCK_STREAM.rawValue))
        var limit = timeval(duration: timeout)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        try withAddress(address, port) { Glibc.connect(fd, $0, $1) }
    }

    private func withAddress(_ text: String, _ port: UInt16, _ call: (UnsafePointer<sockaddr>, socklen_t) -> Int32) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, text, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw Socket.error("bind/connect \(text):\(port)") }
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            // A connected UDP socket reports an ICMP error that arrived for its 4-tuple on
            // the next send, also one meant for an earlier socket that had the same
            // ephemeral port; the datagram was not sent: send it again.
            if n < 0 && errno == ECONNREFUSED { continue }
            guard n >= 0 else { throw Socket.error("send") }
            offset += n
        }
        if bytes.isEmpty { _ = Glibc.send(fd, nil, 0, 0) }
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Waits for the socket to be readable; false on timeout.
    private func waitReadable(_ timeout: Duration) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(max(0, timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        return poll(&entry, 1, ms) > 0
    }

    /// One datagram or stream chunk (empty at end of stream), or nil on timeout.
    func receive(waitingAtMost timeout: Duration) throws -> [UInt8]? {
        guard waitReadable(timeout) else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n >= 0 else { throw Socket.error("recv") }
        return Array(buffer[0..<n])
    }

    func accept(waitingAtMost timeout: Duration) throws -> Socket {
        guard waitReadable(timeout) else { throw Socket.error("accept: no connection within \(timeout)") }
        let connection = Glibc.accept(fd, nil, nil)
        guard connection >= 0 else { throw Socket.error("accept") }
        return Socket(adopting: connection)
    }

    static func error(_ operation: String) -> Error {
        KernelError(KernelError.Code.other, operation: operation, object: "test socket", errno: errno)
    }
}

extension timeval {
    init(duration: Duration) {
        self.init(tv_sec: Int(duration.components.seconds),
                  tv_usec: Int(duration.components.attoseconds / 1_000_000_000_000))
    }
}
