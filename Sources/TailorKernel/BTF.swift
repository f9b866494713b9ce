import CLibBPF
import Glibc

/// BTF kinds (`BTF_KIND_*`): the kernel's numbers, spelled once here because the C
/// names import into Swift both as an enum and as macros, which Swift finds ambiguous.
public enum BTFKind: UInt32, Sendable {
    case unknown = 0, int, pointer, array, `struct`, union, `enum`, forward, typedef, volatile, const,
         restrict, function, functionPrototype, variable, datasec, float, declTag, typeTag, enum64
}

/// One field of a struct as BTF describes it.
public struct BTFField: Sendable, Equatable, CustomStringConvertible {
    public var name: String
    /// Byte offset within the struct.
    public var offset: Int
    /// Size in bytes (of the whole field; a bitfield reports its storage unit).
    public var size: Int
    /// The field's type as C would spell it: `__u64`, `struct flow`, `__u8[16]`.
    public var typeName: String
    /// The kind after typedefs and qualifiers are looked through.
    public var kind: BTFKind
    /// Width in bits when the field is a bitfield.
    public var bitfieldSize: Int?

    public init(name: String, offset: Int, size: Int, typeName: String, kind: BTFKind, bitfieldSize: Int? = nil) {
        self.name = name
        self.offset = offset
        self.size = size
        self.typeName = typeName
        self.kind = kind
        self.bitfieldSize = bitfieldSize
    }

    public var description: String { "\(typeName) \(name) @\(offset) (\(size) bytes)" }
}

/// What a BTF type is, after typedefs and qualifiers: enough to encode a value of it.
public indirect enum BTFShape: Sendable, Equatable {
    case integer(size: Int, signed: Bool)
    case array(element: UInt32, count: Int)
    case structure(size: Int, fields: [BTFMember])
    case enumeration(size: Int, values: [String: Int64])
    case other(String)
}

/// A member of a struct for encoding: where it is and what type it has.
public struct BTFMember: Sendable, Equatable {
    public var name: String
    public var offset: Int
    public var type: UInt32
    public var bitfieldSize: Int?
}

/// Type information of an object or of a live map (`struct btf`), owned by this value.
public final class BTF {
    private let handle: OpaquePointer
    let label: String

    private init(owning handle: OpaquePointer, label: String) {
        self.handle = handle
        self.label = label
    }

    deinit { btf__free(handle) }

    /// A private copy of `btf` (`btf__raw_data` + `btf__new`), independent of its owner.
    convenience init(copying btf: OpaquePointer, label: String) throws(KernelError) {
        var size: UInt32 = 0
        let raw = btf__raw_data(btf, &size)
        let copy = try check(btf__new(raw, size), "copy BTF of", label)
        self.init(owning: copy, label: label)
    }

    /// Loads BTF the kernel holds (`btf__load_from_kernel_by_id`), such as a map's.
    public convenience init(id: BTFID) throws(KernelError) {
        _ = LibBPFLog.installed
        let btf = try check(btf__load_from_kernel_by_id(id.rawValue), "load BTF", id.description, detail: byIDDetail)
        self.init(owning: btf, label: id.description)
    }

    /// The id of the type named `name` of `kind`, or nil.
    public func typeID(named name: String, kind: BTFKind) -> UInt32? {
        let id = btf__find_by_name_kind(handle, name, kind.rawValue)
        return id > 0 ? UInt32(id) : nil
    }

    func type(_ id: UInt32) -> UnsafePointer<btf_type>? { btf__type_by_id(handle, id) }

    func kind(_ t: UnsafePointer<btf_type>) -> BTFKind { BTFKind(rawValue: UInt32(btf_kind(t))) ?? .unknown }

    func name(_ t: UnsafePointer<btf_type>) -> String {
        btf__name_by_offset(handle, t.pointee.name_off).map { String(cString: $0) } ?? ""
    }

    /// Looks through typedefs and qualifiers to the type that gives the layout.
    func resolved(_ id: UInt32) -> UInt32 {
        var id = id
        while let t = type(id), [.typedef, .volatile, .const, .restrict, .typeTag].contains(kind(t)) {
            id = t.pointee.type
        }
        return id
    }

    /// The C spelling of type `id`.
    public func typeName(_ id: UInt32) -> String {
        guard let t = type(id) else { return "void" }
        switch kind(t) {
        case .struct: return "struct \(name(t))"
        case .union: return "union \(name(t))"
        case .enum, .enum64: return "enum \(name(t))"
        case .pointer: return typeName(t.pointee.type) + " *"
        case .const: return "const " + typeName(t.pointee.type)
        case .volatile: return "volatile " + typeName(t.pointee.type)
        case .array:
            guard let array = btf_array(t) else { return "array" }
            return "\(typeName(array.pointee.type))[\(array.pointee.nelems)]"
        default: return name(t)
        }
    }

