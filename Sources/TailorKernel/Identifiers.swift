import CLibBPF

/// The kernel's id of a loaded BPF program (stable while the program lives).
public struct ProgramID: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "prog \(rawValue)" }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// The kernel's id of a BPF map.
public struct MapID: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "map \(rawValue)" }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// The kernel's id of a loaded BTF object (type information of a program or map).
public struct BTFID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "btf \(rawValue)" }
}

/// A network interface index, meaningful only inside the namespace it was resolved in.
public struct InterfaceIndex: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public var description: String { "ifindex \(rawValue)" }
}

/// A BPF program type (`enum bpf_prog_type`), printed with libbpf's name for it.
public struct ProgramType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let xdp = ProgramType(rawValue: BPF_PROG_TYPE_XDP.rawValue)
    public static let schedCls = ProgramType(rawValue: BPF_PROG_TYPE_SCHED_CLS.rawValue)
    /// `libbpf_bpf_prog_type_str`.
    public var description: String {
        libbpf_bpf_prog_type_str(bpf_prog_type(rawValue)).map { String(cString: $0) } ?? "type \(rawValue)"
    }
}

/// A BPF map type (`enum bpf_map_type`), printed with libbpf's name for it.
public struct MapType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let hash = MapType(rawValue: BPF_MAP_TYPE_HASH.rawValue)
    public static let array = MapType(rawValue: BPF_MAP_TYPE_ARRAY.rawValue)
    public static let programArray = MapType(rawValue: BPF_MAP_TYPE_PROG_ARRAY.rawValue)
    public static let perCPUHash = MapType(rawValue: BPF_MAP_TYPE_PERCPU_HASH.rawValue)
    public static let perCPUArray = MapType(rawValue: BPF_MAP_TYPE_PERCPU_ARRAY.rawValue)
    public static let lruHash = MapType(rawValue: BPF_MAP_TYPE_LRU_HASH.rawValue)
    public static let lruPerCPUHash = MapType(rawValue: BPF_MAP_TYPE_LRU_PERCPU_HASH.rawValue)
    public static let lpmTrie = MapType(rawValue: BPF_MAP_TYPE_LPM_TRIE.rawValue)
    public static let arrayOfMaps = MapType(rawValue: BPF_MAP_TYPE_ARRAY_OF_MAPS.rawValue)

    /// Per-CPU maps hold one value per possible CPU for each key.
    public var isPerCPU: Bool {
        [.perCPUHash, .perCPUArray, .lruPerCPUHash,
         MapType(rawValue: BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE.rawValue)].contains(self)
    }

    /// Arrays have every key from 0 to max_entries-1; entries cannot be deleted.
    public var isArray: Bool { [.array, .perCPUArray, .programArray, .arrayOfMaps].contains(self) }

    /// `libbpf_bpf_map_type_str`.
    public var description: String {
        libbpf_bpf_map_type_str(bpf_map_type(rawValue)).map { String(cString: $0) } ?? "type \(rawValue)"
    }
}
