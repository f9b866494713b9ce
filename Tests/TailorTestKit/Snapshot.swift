import Foundation
import TailorDatapath
import TailorKernel

/// What the kernel holds under a pin root and on some hooks, as an operator could
/// see it: every pin with the id of its program or map, the entries of every map
/// (prog_array slots as program ids), and the program on each hook. Two snapshots
/// are equal when nothing an apply could have touched changed.
public struct KernelSnapshot: Equatable, CustomStringConvertible {
    public var pins: [String: String] = [:]
    public var hooks: [String: String] = [:]

    public init(_ root: PinRoot, hooks: [ChainHook]) throws {
        let walker = FileManager.default.enumerator(atPath: root.path)
        for case let path as String in walker?.allObjects ?? [] {
            let full = root.path + "/" + path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue
            else { continue }
            if let program = try? Program(pinnedAt: full) {
                pins[path] = "\(try program.info().id)"
                continue
            }
            let map = try BPFMap(pinnedAt: full)
            // prog_arrays have no batch lookup: their slots, by program id.
            let entries = if let slots = try? ProgramArray(map).occupiedSlots() {
                slots.map { "\($0.key)=\($0.value)" }.sorted()
            } else {
                try map.lookupBatch().map { "\($0.key)=\($0.value)" }.sorted()
            }
            pins[path] = "\(map.info.id) \(entries.count) entries, \(entries.joined().hashValue)"
        }
        for hook in hooks { self.hooks["\(hook)"] = "\(try hook.attachedProgram().map(\.description) ?? "none")" }
    }

    /// The lines of `other` that differ from this snapshot, for failure messages.
    public func changes(to other: KernelSnapshot) -> String {
        let mine = Set(description.split(separator: "\n")), theirs = Set(other.description.split(separator: "\n"))
        return (mine.subtracting(theirs).sorted().map { "- \($0)" } + theirs.subtracting(mine).sorted().map { "+ \($0)" })
            .joined(separator: "\n")
    }

    public var description: String {
        (pins.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            + hooks.sorted { $0.key < $1.key }.map { "hook \($0.key): \($0.value)" }).joined(separator: "\n")
    }
}
