import Testing
@testable import TailorDatapath
import TailorKernel

private func int(_ name: String, _ offset: Int, _ size: Int, signed: Bool = false) -> MapLayout.Field {
    MapLayout.Field(name: name, offset: offset, size: size, type: "\(signed ? "__s" : "__u")\(size * 8)",
                    isInteger: true, isSigned: signed)
}

private func layout(_ value: [MapLayout.Field], size: Int, key: [MapLayout.Field] = [int("", 0, 2)],
                    keySize: Int = 2, type: MapType = .hash, max: Int = 64, defaults: [String: Int64] = [:],
                    additive: Bool = false) -> MapLayout {
    MapLayout(type: type, keySize: keySize, valueSize: size, maxEntries: max, key: key, value: value,
              defaults: defaults, additive: additive)
}

/// State carry decided from layouts alone, and entries translated and merged, with values.
@Suite("state carry (pure)")
struct StateCarryTests {
    typealias Field = MapLayout.Field

    /// v1: { u32 packets; u32 bytes; s8 delta; u8 tos; }
    static let v1 = layout([int("packets", 0, 4), int("bytes", 4, 4), int("delta", 8, 1, signed: true),
                            int("tos", 9, 1)], size: 12)
    /// v2: { u64 packets; u64 bytes; s32 delta; u32 version; } (tos removed, version added)
    static let v2 = layout([int("packets", 0, 8), int("bytes", 8, 8), int("delta", 16, 4, signed: true),
                            int("version", 20, 4)], size: 24, max: 128, defaults: ["version": 2])

    static func translation(_ old: MapLayout, _ new: MapLayout) throws -> EntryTranslation {
        guard case .migrate(let translation) = StateCarry.between(old, new, reset: false) else {
            throw CarryMismatch(found: StateCarry.between(old, new, reset: false))
        }
        return translation
    }

    struct CarryMismatch: Error { let found: StateCarry }

    @Test("the same layout is reused; defaults and the merge rule alone change nothing")
    func reuse() {
        #expect(StateCarry.between(Self.v1, Self.v1, reset: false) == .reuse)
        var tagged = Self.v1
        tagged.defaults = ["tos": 3]
        tagged.additive = true
        #expect(StateCarry.between(Self.v1, tagged, reset: false) == .reuse)
        #expect(StateCarry.between(Self.v1, Self.v2, reset: true) == .reset)
    }

