import Glibc
import TailorKernel

/// How one state map of a replaced cube reaches the new instance. Decided from the
/// two layouts alone (pure), so the plan shows it and refuses before anything changes.
public enum StateCarry: Sendable, Equatable {
    /// The layouts are the same: the new instance takes over the old map itself.
    case reuse
    /// A new map, filled from the old one entry by entry, field by field.
    case migrate(EntryTranslation)
    /// The spec says to start empty (`migration: {map: reset}`).
    case reset
    /// The entries cannot be carried over without losing meaning.
    case refuse(String)

    /// The carry from `old` (the live map) to `new` (the new object's declaration).
    public static func between(_ old: MapLayout, _ new: MapLayout, reset: Bool) -> StateCarry {
        if reset { return .reset }
        guard old.type == new.type else {
            return .refuse("its map type changes from \(old.mapType) to \(new.mapType)")
        }
        if old.shape == new.shape { return .reuse }
        guard let oldKey = old.key, let newKey = new.key, let oldValue = old.value, let newValue = new.value else {
            guard old.keySize == new.keySize, old.valueSize == new.valueSize else {
                return .refuse("its key or value has no BTF, so its entries cannot be mapped field by field")
            }
            return .migrate(EntryTranslation(old: old, new: new, key: [.copy(from: 0, to: 0, count: old.keySize)],
                                             value: [.copy(from: 0, to: 0, count: old.valueSize)]))
        }
        let key: FieldMapping, value: FieldMapping
        switch FieldMapping.between(oldKey, newKey, defaults: [:], what: "key") {
        case .success(let mapping): key = mapping
        case .failure(let refusal): return .refuse(refusal.reason)
        }
        guard key.removed.isEmpty else {
            let lost = key.removed.map { $0.isEmpty ? "its old key" : "key field '\($0)'" }.joined(separator: ", ")
            return .refuse("the new key has no place for \(lost): entries with different keys would collide")
        }
        switch FieldMapping.between(oldValue, newValue, defaults: new.defaults, what: "value") {
        case .success(let mapping): value = mapping
        case .failure(let refusal): return .refuse(refusal.reason)
        }
        return .migrate(EntryTranslation(old: old, new: new, key: key.steps, value: value.steps,
                                         added: key.added + value.added, removed: value.removed,
                                         widened: key.widened + value.widened))
    }
}

/// Why a layout change cannot be mapped.
struct MappingRefusal: Error {
    let reason: String
}

/// The steps that build one new key or value from an old one.
struct FieldMapping {
    var steps: [EntryTranslation.Step] = []
    var added: [String] = [], removed: [String] = [], widened: [String] = []

    /// New fields by name from old ones: the same type is copied, an integer
    /// widened is converted (sign-extended when signed), a new field gets its
    /// default or zero, a removed one is dropped. Narrowing, signed to unsigned,
    /// another type, or a bitfield that changed is refused.
    static func between(_ old: [MapLayout.Field], _ new: [MapLayout.Field], defaults: [String: Int64],
                        what: String) -> Result<FieldMapping, MappingRefusal> {
        var mapping = FieldMapping()
        let label = { (field: MapLayout.Field) in field.name.isEmpty ? "the \(what)" : "\(what) field '\(field.name)'" }
        for field in new {
            guard let source = old.first(where: { $0.name == field.name }) else {
                mapping.added.append(field.name)
                if let value = defaults[field.name], field.isInteger, field.bitfield == nil {
                    mapping.steps.append(.fill(at: field.offset, bytes: Array(withUnsafeBytes(of: value.littleEndian) {
                        Array($0.prefix(field.size))
                    })))
                }
                continue
            }
            if source.bitfield != nil || field.bitfield != nil {
                guard source == field else {
                    return .failure(MappingRefusal(reason: "\(label(field)) is a bitfield that changes"))
                }
                mapping.steps.append(.copy(from: source.offset, to: field.offset, count: source.size))
                continue
            }
            switch (source.isInteger, field.isInteger) {
            case (true, true):
                if field.size < source.size {
                    return .failure(MappingRefusal(reason: "\(label(field)) narrows from \(source.type) to \(field.type)"))
                }
                if source.isSigned && !field.isSigned {
                    return .failure(MappingRefusal(reason: "\(label(field)) changes from signed \(source.type) to "
                        + "unsigned \(field.type)"))
                }
                if field.size == source.size {
                    mapping.steps.append(.copy(from: source.offset, to: field.offset, count: source.size))
                } else {
                    mapping.widened.append("\(field.name.isEmpty ? what : field.name) \(source.type)->\(field.type)")
                    mapping.steps.append(.widen(from: source.offset, fromSize: source.size, to: field.offset,
                                                toSize: field.size, signed: source.isSigned))
                }
            case (false, false) where source.type == field.type && source.size == field.size:
                mapping.steps.append(.copy(from: source.offset, to: field.offset, count: source.size))
            default:
                return .failure(MappingRefusal(reason: "\(label(field)) changes type from \(source.type) to \(field.type)"))
            }
        }
        mapping.removed = old.map(\.name).filter { name in !new.contains { $0.name == name } }
        mapping.steps = merged(mapping.steps)
        return .success(mapping)
    }

