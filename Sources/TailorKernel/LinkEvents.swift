import CShims
import Glibc

/// The rtnetlink link notifications of one network namespace (RTNLGRP_LINK), so
/// that a chain waiting for its interface is applied the moment the interface is
/// created, renamed or moved into the namespace, not at the next interval.
///
/// A netlink socket reports on the namespace it was created in, wherever the
/// thread reading it is later: it is opened inside the namespace (`NetworkNamespace.run`)
/// and stays bound to it. The descriptor is closed with the object.
public final class LinkEvents: Sendable {
    /// The socket, non-blocking: poll(2) it for POLLIN, then `receive()`.
    public let descriptor: Int32
    /// The namespace reported on; nil for the caller's own.
    public let namespace: NetworkNamespace?
    /// Device and inode of the namespace's file when the socket was opened.
    private let identity: (dev_t, ino_t)?

    /// Opens a NETLINK_ROUTE socket in `namespace` bound to the RTNLGRP_LINK group
    /// (socket(2), bind(2)).
    public init(in namespace: NetworkNamespace?) throws {
        let place = namespace?.description ?? "this network namespace"
        func open() throws(KernelError) -> Int32 {
            let fd = try check(socket(AF_NETLINK, Int32(SOCK_RAW.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue),
                                      NETLINK_ROUTE), "open rtnetlink socket in", place)
            var address = sockaddr_nl()
            address.nl_family = sa_family_t(AF_NETLINK)
            address.nl_groups = 1 << (RTNLGRP_LINK.rawValue - 1)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                }
            }
            do throws(KernelError) {
                try check(bound, "subscribe to link events in", place)
            } catch {
                close(fd)
                throw error
            }
            return fd
        }
        identity = namespace.flatMap(Self.identity)
        descriptor = try namespace.map { try $0.run(open) } ?? open()
        self.namespace = namespace
    }

    /// Whether the namespace's file still names the namespace this socket reports
    /// on. After `ip netns delete` (and maybe `add` again) it does not: the socket
    /// would report on a namespace nobody sees, and keep it and its interfaces
    /// alive while open.
    public var isCurrent: Bool {
        guard let namespace else { return true }
        guard let identity, let now = Self.identity(of: namespace) else { return false }
        return identity == now
    }

    private static func identity(of namespace: NetworkNamespace) -> (dev_t, ino_t)? {
        var status = stat()
        return stat(namespace.path, &status) == 0 ? (status.st_dev, status.st_ino) : nil
    }

    deinit { close(descriptor) }

    /// The names of the interfaces notified as new or changed (RTM_NEWLINK) since
    /// the last call, without waiting. `lost` is true when the kernel dropped
    /// notifications (ENOBUFS: the socket's buffer was full): whatever the caller
    /// waits for may have come meanwhile, so it must look for itself.
    public func receive() throws -> (names: Set<String>, lost: Bool) {
        var names: Set<String> = []
        var lost = false
        var buffer = [UInt8](repeating: 0, count: 32 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return (names, lost) }
            if count < 0 && errno == ENOBUFS {
                lost = true
                continue
            }
            try check(Int32(clamping: count), "read link events in", namespace?.description ?? "this network namespace")
            guard count > 0 else { return (names, lost) }
            buffer.withUnsafeBytes { names.formUnion(Self.newLinkNames(in: UnsafeRawBufferPointer(rebasing: $0[..<count]))) }
        }
    }

    /// The IFLA_IFNAME of every RTM_NEWLINK message in one datagram: netlink
    /// headers, each followed by an ifinfomsg and its attributes, all 4-aligned.
    static func newLinkNames(in datagram: UnsafeRawBufferPointer) -> [String] {
        let align = { (length: Int) in (length + 3) & ~3 }
        let header = MemoryLayout<nlmsghdr>.size
        var names: [String] = []
        var offset = 0
        while offset + header <= datagram.count {
            let message = datagram.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self)
            let length = Int(message.nlmsg_len)
            guard length >= header, offset + length <= datagram.count else { break }
            if message.nlmsg_type == UInt16(RTM_NEWLINK) {
                var attribute = offset + align(header) + align(MemoryLayout<ifinfomsg>.size)
                while attribute + MemoryLayout<rtattr>.size <= offset + length {
                    let head = datagram.loadUnaligned(fromByteOffset: attribute, as: rtattr.self)
                    let size = Int(head.rta_len)
                    guard size >= MemoryLayout<rtattr>.size, attribute + size <= offset + length else { break }
                    if head.rta_type == UInt16(IFLA_IFNAME) {
                        let start = attribute + align(MemoryLayout<rtattr>.size)
                        let bytes = datagram[start..<attribute + size].prefix { $0 != 0 }
                        names.append(String(decoding: bytes, as: UTF8.self))
                    }
                    attribute += align(size)
                }
            }
            offset += align(length)
        }
        return names
    }
}