    /// Size in bytes of type `id`.
    public func size(of id: UInt32) -> Int { Int(max(0, btf__resolve_size(handle, id))) }

    /// The fields of the struct (or union) with type id `id`, in declaration order.
    public func fields(ofType id: UInt32) throws(KernelError) -> [BTFField] {
        let structID = resolved(id)
        guard let t = type(structID), [.struct, .union].contains(kind(t)), let members = btf_members(t) else {
            throw KernelError(.wrongType, operation: "list fields of type \(id) in", object: label,
                              detail: "it is \(typeName(id)), not a struct")
        }
        return (0..<Int(btf_vlen(t))).map { index in
            let member = members[index]
            let bitfield = Int(btf_member_bitfield_size(t, UInt32(index)))
            let memberType = type(resolved(member.type))
            return BTFField(
                name: btf__name_by_offset(handle, member.name_off).map { String(cString: $0) } ?? "",
                offset: Int(btf_member_bit_offset(t, UInt32(index))) / 8,
                size: size(of: member.type),
                typeName: typeName(member.type),
                kind: memberType.map(kind) ?? .unknown,
                bitfieldSize: bitfield == 0 ? nil : bitfield)

        }
    }

    /// `btf_decl_tag` values attached to global variables (map definitions are
    /// variables), by variable name: how an object marks its maps' roles.
    public func variableTags() -> [String: [String]] {
        var tags: [String: [String]] = [:]
        for id in 1..<btf__type_cnt(handle) {
            guard let t = type(id), kind(t) == .declTag, let target = type(t.pointee.type), kind(target) == .variable
            else { continue }
            tags[name(target), default: []].append(name(t))
        }
        return tags
    }

    /// The shape of type `id`, typedefs and qualifiers looked through.
    public func shape(of id: UInt32) -> BTFShape {
        let resolvedID = resolved(id)
        guard let t = type(resolvedID) else { return .other("void") }
        switch kind(t) {
        case .int:
            let encoding = btf_int_encoding(t)
            return .integer(size: Int(t.pointee.size), signed: encoding & UInt8(BTF_INT_SIGNED) != 0)
        case .array:
            guard let array = btf_array(t) else { return .other("array") }
            return .array(element: array.pointee.type, count: Int(array.pointee.nelems))
        case .struct, .union:
            guard let members = btf_members(t) else { return .other(typeName(id)) }
            return .structure(size: Int(t.pointee.size), fields: (0..<Int(btf_vlen(t))).map { index in
                let bitfield = Int(btf_member_bitfield_size(t, UInt32(index)))
                return BTFMember(
                    name: btf__name_by_offset(handle, members[index].name_off).map { String(cString: $0) } ?? "",
                    offset: Int(btf_member_bit_offset(t, UInt32(index))) / 8, type: members[index].type,
                    bitfieldSize: bitfield == 0 ? nil : bitfield)
            })
        case .enum:
            guard let values = btf_enum(t) else { return .other(typeName(id)) }
            return .enumeration(size: Int(t.pointee.size), values: Dictionary(
                (0..<Int(btf_vlen(t))).map { index in
                    (btf__name_by_offset(handle, values[index].name_off).map { String(cString: $0) } ?? "",
                     Int64(values[index].val))
                }, uniquingKeysWith: { a, _ in a }))
        default:
            return .other(typeName(id))
        }
    }

    /// The type of the `const volatile` global `variable` in the `.rodata` section.
    public func rodataVariableType(_ variable: String) -> UInt32? {
        guard let section = typeID(named: ".rodata", kind: .datasec), let t = type(section),
              let infos = btf_var_secinfos(t) else { return nil }
        for index in 0..<Int(btf_vlen(t)) {
            guard let variableType = type(infos[index].type), name(variableType) == variable else { continue }
            return variableType.pointee.type
        }
        return nil
    }

    /// The fields of `struct name`.
    public func fields(ofStruct name: String) throws(KernelError) -> [BTFField] {
        guard let id = typeID(named: name, kind: .struct) else {
            throw KernelError(.notFound, operation: "find struct \(name) in", object: label)
        }
        return try fields(ofType: id)
    }
}

extension BPFMap {
    /// The map's type information as the kernel holds it, if it was created with BTF.
    public func btf() throws(KernelError) -> BTF {
        guard let id = info.btfID else {
            throw KernelError(.notFound, operation: "read BTF of", object: description,
                              detail: "the map was created without BTF")
        }
        return try BTF(id: id)
    }

    /// The fields of the map's value struct, from the live map's BTF.
    public func valueFields() throws(KernelError) -> [BTFField] {
        try btf().fields(ofType: info.btfValueTypeID)
    }

    /// The fields of the map's key struct, from the live map's BTF.
    public func keyFields() throws(KernelError) -> [BTFField] {
        try btf().fields(ofType: info.btfKeyTypeID)
    }
}
