import CLibBPF
import Glibc

/// A prog_array map: the slots a chain's programs tail-call into. Reading a slot
/// from user space yields the id of the program in it.
public struct ProgramArray: Sendable {
    public let map: BPFMap

    /// Wraps `map`, refusing any map that is not a prog_array.
    public init(_ map: BPFMap) throws(KernelError) {
        guard map.info.type == .programArray else {
            throw KernelError(.wrongType, operation: "use as prog_array", object: map.description,
                              detail: "it is a \(map.info.type) map")
        }
        self.map = map
    }

    /// Opens a pinned prog_array.
    public init(pinnedAt path: String) throws(KernelError) {
        try self.init(BPFMap(pinnedAt: path))
    }

    public var capacity: Int { map.info.maxEntries }

    private func key(_ slot: Int) throws(KernelError) -> [UInt8] {
        guard (0..<capacity).contains(slot) else {
            throw KernelError(.invalidArgument, operation: "address slot \(slot) of", object: map.description,
                              detail: "slots run from 0 to \(capacity - 1)")
        }
        return withUnsafeBytes(of: UInt32(slot).littleEndian, Array.init)
    }

    /// The program in `slot`, or nil when the slot is empty.
    public func program(at slot: Int) throws(KernelError) -> ProgramID? {
        guard let value = try map.lookup(key(slot)) else { return nil }
        return ProgramID(rawValue: value.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
    }

    /// Every occupied slot and its program.
    public func occupiedSlots() throws(KernelError) -> [Int: ProgramID] {
        var slots: [Int: ProgramID] = [:]
        for slot in 0..<capacity {
            if let id = try program(at: slot) { slots[slot] = id }
        }
        return slots
    }

    /// Puts `program` in `slot`: one atomic write, seen whole by the next packet.
    public func set(_ slot: Int, to program: Program) throws(KernelError) {
        let value = withUnsafeBytes(of: UInt32(bitPattern: program.fd), Array.init)
        try map.update(key(slot), value)
    }

    /// Empties `slot`; false if it was already empty.
    @discardableResult
    public func clear(_ slot: Int) throws(KernelError) -> Bool {
        try map.delete(key(slot))
    }
}
