import CLibBPF
import Glibc

/// What the kernel reports about a loaded program (`bpf_obj_get_info_by_fd`).
public struct ProgramInfo: Sendable, Equatable {
    public var id: ProgramID
    public var name: String
    public var type: ProgramType
    /// The program's tag: a hash of its instructions as loaded, in hex.
    public var tag: String
    public var btfID: BTFID?
    public var mapIDs: [MapID]
    /// Runs and run time, counted only while `kernel.bpf_stats_enabled` is on; a
    /// program reached by tail call is never counted here (the cube ABI counts itself).
    public var runCount: UInt64
}

/// The outcome of one BPF_PROG_TEST_RUN.
public struct TestRunResult: Sendable {
    /// The program's return code (XDP_PASS, TC_ACT_SHOT, ...).
    public var returnValue: UInt32
    /// The packet as the program left it.
    public var output: [UInt8]
    /// Average time of one run, as the kernel measured it.
    public var nanosecondsPerRun: UInt32
}

/// A loaded BPF program, held open by a file descriptor this value owns.
/// The program lives while this value, a pin, an attachment or a prog_array slot refers to it.
public final class Program: Sendable, CustomStringConvertible {
    let descriptor: Descriptor
    /// The name used in errors and logs.
    public let name: String

    /// The raw file descriptor, valid while this value lives.
    public var fd: Int32 { descriptor.raw }

    init(adopting fd: Int32, name: String) {
        descriptor = Descriptor(adopting: fd)
        self.name = name
    }

    /// Opens a program pinned on bpffs (`bpf_obj_get`).
    public convenience init(pinnedAt path: String) throws(KernelError) {
        _ = LibBPFLog.installed
        let fd = try check(bpf_obj_get(path), "open pinned program", path)
        self.init(adopting: fd, name: path)
        let kind = bpfObjectKind(fd)
        guard kind == "bpf-prog" else {
            throw KernelError(.wrongType, operation: "open pinned program", object: path,
                              detail: "the pin is a \(kind), not a program")
        }
    }

    /// Opens a loaded program by id (`bpf_prog_get_fd_by_id`).
    public convenience init(id: ProgramID) throws(KernelError) {
        _ = LibBPFLog.installed
        let fd = try check(bpf_prog_get_fd_by_id(id.rawValue), "open program", id.description, detail: byIDDetail)
        self.init(adopting: fd, name: id.description)
    }

    public var description: String { "program \(name)" }

    /// The ids of every program loaded in the kernel (`bpf_prog_get_next_id`; CAP_SYS_ADMIN).
    public static func loadedIDs() throws(KernelError) -> [ProgramID] {
        var ids: [ProgramID] = []
        var next: UInt32 = 0
        while true {
            let start = next
            let result = bpf_prog_get_next_id(start, &next)
            if result == -ENOENT { return ids }
            try check(result, "list loaded programs after", "prog \(start)", detail: byIDDetail)
            ids.append(ProgramID(rawValue: next))
        }
    }

    /// The kernel's view of this program, with the ids of the maps it uses.
    public func info() throws(KernelError) -> ProgramInfo {
        let fd = self.fd
        let object = description
        return try withZeroed(bpf_prog_info.self) { (info) throws(KernelError) -> ProgramInfo in
            var length = UInt32(MemoryLayout<bpf_prog_info>.size)
            try check(bpf_obj_get_info_by_fd(fd, info, &length), "read info of", object)
            var mapIDs = [UInt32](repeating: 0, count: Int(info.pointee.nr_map_ids))
            if !mapIDs.isEmpty {
                // A second call with only map_ids set fills the ids.
                try withZeroed(bpf_prog_info.self) { (second) throws(KernelError) in
                    second.pointee.nr_map_ids = UInt32(mapIDs.count)
                    try mapIDs.withUnsafeMutableBufferPointer { (ids) throws(KernelError) in
                        second.pointee.map_ids = UInt64(UInt(bitPattern: ids.baseAddress))
                        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
                        try check(bpf_obj_get_info_by_fd(fd, second, &length), "read map ids of", object)
                    }
                }
            }
            let tag = withUnsafeBytes(of: info.pointee.tag) { $0.map { hex($0) }.joined() }
            return ProgramInfo(
                id: ProgramID(rawValue: info.pointee.id),
                name: string(fromCArray: info.pointee.name),
                type: ProgramType(rawValue: info.pointee.type),
                tag: tag,
                btfID: info.pointee.btf_id == 0 ? nil : BTFID(rawValue: info.pointee.btf_id),
                mapIDs: mapIDs.map(MapID.init(rawValue:)),
                runCount: info.pointee.run_cnt)
        }
    }

