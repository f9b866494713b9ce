import CLibBPF
import Glibc

/// What the kernel reports about a map (`bpf_obj_get_info_by_fd`).
public struct MapInfo: Sendable, Equatable {
    public var id: MapID
    public var name: String
    public var type: MapType
    public var keySize: Int
    public var valueSize: Int
    public var maxEntries: Int
    public var flags: UInt32
    public var btfID: BTFID?
    public var btfKeyTypeID: UInt32
    public var btfValueTypeID: UInt32
}

/// How an update treats an existing key (BPF_ANY, BPF_NOEXIST, BPF_EXIST).
public enum UpdateMode: Sendable {
    case any, onlyNew, onlyExisting
    var flags: UInt64 {
        switch self {
        case .any: UInt64(BPF_ANY)
        case .onlyNew: UInt64(BPF_NOEXIST)
        case .onlyExisting: UInt64(BPF_EXIST)
        }
    }
}

/// A BPF map held open by a file descriptor this value owns. Keys and values are
/// raw bytes as the kernel stores them; per-CPU maps take and return one value per
/// possible CPU, each padded to 8 bytes (`valueStride`).
public final class BPFMap: Sendable, CustomStringConvertible {
    let descriptor: Descriptor
    /// The kernel's description of the map, fixed for its lifetime.
    public let info: MapInfo
    /// How the map is named in errors: its name, or its pin path.
    public let label: String

    /// The raw file descriptor, valid while this value lives.
    public var fd: Int32 { descriptor.raw }

    init(adopting fd: Int32, label: String? = nil) throws(KernelError) {
        descriptor = Descriptor(adopting: fd)
        let info = try Self.readInfo(fd, label ?? "fd \(fd)")
        self.info = info
        self.label = label ?? info.name
    }

    /// Opens a map pinned on bpffs (`bpf_obj_get`).
    public convenience init(pinnedAt path: String) throws(KernelError) {
        _ = LibBPFLog.installed
        let fd = try check(bpf_obj_get(path), "open pinned map", path)
        let kind = bpfObjectKind(fd)
        guard kind == "bpf-map" else {
            close(fd)
            throw KernelError(.wrongType, operation: "open pinned map", object: path,
                              detail: "the pin is a \(kind), not a map")
        }
        try self.init(adopting: fd, label: path)
    }

    /// Opens a map by id (`bpf_map_get_fd_by_id`).
    public convenience init(id: MapID) throws(KernelError) {
        _ = LibBPFLog.installed
        let fd = try check(bpf_map_get_fd_by_id(id.rawValue), "open map", id.description, detail: byIDDetail)
        try self.init(adopting: fd)
    }

    /// Creates a map with no BTF (`bpf_map_create`): prog_arrays, and maps whose
    /// layout the controller decides.
    public static func create(
        _ type: MapType, name: String, keySize: Int, valueSize: Int, maxEntries: Int
    ) throws(KernelError) -> BPFMap {
        _ = LibBPFLog.installed
        let fd = try check(
            bpf_map_create(bpf_map_type(type.rawValue), name, UInt32(keySize), UInt32(valueSize),
                           UInt32(maxEntries), nil),
            "create \(type) map", name)
        return try BPFMap(adopting: fd, label: name)
    }

    public var description: String { "map \(label)" }

    private static func readInfo(_ fd: Int32, _ label: String) throws(KernelError) -> MapInfo {
        try withZeroed(bpf_map_info.self) { (info) throws(KernelError) -> MapInfo in
            var length = UInt32(MemoryLayout<bpf_map_info>.size)
            try check(bpf_obj_get_info_by_fd(fd, info, &length), "read info of map", label)
            let i = info.pointee
            return MapInfo(
                id: MapID(rawValue: i.id), name: string(fromCArray: i.name), type: MapType(rawValue: i.type),
                keySize: Int(i.key_size), valueSize: Int(i.value_size), maxEntries: Int(i.max_entries),
                flags: i.map_flags, btfID: i.btf_id == 0 ? nil : BTFID(rawValue: i.btf_id),
                btfKeyTypeID: i.btf_key_type_id, btfValueTypeID: i.btf_value_type_id)
        }
    }

    /// Bytes of one CPU's value inside a per-CPU value buffer.
    public var valueStride: Int { info.type.isPerCPU ? (info.valueSize + 7) & ~7 : info.valueSize }

    /// Bytes a lookup returns and an update takes for one key.
    public var valueBufferSize: Int { info.type.isPerCPU ? valueStride * Self.possibleCPUs : info.valueSize }

    /// `libbpf_num_possible_cpus`: per-CPU maps have a value slot for each.
    public static let possibleCPUs: Int = Int(max(1, libbpf_num_possible_cpus()))

