import CLibBPF
import Glibc

/// A map as declared in an object file, before the object is loaded.
public struct ObjectMap: Sendable, Equatable {
    public var name: String
    public var type: MapType
    public var keySize: Int
    public var valueSize: Int
    public var maxEntries: Int
    /// `BPF_F_*` map flags as declared.
    public var flags: UInt32
    /// libbpf's own maps for global data (.rodata, .bss, .data), not declared by the author.
    public var isInternal: Bool
    /// BTF type ids of the key and value (0 when the map has no BTF types).
    public var keyType: UInt32
    public var valueType: UInt32
}

/// An opened BPF object file (`struct bpf_object`): programs and maps as compiled,
/// ready to be specialised (rodata, map reuse, which programs load) and loaded.
/// The owner closes it, which releases every program and map it loaded unless
/// they were taken out with `program(named:)`/`map(named:)` or pinned.
public struct BPFObject: ~Copyable {
    private let handle: OpaquePointer
    /// A copy of the ELF bytes, which libbpf reads in place until the object is loaded.
    private let image: UnsafeMutableRawBufferPointer
    /// Per-program verifier log buffers, filled only when a load fails.
    private var logs: [String: UnsafeMutableBufferPointer<CChar>] = [:]
    /// Map handles by declared name, taken at open: `bpf_map__reuse_fd` renames a
    /// libbpf map to the kernel's 15-character name.
    private let mapHandles: [String: OpaquePointer]
    private let programHandles: [String: OpaquePointer]
    /// The object's name in errors: the cube type or file it came from.
    public let name: String

    /// Opens an object from its ELF bytes (`bpf_object__open_mem`).
    public init(bytes: [UInt8], name: String) throws(KernelError) {
        _ = LibBPFLog.installed
        let image = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        image.copyBytes(from: bytes)
        let opened: OpaquePointer? = name.withCString { cName in
            withZeroed(bpf_object_open_opts.self) { opts in
                opts.pointee.sz = offsetOfEnd(\bpf_object_open_opts.object_name)
                opts.pointee.object_name = cName
                return bpf_object__open_mem(image.baseAddress, bytes.count, opts)
            }
        }
        guard let opened else {
            let err = errno
            image.deallocate()
            throw KernelError(KernelError.code(for: err), operation: "open BPF object", object: name, errno: err,
                              detail: "not a valid BPF ELF object")
        }
        self.handle = opened
        self.image = image
        self.name = name
        var maps: [String: OpaquePointer] = [:]
        var map = bpf_object__next_map(opened, nil)
        while let current = map {
            maps[String(cString: bpf_map__name(current))] = current
            map = bpf_object__next_map(opened, current)
        }
        var programs: [String: OpaquePointer] = [:]
        var program = bpf_object__next_program(opened, nil)
        while let current = program {
            programs[String(cString: bpf_program__name(current))] = current
            program = bpf_object__next_program(opened, current)
        }
        mapHandles = maps
        programHandles = programs
    }

