import CLibBPF

/// A map's shape as state migration compares it: type, sizes, flags, and the key
/// and value fields by BTF name. Built from a live map (the kernel's BTF) or from an
/// object's declaration (the object's BTF); equal layouts can share entries as is.
public struct MapLayout: Sendable, Equatable, Codable {
    /// One field of a key or value. A key or value that is not a struct is one field
    /// with an empty name.
    public struct Field: Sendable, Equatable, Codable {
        public var name: String
        public var offset: Int
        public var size: Int
        /// As C spells it (`__u32`, `struct flow`, `__u8[6]`).
        public var type: String
        /// Integers (and enums) can be widened; everything else is copied only as the same type.
        public var isInteger: Bool
        public var isSigned: Bool
        public var bitfield: Int?

        public init(name: String, offset: Int, size: Int, type: String, isInteger: Bool, isSigned: Bool = false,
                    bitfield: Int? = nil) {
            (self.name, self.offset, self.size, self.type, self.isInteger, self.isSigned, self.bitfield) =
                (name, offset, size, type, isInteger, isSigned, bitfield)
        }
    }

    public var type: UInt32
    public var keySize: Int
    public var valueSize: Int
    public var maxEntries: Int
    public var flags: UInt32
    /// Nil when the map has no BTF for its key or value.
    public var key: [Field]?
    public var value: [Field]?
    /// Values new value fields start with (`TAILOR_STATE_DEFAULT`); absent fields start at zero.
    public var defaults: [String: Int64] = [:]
    /// Whether integer value fields merge by adding (`TAILOR_STATE_ADDITIVE`): counters.
    public var additive = false

    public init(type: MapType, keySize: Int, valueSize: Int, maxEntries: Int, flags: UInt32 = 0,
                key: [Field]?, value: [Field]?, defaults: [String: Int64] = [:], additive: Bool = false) {
        self.type = type.rawValue
        (self.keySize, self.valueSize, self.maxEntries, self.flags) = (keySize, valueSize, maxEntries, flags)
        (self.key, self.value, self.defaults, self.additive) = (key, value, defaults, additive)
    }

    public var mapType: MapType { MapType(rawValue: type) }

    /// The layout without what only matters to a new map (defaults, merge rule).
    public var shape: MapLayout {
        var shape = self
        shape.defaults = [:]
        shape.additive = false
        return shape
    }

    /// The layout of a live map: type, sizes and flags as the kernel reports them
    /// for the descriptor, key and value fields from `recorded` (the declaration
    /// tailor recorded when it made the map). Without a recorded layout the fields
    /// come from the BTF the kernel keeps for the map, which only CAP_SYS_ADMIN may
    /// open by id (`bpf_btf_get_fd_by_id`): recording keeps replacements working
    /// under the daemon's smaller capability set.
    public init(of map: BPFMap, recorded: MapLayout?) throws(KernelError) {
        let key: [Field]?, value: [Field]?
        if let recorded {
            (key, value) = (recorded.key, recorded.value)
        } else {
            let btf = map.info.btfID == nil ? nil : try map.btf()
            key = btf.flatMap { MapLayout.fields(of: map.info.btfKeyTypeID, in: $0) }
            value = btf.flatMap { MapLayout.fields(of: map.info.btfValueTypeID, in: $0) }
        }
        self.init(type: map.info.type, keySize: map.info.keySize, valueSize: map.info.valueSize,
                  maxEntries: map.info.maxEntries, flags: map.info.flags, key: key, value: value)
    }

    /// The layouts of an object's own maps (not libbpf's internal ones), with the
    /// defaults and merge rule their decl tags declare.
    public static func declared(in object: borrowing BPFObject) throws(KernelError) -> [String: MapLayout] {
        let btf = try object.btf()
        let tags = btf.variableTags()
        var layouts: [String: MapLayout] = [:]
        for map in object.maps where !map.isInternal {
            let own = tags[map.name] ?? []
            var defaults: [String: Int64] = [:]
            for tag in own where tag.hasPrefix("tailor:default:") {
                let pair = tag.dropFirst("tailor:default:".count).split(separator: "=", maxSplits: 1)
                if pair.count == 2, let value = Int64(pair[1]) { defaults[String(pair[0])] = value }
            }
            layouts[map.name] = MapLayout(
                type: map.type, keySize: map.keySize, valueSize: map.valueSize, maxEntries: map.maxEntries,
                flags: map.flags, key: fields(of: map.keyType, in: btf), value: fields(of: map.valueType, in: btf),
                defaults: defaults, additive: own.contains("tailor:state:additive"))
        }
        return layouts
    }

    /// The fields of BTF type `id`: a struct's members, or the type itself as one
    /// unnamed field. Nil without a type.
    static func fields(of id: UInt32, in btf: BTF) -> [Field]? {
        guard id != 0 else { return nil }
        switch btf.shape(of: id) {
        case .structure(_, let members):
            return members.map { member in
                field(member.name, offset: member.offset, type: member.type, bitfield: member.bitfieldSize, in: btf)
            }
        default:
            return [field("", offset: 0, type: id, bitfield: nil, in: btf)]
        }
    }

    private static func field(_ name: String, offset: Int, type: UInt32, bitfield: Int?, in btf: BTF) -> Field {
        let size = btf.size(of: type), typeName = btf.typeName(type)
        switch btf.shape(of: type) {
        case .integer(_, let signed):
            return Field(name: name, offset: offset, size: size, type: typeName, isInteger: true, isSigned: signed,
                         bitfield: bitfield)
        case .enumeration:
            return Field(name: name, offset: offset, size: size, type: typeName, isInteger: true, bitfield: bitfield)
        default:
            return Field(name: name, offset: offset, size: size, type: typeName, isInteger: false, bitfield: bitfield)
        }
    }
}