    private func checkSizes(key: [UInt8], value: [UInt8]? = nil, _ operation: String) throws(KernelError) {
        guard key.count == info.keySize else {
            throw KernelError(.invalidArgument, operation: operation, object: description,
                              detail: "key is \(key.count) bytes, the map's keys are \(info.keySize)")
        }
        if let value, value.count != valueBufferSize {
            throw KernelError(.invalidArgument, operation: operation, object: description,
                              detail: "value is \(value.count) bytes, the map's values are \(valueBufferSize)")
        }
    }

    /// The value stored under `key`, or nil if there is none (`bpf_map_lookup_elem`).
    public func lookup(_ key: [UInt8]) throws(KernelError) -> [UInt8]? {
        try checkSizes(key: key, "look up entry in")
        var value = [UInt8](repeating: 0, count: valueBufferSize)
        let result = bpf_map_lookup_elem(fd, key, &value)
        if result == -ENOENT { return nil }
        try check(result, "look up entry in", description)
        return value
    }

    /// Stores `value` under `key` (`bpf_map_update_elem`). A full map is reported
    /// with its fill level.
    public func update(_ key: [UInt8], _ value: [UInt8], mode: UpdateMode = .any) throws(KernelError) {
        try checkSizes(key: key, value: value, "update entry in")
        let result = bpf_map_update_elem(fd, key, value, mode.flags)
        if result == -E2BIG { throw fullError("update entry in") }
        try check(result, "update entry in", description)
    }

    /// Removes `key`; false if it was not there (`bpf_map_delete_elem`).
    @discardableResult
    public func delete(_ key: [UInt8]) throws(KernelError) -> Bool {
        try checkSizes(key: key, "delete entry in")
        let result = bpf_map_delete_elem(fd, key)
        if result == -ENOENT { return false }
        try check(result, "delete entry in", description)
        return true
    }

    /// Every key, in the kernel's iteration order (`bpf_map_get_next_key`).
    public func keys() throws(KernelError) -> [[UInt8]] {
        var keys: [[UInt8]] = []
        var next = [UInt8](repeating: 0, count: info.keySize)
        var result = bpf_map_get_next_key(fd, nil, &next)
        while result == 0 {
            keys.append(next)
            let current = next
            result = bpf_map_get_next_key(fd, current, &next)
        }
        if result != -ENOENT { try check(result, "iterate keys of", description) }
        return keys
    }

    /// Every entry, read one key at a time. Entries deleted during the walk are skipped.
    public func entries() throws(KernelError) -> [(key: [UInt8], value: [UInt8])] {
        var entries: [(key: [UInt8], value: [UInt8])] = []
        for key in try keys() {
            if let value = try lookup(key) { entries.append((key, value)) }
        }
        return entries
    }

    /// The number of entries present (arrays always hold max_entries).
    public func count() throws(KernelError) -> Int {
        info.type.isArray ? info.maxEntries : try keys().count
    }

    private func fullError(_ operation: String) -> KernelError {
        let entries = (try? count()) ?? -1
        return KernelError(
            .mapFull(entries: entries, capacity: info.maxEntries), operation: operation, object: description,
            errno: E2BIG, detail: "map \(label) is full (\(entries)/\(info.maxEntries)); raise its max_entries")
    }

    // Batch operations: one syscall per chunk of entries.

    private func withBatchOptions<R>(
        elementFlags: UInt64 = 0, _ body: (UnsafePointer<bpf_map_batch_opts>) throws(KernelError) -> R
    ) throws(KernelError) -> R {
        try withZeroed(bpf_map_batch_opts.self) { (opts) throws(KernelError) -> R in
            opts.pointee.sz = offsetOfEnd(\bpf_map_batch_opts.flags)
            opts.pointee.elem_flags = elementFlags
            return try body(opts)
        }
    }

    /// Every entry, read in chunks of `chunk` (`bpf_map_lookup_batch`).
    public func lookupBatch(chunk: Int = 256) throws(KernelError) -> [(key: [UInt8], value: [UInt8])] {
        let all = try readAll(chunk: chunk)
        return (0..<all.count).map { i in
            (Array(all.keys[i * all.keySize..<(i + 1) * all.keySize]),
             Array(all.values[i * all.valueSize..<(i + 1) * all.valueSize]))
        }
    }