    /// Adjacent copies joined into one, so an unchanged run of fields is one memcpy.
    static func merged(_ steps: [EntryTranslation.Step]) -> [EntryTranslation.Step] {
        var result: [EntryTranslation.Step] = []
        for step in steps {
            if case .copy(let from, let to, let count) = step, case .copy(let f, let t, let c)? = result.last,
               f + c == from, t + c == to {
                result[result.count - 1] = .copy(from: f, to: t, count: c + count)
            } else {
                result.append(step)
            }
        }
        return result
    }
}

/// Builds new entries from old ones, for a state map whose layout changed.
public struct EntryTranslation: Sendable, Equatable {
    enum Step: Sendable, Equatable {
        case copy(from: Int, to: Int, count: Int)
        case widen(from: Int, fromSize: Int, to: Int, toSize: Int, signed: Bool)
        case fill(at: Int, bytes: [UInt8])
    }

    let old: MapLayout
    let new: MapLayout
    let key: [Step]
    let value: [Step]
    /// Field names added and removed, and integers widened (`name old->new`).
    public let added: [String]
    public let removed: [String]
    public let widened: [String]

    init(old: MapLayout, new: MapLayout, key: [Step], value: [Step], added: [String] = [], removed: [String] = [],
         widened: [String] = []) {
        (self.old, self.new, self.key, self.value) = (old, new, key, value)
        (self.added, self.removed, self.widened) = (added, removed, widened)
    }

    /// The new map holds fewer entries than the old one: the live count must fit.
    public var shrinksTo: Int? { new.maxEntries < old.maxEntries ? new.maxEntries : nil }

    /// What changes, for plans: `+field -field ~field u32->u64, max_entries a->b`.
    public var summary: String {
        var parts = added.map { "+\($0.isEmpty ? "value" : $0)" } + removed.map { "-\($0)" } + widened.map { "~\($0)" }
        if old.maxEntries != new.maxEntries { parts.append("max_entries \(old.maxEntries)->\(new.maxEntries)") }
        if old.flags != new.flags { parts.append("flags \(old.flags)->\(new.flags)") }
        return parts.isEmpty ? "copied as is" : parts.joined(separator: " ")
    }

    var perCPU: Bool { old.mapType.isPerCPU }
    var oldStride: Int { perCPU ? (old.valueSize + 7) & ~7 : old.valueSize }
    var newStride: Int { perCPU ? (new.valueSize + 7) & ~7 : new.valueSize }

    /// Translates every entry of `entries` (read from the old map; `cpus` values per
    /// key for per-CPU maps) into the new map's layout.
    public func translate(_ entries: FlatEntries, cpus: Int) -> FlatEntries {
        let count = entries.count, copies = perCPU ? cpus : 1
        var out = FlatEntries(keys: [UInt8](repeating: 0, count: count * new.keySize),
                              values: [UInt8](repeating: 0, count: count * newStride * copies),
                              keySize: new.keySize, valueSize: newStride * copies)
        entries.keys.withUnsafeBytes { input in
            out.keys.withUnsafeMutableBytes { output in
                for i in 0..<count {
                    Self.run(key, input.baseAddress! + i * old.keySize, output.baseAddress! + i * new.keySize)
                }
            }
        }
        entries.values.withUnsafeBytes { input in
            out.values.withUnsafeMutableBytes { output in
                for i in 0..<count {
                    for cpu in 0..<copies {
                        Self.run(value, input.baseAddress! + i * entries.valueSize + cpu * oldStride,
                                 output.baseAddress! + i * out.valueSize + cpu * newStride)
                    }
                }
            }
        }
        return out
    }

