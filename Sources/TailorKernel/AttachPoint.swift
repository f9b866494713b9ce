/// Where on an interface a program runs: XDP in a mode, or TC in a direction.
/// Chosen once from a chain's hook; attaching, detaching, replacing and reading
/// what is attached all go through it, so no caller switches on the kind again.
public enum AttachPoint: Sendable, Hashable, CustomStringConvertible {
    case xdp(XDPMode)
    case tc(TCDirection)

    /// Attaches `program` on `interface`. With `replacing: nil` the place must be
    /// free; with a program, that one must be attached, and it is replaced by
    /// `program` (atomically for XDP; for TC a check, then one netlink request).
    /// Anything else is `.staleExpectation`: someone else's program is never overwritten.
    public func attach(_ program: Program, to interface: NetworkInterface, replacing expected: Program?) throws {
        switch self {
        case .xdp(let mode):
            try XDP.attach(program, to: interface, mode: mode, replacing: expected)
        case .tc(let direction):
            try TC.createHook(on: interface)
            try TC.attach(program, to: interface, direction: direction, replacing: expected?.info().id)
        }
    }

    /// Detaches `expected`, which must be the program attached here.
    public func detach(_ expected: Program, from interface: NetworkInterface) throws {
        switch self {
        case .xdp(let mode): try XDP.detach(from: interface, mode: mode, expected: expected)
        case .tc(let direction): try TC.detach(from: interface, direction: direction, expected: expected.info().id)
        }
    }

    /// The program attached here on `interface`, or nil.
    public func attached(on interface: NetworkInterface) throws -> ProgramID? {
        switch self {
        case .xdp(let mode): try XDP.query(interface)[mode]
        case .tc(let direction): try TC.query(interface, direction: direction)
        }
    }

    /// Whether programs for this place are XDP programs (else TC, `sched_cls`).
    public var isXDP: Bool {
        if case .xdp = self { true } else { false }
    }

    public var description: String {
        switch self {
        case .xdp(let mode): "xdp (\(mode.rawValue))"
        case .tc(let direction): "tc-\(direction.rawValue)"
        }
    }
}
