import CLibBPF
import Glibc

/// The direction of a TC hook on the clsact qdisc.
public enum TCDirection: String, Sendable, Hashable, CaseIterable {
    case ingress, egress

    var attachPoint: bpf_tc_attach_point {
        switch self {
        case .ingress: BPF_TC_INGRESS
        case .egress: BPF_TC_EGRESS
        }
    }
}

/// Where a BPF filter sits in a TC hook: its handle and priority. tailor uses one
/// fixed filter per hook, so a query by this address finds exactly its program.
public struct TCFilter: Sendable, Hashable {
    public var handle: UInt32
    public var priority: UInt32
    public init(handle: UInt32, priority: UInt32) {
        self.handle = handle
        self.priority = priority
    }
    /// The address tailor's chain roots use.
    public static let tailor = TCFilter(handle: 0x7a11, priority: 1)
}

/// TC (clsact) hooks and BPF filters over netlink (libbpf `bpf_tc_*`), in
/// direct-action mode. Each call runs in the interface's namespace.
public enum TC {
    private static func withHook<R>(
        _ interface: NetworkInterface, _ points: bpf_tc_attach_point,
        _ body: (UnsafeMutablePointer<bpf_tc_hook>) throws -> R
    ) throws -> R {
        // A query can be a process's first libbpf call (observe looks at the hooks of chains not built yet).
        _ = LibBPFLog.installed
        return try interface.run {
            try withZeroed(bpf_tc_hook.self) { hook in
                hook.pointee.sz = offsetOfEnd(\bpf_tc_hook.parent)
                hook.pointee.ifindex = interface.index.rawValue
                hook.pointee.attach_point = points
                return try body(hook)
            }
        }
    }

    private static func withOptions<R>(
        _ filter: TCFilter, _ body: (UnsafeMutablePointer<bpf_tc_opts>) throws -> R
    ) rethrows -> R {
        try withZeroed(bpf_tc_opts.self) { opts in
            opts.pointee.sz = offsetOfEnd(\bpf_tc_opts.priority)
            opts.pointee.handle = filter.handle
            opts.pointee.priority = filter.priority
            return try body(opts)
        }
    }

    /// Adds the clsact qdisc to `interface` if it has none (`bpf_tc_hook_create`).
    public static func createHook(on interface: NetworkInterface) throws {
        try withHook(interface, BPF_TC_INGRESS) { hook in
            let result = bpf_tc_hook_create(hook)
            if result != -EEXIST { try check(result, "create clsact qdisc on", interface.description) }
        }
    }

    /// Removes the clsact qdisc and every filter in it (`bpf_tc_hook_destroy`).
    public static func destroyHook(on interface: NetworkInterface) throws {
        try withHook(interface, bpf_tc_attach_point(BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue)) { hook in
            let result = bpf_tc_hook_destroy(hook)
            if result != -ENOENT { try check(result, "remove clsact qdisc from", interface.description) }
        }
    }

    /// Attaches `program` as the filter at `filter` in `direction`. With
    /// `replacing: nil` the place must be free; with an id, that program must be the
    /// one there, and it is replaced in one netlink request. The kernel has no
    /// compare-and-swap for TC filters, so the check and the swap are two calls:
    /// a concurrent writer between them is not detected.
    public static func attach(
        _ program: Program, to interface: NetworkInterface, direction: TCDirection,
        filter: TCFilter = .tailor, replacing expected: ProgramID?
    ) throws {
        let operation = "attach \(program.description) to TC \(direction.rawValue) of"
        let current = try query(interface, direction: direction, filter: filter)
        guard current == expected else {
            throw KernelError(
                .staleExpectation, operation: operation, object: interface.description,
                detail: "expected \(expected.map(\.description) ?? "no program") at filter "
                    + "\(filter.handle):\(filter.priority), found \(current.map(\.description) ?? "none")")
        }
        try withHook(interface, direction.attachPoint) { hook in
            try withOptions(filter) { opts in
                opts.pointee.prog_fd = program.fd
                opts.pointee.flags = expected == nil ? 0 : UInt32(BPF_TC_F_REPLACE.rawValue)
                try check(bpf_tc_attach(hook, opts), operation, interface.description)
            }
        }
    }

    /// Removes the filter at `filter` in `direction`, which must hold `expected`.
    public static func detach(
        from interface: NetworkInterface, direction: TCDirection, filter: TCFilter = .tailor, expected: ProgramID
    ) throws {
        let operation = "detach TC \(direction.rawValue) \(expected) from"
        let current = try query(interface, direction: direction, filter: filter)
        guard current == expected else {
            throw KernelError(.staleExpectation, operation: operation, object: interface.description,
                              detail: "found \(current.map(\.description) ?? "no program") there")
        }
        _ = try withHook(interface, direction.attachPoint) { hook in
            try withOptions(filter) { opts in
                try check(bpf_tc_detach(hook, opts), operation, interface.description)
            }
        }
    }

    /// The program at `filter` in `direction`, or nil when there is none or no clsact qdisc.
    public static func query(
        _ interface: NetworkInterface, direction: TCDirection, filter: TCFilter = .tailor
    ) throws -> ProgramID? {
        try withHook(interface, direction.attachPoint) { hook in
            try withOptions(filter) { opts in
                let result = bpf_tc_query(hook, opts)
                // No qdisc (EINVAL on some kernels) or no filter there: nothing attached.
                if result == -ENOENT || result == -EINVAL { return nil }
                try check(result, "query TC \(direction.rawValue) of", interface.description)
                return ProgramID(rawValue: opts.pointee.prog_id)
            }
        }
    }
}