    /// Every entry into two flat buffers, `chunk` entries per syscall
    /// (`bpf_map_lookup_batch`): the fast path for copying whole maps.
    public func readAll(chunk: Int = 4096) throws(KernelError) -> FlatEntries {
        let keySize = info.keySize, valueSize = valueBufferSize
        var chunk = chunk
        var keys = [UInt8](repeating: 0, count: keySize * chunk)
        var values = [UInt8](repeating: 0, count: valueSize * chunk)
        // The batch cursor is opaque to user space: the key size for arrays, 4 bytes for hash maps.
        var cursor = [UInt8](repeating: 0, count: max(keySize, 8))
        var all = FlatEntries(keySize: keySize, valueSize: valueSize)
        var first = true
        while true {
            var count = UInt32(chunk)
            let result = try withBatchOptions { (opts) throws(KernelError) -> Int32 in
                cursor.withUnsafeMutableBytes { cur in
                    keys.withUnsafeMutableBytes { k in
                        values.withUnsafeMutableBytes { v in
                            bpf_map_lookup_batch(fd, first ? nil : cur.baseAddress, cur.baseAddress,
                                                 k.baseAddress, v.baseAddress, &count, opts)
                        }
                    }
                }
            }
            if result == -ENOSPC {
                // A hash bucket holds more entries than one chunk: retry it with room for them.
                chunk *= 2
                keys = [UInt8](repeating: 0, count: keySize * chunk)
                values = [UInt8](repeating: 0, count: valueSize * chunk)
                continue
            }
            if first && [-EINVAL, -EOPNOTSUPP, -524].contains(result) {
                // Map types without batch lookup (LPM tries, prog_arrays; 524 is ENOTSUPP): key by key.
                for (key, value) in try entries() {
                    all.keys += key
                    all.values += value
                }
                return all
            }
            first = false
            // The kernel ends a walk with ENOENT while still returning the last entries.
            if result < 0 && result != -ENOENT { try check(result, "batch look up entries in", description) }
            let got = min(Int(count), chunk)
            all.keys.append(contentsOf: keys[0..<got * keySize])
            all.values.append(contentsOf: values[0..<got * valueSize])
            if result == -ENOENT || count == 0 { return all }
        }
    }

    /// Stores every entry, in chunks (`bpf_map_update_batch`).
    public func updateBatch(_ entries: [(key: [UInt8], value: [UInt8])], mode: UpdateMode = .any) throws(KernelError) {
        for entry in entries { try checkSizes(key: entry.key, value: entry.value, "batch update entries in") }
        try writeAll(FlatEntries(keys: entries.flatMap(\.key), values: entries.flatMap(\.value),
                                 keySize: info.keySize, valueSize: valueBufferSize), mode: mode)
    }

    /// Stores flat entries, `chunk` per syscall (`bpf_map_update_batch`).
    public func writeAll(_ entries: FlatEntries, mode: UpdateMode = .any, chunk: Int = 4096) throws(KernelError) {
        guard entries.keySize == info.keySize, entries.valueSize == valueBufferSize else {
            throw KernelError(.invalidArgument, operation: "batch update entries in", object: description,
                              detail: "entries are \(entries.keySize)/\(entries.valueSize) bytes, the map's "
                                + "\(info.keySize)/\(valueBufferSize)")
        }
        var start = 0
        while start < entries.count {
            let n = min(chunk, entries.count - start)
            var count = UInt32(n)
            let result = try withBatchOptions(elementFlags: mode.flags) { (opts) throws(KernelError) -> Int32 in
                entries.keys.withUnsafeBytes { k in
                    entries.values.withUnsafeBytes { v in
                        bpf_map_update_batch(fd, k.baseAddress! + start * entries.keySize,
                                             v.baseAddress! + start * entries.valueSize, &count, opts)
                    }
                }
            }
            if result == -E2BIG { throw fullError("batch update entries in") }
            try check(result, "batch update entries in", description,
                      detail: { _ in "\(start + Int(count)) of \(entries.count) entries were written" })
            start += n
        }
    }

    /// Removes every key given (`bpf_map_delete_batch`); all must exist.
    public func deleteBatch(_ keys: [[UInt8]]) throws(KernelError) {
        guard !keys.isEmpty else { return }
        for key in keys { try checkSizes(key: key, "batch delete entries in") }
        let flat = keys.flatMap { $0 }
        var count = UInt32(keys.count)
        let result = try withBatchOptions { (opts) throws(KernelError) -> Int32 in
            bpf_map_delete_batch(fd, flat, &count, opts)
        }
        try check(result, "batch delete entries in", description,
                  detail: { _ in "\(count) of \(keys.count) entries were deleted" })
    }

    /// Pins the map at `path` on bpffs (`bpf_obj_pin`).
    public func pin(at path: String) throws(KernelError) {
        try check(bpf_obj_pin(fd, path), "pin", "\(description) at \(path)")
    }
}

/// Map entries in two flat buffers, as batch operations take them: `count` keys of
/// `keySize` bytes, and their values of `valueSize` bytes (all CPUs' for per-CPU maps).
public struct FlatEntries: Sendable, Equatable {
    public var keys: [UInt8]
    public var values: [UInt8]
    public let keySize: Int
    public let valueSize: Int

    public init(keys: [UInt8] = [], values: [UInt8] = [], keySize: Int, valueSize: Int) {
        (self.keys, self.values, self.keySize, self.valueSize) = (keys, values, keySize, valueSize)
    }

    public var count: Int { keySize == 0 ? 0 : keys.count / keySize }
}

extension BPFMap {
    /// Splits a per-CPU value buffer into one value per CPU.
    public func perCPUValues(_ buffer: [UInt8]) -> [[UInt8]] {
        stride(from: 0, to: buffer.count, by: valueStride).map {
            Array(buffer[$0..<$0 + info.valueSize])
        }
    }
}