    /// Pins the program at `path` on bpffs (`bpf_obj_pin`), so it outlives this process.
    public func pin(at path: String) throws(KernelError) {
        try check(bpf_obj_pin(fd, path), "pin", "\(description) at \(path)")
    }

    /// Runs the program on `packet` in the kernel (BPF_PROG_TEST_RUN) `repeat` times.
    public func testRun(_ packet: [UInt8], repeat count: Int = 1) throws(KernelError) -> TestRunResult {
        // XDP may grow the packet at head or tail; leave room for that.
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: max(packet.count, 1), alignment: 8)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: packet.count + 512, alignment: 8)
        defer { input.deallocate(); output.deallocate() }
        input.copyBytes(from: packet)
        let fd = self.fd
        return try withZeroed(bpf_test_run_opts.self) { (opts) throws(KernelError) -> TestRunResult in
            opts.pointee.sz = offsetOfEnd(\bpf_test_run_opts.duration)
            opts.pointee.data_in = UnsafeRawPointer(input.baseAddress)
            opts.pointee.data_size_in = UInt32(packet.count)
            opts.pointee.data_out = output.baseAddress
            opts.pointee.data_size_out = UInt32(output.count)
            opts.pointee.repeat = Int32(count)
            try check(bpf_prog_test_run_opts(fd, opts), "test-run", description)
            return TestRunResult(
                returnValue: opts.pointee.retval,
                output: Array(output.prefix(Int(opts.pointee.data_size_out))),
                nanosecondsPerRun: opts.pointee.duration)
        }
    }
}

extension Program {
    /// Runs this XDP program `count` times on `frame` in live-frames mode
    /// (BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES): each verdict is carried
    /// out for real, so a program that redirects makes the kernel send `frame`
    /// `count` times, `batch` frames per flush. The frames come in by `ingress`, an
    /// interface of the calling thread's namespace, which is also where a redirect's
    /// target is looked up.
    public func sendLive(_ frame: [UInt8], count: Int, ingress: InterfaceIndex, batch: UInt32 = 64) throws(KernelError) {
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: max(frame.count, 1), alignment: 8)
        defer { input.deallocate() }
        input.copyBytes(from: frame)
        let fd = self.fd
        try withZeroed(xdp_md.self) { (context) throws(KernelError) in
            context.pointee.data_end = UInt32(frame.count)
            context.pointee.ingress_ifindex = UInt32(bitPattern: ingress.rawValue)
            try withZeroed(bpf_test_run_opts.self) { (opts) throws(KernelError) in
                opts.pointee.sz = offsetOfEnd(\bpf_test_run_opts.batch_size)
                opts.pointee.data_in = UnsafeRawPointer(input.baseAddress)
                opts.pointee.data_size_in = UInt32(frame.count)
                opts.pointee.ctx_in = UnsafeRawPointer(context)
                opts.pointee.ctx_size_in = UInt32(MemoryLayout<xdp_md>.size)
                opts.pointee.repeat = Int32(count)
                opts.pointee.flags = UInt32(BPF_F_TEST_XDP_LIVE_FRAMES)
                opts.pointee.batch_size = batch
                try check(bpf_prog_test_run_opts(fd, opts), "live test-run", description)
            }
        }
    }
}

func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
}