    @Test("fields kept are copied, widened integers converted (sign-extended), removed dropped, added defaulted")
    func translate() throws {
        let translation = try Self.translation(Self.v1, Self.v2)
        #expect(translation.added == ["version"])
        #expect(translation.removed == ["tos"])
        #expect(translation.widened == ["packets __u32->__u64", "bytes __u32->__u64", "delta __s8->__s32"])
        #expect(translation.summary == "+version -tos ~packets __u32->__u64 ~bytes __u32->__u64 ~delta __s8->__s32 "
            + "max_entries 64->128")
        let old = FlatEntries(keys: [0x50, 0x00], values: [0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 0xfe, 9, 0, 0],
                              keySize: 2, valueSize: 12)
        let new = translation.translate(old, cpus: 1)
        #expect(new.keys == [0x50, 0x00])
        #expect(new.values == [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,   // packets: 4294967295, not -1
                               0x10, 0, 0, 0, 0, 0, 0, 0,             // bytes
                               0xfe, 0xff, 0xff, 0xff,                 // delta: -2 stays -2
                               2, 0, 0, 0])                            // version: the declared default
    }

    @Test("per-CPU values are translated CPU by CPU at 8-byte strides")
    func perCPU() throws {
        let old = layout([int("n", 0, 4)], size: 4, type: .perCPUHash)
        let new = layout([int("n", 0, 8)], size: 8, type: .perCPUHash)
        let translation = try Self.translation(old, new)
        let entries = FlatEntries(keys: [1, 0], values: [5, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0],
                                  keySize: 2, valueSize: 16)
        #expect(translation.translate(entries, cpus: 2).values == [5, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test("unsafe changes are refused with the reason", arguments: [
        ("narrowed", [int("packets", 0, 2), int("bytes", 4, 4)], "value field 'packets' narrows from __u32 to __u16"),
        ("signedness", [int("packets", 0, 4, signed: true), int("bytes", 4, 4)], ""),
        ("retyped", [Field(name: "packets", offset: 0, size: 4, type: "char[4]", isInteger: false), int("bytes", 4, 4)],
         "value field 'packets' changes type from __u32 to char[4]"),
    ])
    func refused(change: String, value: [Field], reason: String) {
        let old = layout([int("packets", 0, 4, signed: change == "signedness"), int("bytes", 4, 4)], size: 8)
        let new = layout(change == "signedness" ? [int("packets", 0, 4), int("bytes", 4, 4)] : value, size: 8)
        guard case .refuse(let found) = StateCarry.between(old, new, reset: false) else {
            Issue.record("\(change) was not refused")
            return
        }
        #expect(found == (reason.isEmpty ? "value field 'packets' changes from signed __s32 to unsigned __u32" : reason))
    }

    @Test("a key that loses a field, another map type, or no BTF with other sizes is refused")
    func keysAndTypes() {
        let rekeyed = layout(Self.v1.value!, size: 12, key: [int("port", 0, 2), int("proto", 2, 1)], keySize: 4)
        #expect(StateCarry.between(Self.v1, rekeyed, reset: false)
            == .refuse("the new key has no place for its old key: entries with different keys would collide"))
        var lru = Self.v1
        lru.type = MapType.lruHash.rawValue
        #expect(StateCarry.between(Self.v1, lru, reset: false) == .refuse("its map type changes from hash to lru_hash"))
        var bare = Self.v1
        bare.key = nil
        var grown = bare
        grown.valueSize = 16
        #expect(StateCarry.between(bare, grown, reset: false)
            == .refuse("its key or value has no BTF, so its entries cannot be mapped field by field"))
    }

    @Test("the final pass: late changes of the old instance copied, the new instance's writes kept, counters added")
    func finalPass() throws {
        let old = layout([int("n", 0, 4)], size: 4)
        var new = layout([int("n", 0, 8)], size: 8)
        let entries = { (pairs: [(UInt8, UInt32)]) in
            FlatEntries(keys: pairs.flatMap { [$0.0, 0] },
                        values: pairs.flatMap { withUnsafeBytes(of: $0.1.littleEndian, Array.init) },
                        keySize: 2, valueSize: 4)
        }
        let wide = { (pairs: [(UInt8, UInt64)]) in
            FlatEntries(keys: pairs.flatMap { [$0.0, 0] },
                        values: pairs.flatMap { withUnsafeBytes(of: $0.1.littleEndian, Array.init) },
                        keySize: 2, valueSize: 8)
        }
        // Copied: 1=10, 2=20, 3=30, 4=40. Then the old instance: 2 -> 25, 3 deleted, 5=50 added, 4 -> 44.
        // The new instance meanwhile: 4 -> 41 (from the copied 40), 6=60.
        let before = entries([(1, 10), (2, 20), (3, 30), (4, 40)])
        let after = entries([(1, 10), (2, 25), (4, 44), (5, 50)])
        let current = wide([(1, 10), (2, 20), (3, 30), (4, 41), (6, 60)])
        let plain = try Self.translation(old, new).finalPass(before: before, after: after, current: current, cpus: 1)
        let sorted = { (flat: FlatEntries) in
            (0..<flat.count).map { [flat.keys[$0 * 2], flat.values[$0 * 8]] }.sorted { $0[0] < $1[0] }
        }
        #expect(sorted(plain.updates) == [[2, 25], [5, 50]])
        #expect(plain.deletes == [[3, 0]])
        new.additive = true
        let additive = try Self.translation(old, new).finalPass(before: before, after: after, current: current, cpus: 1)
        // 4: the new instance's 41 plus the old instance's late +4.
        #expect(sorted(additive.updates) == [[2, 25], [4, 45], [5, 50]])
        #expect(try Self.translation(old, new).finalPass(before: before, after: before, current: current, cpus: 1)
            .updates.count == 0)
    }
}
