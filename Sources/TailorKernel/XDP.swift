import CLibBPF
import Glibc

/// How an XDP program runs: in the driver (native) or after the skb is built (generic).
/// tailor never falls back from one to the other silently.
public enum XDPMode: String, Sendable, Hashable, CaseIterable, Codable {
    case native, generic

    var flags: UInt32 {
        switch self {
        case .native: UInt32(XDP_FLAGS_DRV_MODE)
        case .generic: UInt32(XDP_FLAGS_SKB_MODE)
        }
    }
}

/// The XDP programs attached to an interface, per mode, as the kernel reports them.
public struct XDPAttachments: Sendable, Equatable {
    public var native: ProgramID?
    public var generic: ProgramID?
    public var offloaded: ProgramID?

    public init(native: ProgramID? = nil, generic: ProgramID? = nil, offloaded: ProgramID? = nil) {
        self.native = native
        self.generic = generic
        self.offloaded = offloaded
    }

    public subscript(mode: XDPMode) -> ProgramID? {
        switch mode {
        case .native: native
        case .generic: generic
        }
    }
}

/// XDP attach, replace, detach and query over netlink (libbpf `bpf_xdp_*`).
/// Each call runs in the interface's namespace.
public enum XDP {
    /// Attaches `program` to `interface` in `mode`. With `replacing: nil` the hook
    /// must be empty; with a program, that one must be attached, and it is swapped
    /// atomically. Anything else is `.staleExpectation`: someone else's program is
    /// never overwritten. The expected program is passed as the program itself (the
    /// kernel compares descriptors): opening one by id would need CAP_SYS_ADMIN.
    public static func attach(
        _ program: Program, to interface: NetworkInterface, mode: XDPMode, replacing expectedProgram: Program?
    ) throws {
        let operation = "attach \(program.description) with XDP (\(mode.rawValue)) to"
        let expected = try expectedProgram?.info().id
        try interface.run {
            let result = withZeroed(bpf_xdp_attach_opts.self) { opts in
                opts.pointee.sz = offsetOfEnd(\bpf_xdp_attach_opts.old_prog_fd)
                var flags = mode.flags
                if let expectedProgram {
                    flags |= UInt32(XDP_FLAGS_REPLACE)
                    opts.pointee.old_prog_fd = expectedProgram.fd
                } else {
                    flags |= UInt32(XDP_FLAGS_UPDATE_IF_NOEXIST)
                }
                return bpf_xdp_attach(interface.index.rawValue, program.fd, flags, opts)
            }
            try checkAttach(result, operation, interface, mode: mode, expected: expected)
        }
    }

    /// Detaches the XDP program in `mode`, which must be `expectedProgram`.
    public static func detach(from interface: NetworkInterface, mode: XDPMode, expected expectedProgram: Program) throws {
        let expected = try expectedProgram.info().id
        let operation = "detach XDP (\(mode.rawValue)) \(expected) from"
        try interface.run {
            let result = withZeroed(bpf_xdp_attach_opts.self) { opts in
                opts.pointee.sz = offsetOfEnd(\bpf_xdp_attach_opts.old_prog_fd)
                opts.pointee.old_prog_fd = expectedProgram.fd
                return bpf_xdp_detach(interface.index.rawValue, mode.flags | UInt32(XDP_FLAGS_REPLACE), opts)
            }
            try checkAttach(result, operation, interface, mode: mode, expected: expected)
        }
    }

    /// What is attached to `interface`, per mode (`bpf_xdp_query`).
    public static func query(_ interface: NetworkInterface) throws -> XDPAttachments {
        try interface.run {
            try withZeroed(bpf_xdp_query_opts.self) { (opts) throws(KernelError) -> XDPAttachments in
                opts.pointee.sz = offsetOfEnd(\bpf_xdp_query_opts.attach_mode)
                try check(bpf_xdp_query(interface.index.rawValue, 0, opts), "query XDP on", interface.description)
                let id = { (raw: UInt32) in raw == 0 ? nil : ProgramID(rawValue: raw) }
                var attachments = XDPAttachments(
                    native: id(opts.pointee.drv_prog_id), generic: id(opts.pointee.skb_prog_id),
                    offloaded: id(opts.pointee.hw_prog_id))
                // With one program attached the kernel may report it only in prog_id.
                switch UInt32(opts.pointee.attach_mode) {
                case UInt32(XDP_ATTACHED_DRV) where attachments.native == nil:
                    attachments.native = id(opts.pointee.prog_id)
                case UInt32(XDP_ATTACHED_SKB) where attachments.generic == nil:
                    attachments.generic = id(opts.pointee.prog_id)
                default: break
                }
                return attachments
            }
        }
    }

    private static func checkAttach(
        _ result: Int32, _ operation: String, _ interface: NetworkInterface, mode: XDPMode, expected: ProgramID?
    ) throws(KernelError) {
        guard result < 0 else { return }
        switch -result {
        case EEXIST, EBUSY:
            let attached = try? query(interface)
            let other: XDPMode = mode == .native ? .generic : .native
            let found = if let current = attached?[mode] {
                "found \(current)"
            } else if let current = attached?[other] {
                "found \(current) in \(other.rawValue) mode (the kernel allows one mode at a time)"
            } else {
                "found another program"
            }
            throw KernelError(
                .staleExpectation, operation: operation, object: interface.description, errno: -result,
                detail: "expected \(expected.map(\.description) ?? "no program") attached, \(found)")
        case EOPNOTSUPP where mode == .native:
            throw KernelError(.invalidArgument, operation: operation, object: interface.description,
                              errno: -result, detail: "the driver has no native XDP; use mode generic explicitly")
        default:
            try check(result, operation, interface.description)
        }
    }
}