    /// Opens an object file from disk.
    public init(path: String) throws(KernelError) {
        guard let file = fopen(path, "rb") else {
            throw KernelError(KernelError.code(for: errno), operation: "read BPF object", object: path, errno: errno)
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        try self.init(bytes: bytes, name: path)
    }

    deinit {
        bpf_object__close(handle)
        image.deallocate()
        for buffer in logs.values { buffer.deallocate() }
    }

    /// Names of the programs (functions), sorted.
    public var programNames: [String] { programHandles.keys.sorted() }

    /// Each program's ELF section ("xdp", "tc", ...), which says what it attaches to.
    public var programSections: [String: String] {
        programHandles.mapValues { String(cString: bpf_program__section_name($0)) }
    }

    /// The maps the object declares, its internal global-data maps included, sorted by name.
    public var maps: [ObjectMap] {
        mapHandles.map { name, map in
            ObjectMap(
                name: name, type: MapType(rawValue: bpf_map__type(map).rawValue),
                keySize: Int(bpf_map__key_size(map)), valueSize: Int(bpf_map__value_size(map)),
                maxEntries: Int(bpf_map__max_entries(map)), flags: bpf_map__map_flags(map),
                isInternal: bpf_map__is_internal(map),
                keyType: bpf_map__btf_key_type_id(map), valueType: bpf_map__btf_value_type_id(map))
        }.sorted { $0.name < $1.name }
    }

    private func programHandle(_ program: String) throws(KernelError) -> OpaquePointer {
        guard let handle = programHandles[program] else {
            throw KernelError(.notFound, operation: "find program \(program) in", object: "object \(name)",
                              detail: "it has \(programNames.joined(separator: ", "))")
        }
        return handle
    }

    private func mapHandle(_ map: String) throws(KernelError) -> OpaquePointer {
        guard let handle = mapHandles[map] else {
            throw KernelError(.notFound, operation: "find map \(map) in", object: "object \(name)",
                              detail: "it has \(mapHandles.keys.sorted().joined(separator: ", "))")
        }
        return handle
    }

    /// Loads only the programs named; the others stay in the file (`bpf_program__set_autoload`).
    public func loadOnly(_ programs: Set<String>) throws(KernelError) {
        for program in programs { _ = try programHandle(program) }
        for (program, handle) in programHandles {
            try check(bpf_program__set_autoload(handle, programs.contains(program)),
                      "choose programs to load in", "object \(name)")
        }
    }

    /// Sets the `const volatile` global `variable` to `bytes` before load, so the
    /// verifier sees a constant and prunes what the value turns off.
    public func setRodata(_ variable: String, to bytes: [UInt8]) throws(KernelError) {
        let object = "object \(name)"
        guard let btf = bpf_object__btf(handle),
              let (mapName, offset, size) = rodataVariable(variable, in: btf)
        else {
            throw KernelError(.notFound, operation: "set rodata \(variable) in", object: object,
                              detail: "no `const volatile` global named \(variable)")
        }
        guard size == bytes.count else {
            throw KernelError(.invalidArgument, operation: "set rodata \(variable) in", object: object,
                              detail: "\(variable) is \(size) bytes, the value given is \(bytes.count)")
        }
        let map = try mapHandle(mapName)
        var length = 0
        guard let initial = bpf_map__initial_value(map, &length) else {
            throw KernelError(.notFound, operation: "set rodata \(variable) in", object: object,
                              detail: "the .rodata section has no data")
        }
        var data = Array(UnsafeRawBufferPointer(start: initial, count: length))
        data.replaceSubrange(offset..<offset + size, with: bytes)
        try check(bpf_map__set_initial_value(map, data, data.count), "set rodata \(variable) in", object)
    }

    /// Sets an integer `const volatile` global, in the host's byte order as BPF reads it.
    public func setRodata<T: FixedWidthInteger>(_ variable: String, to value: T) throws(KernelError) {
        try setRodata(variable, to: withUnsafeBytes(of: value, Array.init))
    }

    /// Finds `variable` in the `.rodata` section: the libbpf map holding it, its offset and size.
    private func rodataVariable(_ variable: String, in btf: OpaquePointer) -> (String, Int, Int)? {
        // libbpf names the map for .rodata "<object name prefix>.rodata".
        guard let mapName = mapHandles.keys.first(where: { $0.hasSuffix(".rodata") }) else { return nil }
        let id = btf__find_by_name_kind(btf, ".rodata", BTFKind.datasec.rawValue)
        guard id > 0, let section = btf__type_by_id(btf, UInt32(id)), let infos = btf_var_secinfos(section)
        else { return nil }
        for i in 0..<Int(btf_vlen(section)) {
            let info = infos[i]
            guard let varType = btf__type_by_id(btf, info.type),
                  let cName = btf__name_by_offset(btf, varType.pointee.name_off),
                  String(cString: cName) == variable
            else { continue }
            return (mapName, Int(info.offset), Int(info.size))
        }
        return nil
    }

    /// Makes the object use an existing map (a chain's prog_array, a state map carried
    /// over) instead of creating its own (`bpf_map__reuse_fd`). The kernel checks that
    /// type, sizes and flags agree when the object loads.
    public func reuse(map mapName: String, with map: BPFMap) throws(KernelError) {
        let handle = try mapHandle(mapName)
        try check(bpf_map__reuse_fd(handle, map.fd), "reuse \(map.description) as map \(mapName) of",
                  "object \(name)")
    }

    /// Changes a map's capacity before load (`bpf_map__set_max_entries`).
    public func setMaxEntries(map mapName: String, to entries: Int) throws(KernelError) {
        try check(bpf_map__set_max_entries(try mapHandle(mapName), UInt32(entries)),
                  "set max_entries of map \(mapName) in", "object \(name)")
    }

    /// Creates the maps and loads the programs chosen; the kernel verifies each one.
    /// A rejected program throws `.verifierRejected` with the end of the verifier's log.
    public mutating func load() throws(KernelError) {
        for (program, handle) in programHandles where bpf_program__autoload(handle) {
            // libbpf loads without a log first and, only if the kernel rejects the
            // program, loads again with log level 1 into this buffer.
            let buffer = logs[program] ?? UnsafeMutableBufferPointer<CChar>.allocate(capacity: 1 << 20)
            buffer[0] = 0
            logs[program] = buffer
            try check(bpf_program__set_log_buf(handle, buffer.baseAddress, buffer.count),
                      "set verifier log for", "program \(program)")
        }
        let result = bpf_object__load(handle)
        guard result < 0 else { return }
        let err = -result
        for (program, buffer) in logs.sorted(by: { $0.key < $1.key }) {
            let log = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !log.isEmpty {
                throw KernelError(.verifierRejected, operation: "load program \(program) of",
                                  object: "object \(name)", errno: err,
                                  detail: "the kernel verifier rejected it", verifierLog: trimVerifierLog(log))
            }
        }
        try check(result, "load", "object \(name)")
    }

    /// A loaded program, held by its own descriptor so it outlives this object.
    public func program(named program: String) throws(KernelError) -> Program {
        let fd = try ownDescriptor(bpf_program__fd(try programHandle(program)), of: "program \(program)",
                                   missing: "it is not loaded")
        return Program(adopting: fd, name: "\(name)/\(program)")
    }

    /// A created map, held by its own descriptor so it outlives this object.
    public func map(named mapName: String) throws(KernelError) -> BPFMap {
        let fd = try ownDescriptor(bpf_map__fd(try mapHandle(mapName)), of: "map \(mapName)",
                                   missing: "it is not created; load the object first")
        return try BPFMap(adopting: fd, label: mapName)
    }

    /// A duplicate of libbpf's descriptor `fd` for `what`, which the caller owns.
    private func ownDescriptor(_ fd: Int32, of what: String, missing: String) throws(KernelError) -> Int32 {
        guard fd >= 0 else {
            throw KernelError(.notFound, operation: "take \(what) from", object: "object \(name)", detail: missing)
        }
        return try check(fcntl(fd, F_DUPFD_CLOEXEC, 3), "duplicate descriptor of \(what) in", "object \(name)")
    }

    /// The object's type information, copied so it outlives this object.
    public func btf() throws(KernelError) -> BTF {
        guard let btf = bpf_object__btf(handle) else {
            throw KernelError(.notFound, operation: "read BTF of", object: "object \(name)",
                              detail: "the object was built without -g")
        }
        return try BTF(copying: btf, label: "object \(name)")
    }
}

/// The failing part of a verifier log: its last lines, where the verifier says
/// what it rejected and at which instruction.
func trimVerifierLog(_ log: String, lines: Int = 30) -> String {
    let all = log.split(separator: "\n", omittingEmptySubsequences: true)
    let tail = all.suffix(lines)
    return (all.count > lines ? ["... (\(all.count - lines) earlier lines)"] : []).joined()
        + (all.count > lines ? "\n" : "") + tail.joined(separator: "\n")
}
