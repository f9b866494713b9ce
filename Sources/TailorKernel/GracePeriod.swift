import CLibBPF
import Glibc

/// Waits, from user space, for an RCU grace period: after `wait()` returns, every
/// BPF program that was running when it was called has finished (XDP and TC
/// programs, and every program they tail-call, run inside one RCU read section).
///
/// The kernel has no direct call for this; updating an element of an
/// ARRAY_OF_MAPS map makes it run synchronize_rcu() before returning, so tailor
/// keeps one such map and rewrites its only element.
public final class GracePeriod: Sendable {
    private let outer: BPFMap
    private let inner: BPFMap

    public init() throws(KernelError) {
        _ = LibBPFLog.installed
        inner = try BPFMap.create(.array, name: "tailor_rcu_in", keySize: 4, valueSize: 4, maxEntries: 1)
        let innerFD = inner.fd
        let fd = try withZeroed(bpf_map_create_opts.self) { (opts) throws(KernelError) -> Int32 in
            opts.pointee.sz = offsetOfEnd(\bpf_map_create_opts.inner_map_fd)
            opts.pointee.inner_map_fd = UInt32(innerFD)
            return try check(bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "tailor_rcu", 4, 4, 1, opts),
                             "create grace-period map", "tailor_rcu")
        }
        outer = try BPFMap(adopting: fd, label: "tailor_rcu")
    }

    /// Returns after a full RCU grace period.
    public func wait() throws(KernelError) {
        try outer.update([0, 0, 0, 0], withUnsafeBytes(of: UInt32(bitPattern: inner.fd), Array.init))
    }
}