    private static func run(_ steps: [Step], _ source: UnsafeRawPointer, _ target: UnsafeMutableRawPointer) {
        for step in steps {
            switch step {
            case .copy(let from, let to, let count):
                memcpy(target + to, source + from, count)
            case .widen(let from, let fromSize, let to, let toSize, let signed):
                var bits: UInt64 = 0
                memcpy(&bits, source + from, fromSize)
                bits = UInt64(littleEndian: bits)
                if signed && bits & (1 << (fromSize * 8 - 1)) != 0 { bits |= ~0 << (fromSize * 8) }
                bits = bits.littleEndian
                memcpy(target + to, &bits, toSize)
            case .fill(let at, let bytes):
                bytes.withUnsafeBytes { _ = memcpy(target + at, $0.baseAddress!, bytes.count) }
            }
        }
    }

    /// What the final pass writes once the old instance has stopped: entries the
    /// old instance changed after the pre-copy (`before` is what was copied, `after`
    /// the old map now, `current` the new map now, all as read).
    ///
    /// - Changed or added by the old instance only: the new map gets them.
    /// - Deleted by the old instance only: deleted from the new map.
    /// - Also changed by the new instance since the switch: the new instance's
    ///   value stays, except in additive maps, where each integer field gets the
    ///   old instance's late increment added (counters lose nothing).
    public func finalPass(before: FlatEntries, after: FlatEntries, current: FlatEntries, cpus: Int)
        -> (updates: FlatEntries, deletes: [[UInt8]]) {
        var updates = FlatEntries(keySize: new.keySize, valueSize: newStride * (perCPU ? cpus : 1))
        var deletes: [[UInt8]] = []
        // Nothing moved since the pre-copy: the common case, checked in one comparison.
        if before == after { return (updates, deletes) }
        let index = { (entries: FlatEntries) in
            Dictionary((0..<entries.count).map { (entries.keys[$0 * entries.keySize..<($0 + 1) * entries.keySize], $0) },
                       uniquingKeysWith: { a, _ in a })
        }
        let value = { (entries: FlatEntries, i: Int) in entries.values[i * entries.valueSize..<(i + 1) * entries.valueSize] }
        let oldBefore = index(before), oldAfter = index(after), newNow = index(current)
        for (key, i) in oldAfter {
            let was = oldBefore[key]
            if let was, value(before, was) == value(after, i) { continue }
            let late = translate(FlatEntries(keys: Array(key), values: Array(value(after, i)), keySize: old.keySize,
                                             valueSize: after.valueSize), cpus: cpus)
            let copied = was.map { translate(FlatEntries(keys: Array(key), values: Array(value(before, $0)),
                                                         keySize: old.keySize, valueSize: before.valueSize), cpus: cpus) }
            let now = newNow[late.keys[...]].map { Array(value(current, $0)) }
            var result = late.values
            if now != copied?.values {
                // The new instance wrote this entry too.
                guard let now else { continue }
                result = new.additive ? added(now, late.values, minus: copied?.values, cpus: cpus) : now
                if result == now { continue }
            }
            updates.keys += late.keys
            updates.values += result
        }
        for (key, was) in oldBefore where oldAfter[key] == nil {
            let copied = translate(FlatEntries(keys: Array(key), values: Array(value(before, was)),
                                               keySize: old.keySize, valueSize: before.valueSize), cpus: cpus)
            if let now = newNow[copied.keys[...]], Array(value(current, now)) == copied.values {
                deletes.append(copied.keys)
            }
        }
        return (updates, deletes)
    }

    /// `base` plus (`late` - `copied`) in every integer field of the new value, per CPU.
    private func added(_ base: [UInt8], _ late: [UInt8], minus copied: [UInt8]?, cpus: Int) -> [UInt8] {
        var result = base
        let zero = [UInt8](repeating: 0, count: late.count)
        let from = copied ?? zero
        for cpu in 0..<(perCPU ? cpus : 1) {
            for field in new.value ?? [] where field.isInteger && field.bitfield == nil && field.size <= 8 {
                let at = cpu * newStride + field.offset
                let read = { (bytes: [UInt8]) -> UInt64 in
                    (0..<field.size).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * $1) }
                }
                let sum = read(base) &+ (read(late) &- read(from))
                for byte in 0..<field.size { result[at + byte] = UInt8(truncatingIfNeeded: sum >> (8 * byte)) }
            }
        }
        return result
    }
}
