import Crypto
import Foundation
import TailorDatapath
import TailorKernel
import TailorSpec

/// object: any BPF object built against the cube ABI, given by path and sha256,
/// with its rodata and table entries written in YAML by field name and encoded
/// through the object's own BTF (see BTFEncoder).
public enum ObjectCube {
    public static let schema = CubeTypeSchema(
        name: "object",
        doc: "A BPF object file (with BTF, built against tailor/cube.h) given by path and sha256.",
        config: Config.fields)

    /// An `object` config as the spec writes it: rodata and tables stay YAML,
    /// encoded through the object's BTF.
    struct Config: ConfigObject {
        static let path = ConfigKey("path", .string)
        static let sha256 = ConfigKey("sha256", .string)
        static let rodata = ConfigKey("rodata", .yaml(description: "`const volatile` globals by name, encoded through BTF."))
        static let tables = ConfigKey("tables", .yaml(description: "Map name -> list of {key, value}, encoded through BTF."))
        static let fields = [
            ConfigField(path, required: true,
                        doc: "The object file, relative to the spec file; it must lie inside the spec directory."),
            ConfigField(sha256, required: true, doc: "sha256 of the file, 64 hex digits."),
            ConfigField(rodata, doc: "`const volatile` globals by name."),
            ConfigField(tables, doc: "Entries of the object's table maps (TAILOR_TABLE)."),
        ]

        var path: String
        var sha256: String
        var rodata: YAMLNode?
        var tables: YAMLNode?

        init(_ config: ConfigReader) throws {
            path = try config.required(Self.path)
            sha256 = try config.required(Self.sha256)
            rodata = try config[Self.rodata]
            tables = try config[Self.tables]
        }
    }

    static func blueprint(config: Config, source: CubeSource) throws -> CubeBlueprint {
        let path = try resolve(config.path, source: source)
        let declared = config.sha256.lowercased()
        guard declared.count == 64, declared.allSatisfy(\.isHexDigit) else {
            throw CubeConfigError("sha256 must be 64 hex digits", at: [.key(Config.sha256)])
        }
        let (bytes, digest) = try read(path)
        guard declared == digest else {
            throw CubeConfigError("the object file \(path) has sha256 \(digest), not the \(declared) the spec pins",
                                  at: [.key(Config.sha256)])
        }
        let object = try objectFile { try BPFObject(bytes: bytes, name: path) }
        let btf = try objectFile { try object.btf() }
        let encoder = BTFEncoder(btf: btf)
        var rodata: [String: [UInt8]] = [:]
        // The config in the plan's words: names in the spec's order, entries by key.
        var rodataWords: [ConfigDocument.Field] = [], tableWords: [ConfigDocument.Field] = []
        if let node = config.rodata {
            for (name, value) in try pairs(node, "rodata") {
                rodataWords.append(ConfigDocument.Field(name, document(value)))
                guard let type = btf.rodataVariableType(name) else {
                    throw CubeConfigError("the object has no `const volatile` global '\(name)'", at: value.location)
                }
                rodata[name] = try encoder.encode(value, as: type, what: name)
            }
        }
        var tables: [String: [TableEntry]] = [:]
        if let node = config.tables {
            let tags = btf.variableTags()
            let maps = object.maps
            for (name, list) in try pairs(node, "tables") {
                guard let map = maps.first(where: { $0.name == name && !$0.isInternal }) else {
                    throw CubeConfigError("the object has no map '\(name)'", at: list.location)
                }
                guard tags[name]?.contains(where: { $0.hasPrefix("tailor:table") }) == true else {
                    throw CubeConfigError("map '\(name)' is not marked TAILOR_TABLE: the controller fills only tables",
                                          at: list.location)
                }
                guard !map.type.isPerCPU, map.keyType != 0, map.valueType != 0 else {
                    throw CubeConfigError("map '\(name)' is per-CPU or has no BTF key/value types; "
                                          + "the spec cannot fill it", at: list.location)
                }
                guard case .sequence(let items) = list.value else {
                    throw CubeConfigError("expected a list of {key, value} entries for table '\(name)'",
                                          at: list.location)
                }
                guard items.count <= map.maxEntries else {
                    throw CubeConfigError("table '\(name)' holds \(map.maxEntries) entries; \(items.count) are given",
                                          at: list.location)
                }
                var entries: [String: ConfigDocument] = [:]
                tables[name] = try items.map { item in
                    let fields = Dictionary(try pairs(item, "a \(name) entry"), uniquingKeysWith: { a, _ in a })
                    guard let key = fields["key"], let value = fields["value"], fields.count == 2 else {
                        throw CubeConfigError("each entry of table '\(name)' has exactly 'key' and 'value'",
                                              at: item.location)
                    }
                    entries[document(key).flow] = document(value)
                    return TableEntry(key: try encoder.encode(key, as: map.keyType, what: "\(name) key"),
                                      value: try encoder.encode(value, as: map.valueType, what: "\(name) value"))
                }
                tableWords.append(ConfigDocument.Field(name, .map(entries)))
            }
        }
        var blueprint = CubeBlueprint(type: "object", object: bytes, objectDigest: digest, rodata: rodata, tables: tables)
        blueprint.config = .attributes([
            Config.path.name: .string(config.path), Config.sha256.name: .string(declared),
            Config.rodata.name: rodataWords.isEmpty ? nil : .fields(rodataWords),
            Config.tables.name: tableWords.isEmpty ? nil : .fields(tableWords),
        ])
        return blueprint
    }

    /// A YAML value of the spec in the plan's terms: unquoted integers and booleans
    /// as such, other scalars as text, mappings in their order.
    static func document(_ node: YAMLNode) -> ConfigDocument {
        switch node.value {
        case .scalar(let text):
            if !node.isQuoted, let number = Int(text) { return .int(number) }
            if !node.isQuoted, text == "true" || text == "false" { return .bool(text == "true") }
            return .string(text)
        case .sequence(let items):
            return .list(items.map(document))
        case .mapping(let pairs):
            return .fields(pairs.map { ConfigDocument.Field(document($0.key).flow, document($0.value)) })
        }
    }

    /// Tables marked entry-safe in the object change in place; entries show in hex.
    static let words = CubeWords(inPlace: { path, entrySafe in
        path.count > 1 && path[0] == Config.tables.name && entrySafe.contains(path[1])
    })

    /// The largest object file read: the kernel verifies at most a million instructions
    /// (8 MiB), and BTF and line info rarely double that.
    public static let maxObjectBytes = 16 << 20

    /// The object file's bytes and their sha256, hashed while reading; a FIFO, device
    /// or file over `maxObjectBytes` is refused before it is read.
    static func read(_ path: String) throws -> (bytes: [UInt8], digest: String) {
        var hash = SHA256()
        do {
            let bytes = try BoundedFile.read(path, limit: maxObjectBytes) { hash.update(bufferPointer: $0) }
            return (bytes, hexDigest(hash.finalize()))
        } catch {
            let problem = switch error {
            case .cannotOpen(let reason), .cannotRead(let reason): "cannot read the object file \(path): \(reason)"
            case .notRegular: "the object file \(path) is not a regular file (a FIFO, device or directory)"
            case .tooLarge(let size):
                "the object file \(path) is \(size) bytes; object files may be at most \(maxObjectBytes) (16 MiB)"
            }
            throw CubeConfigError(problem, at: [.key(Config.path)])
        }
    }

    /// What `body` makes of the object file; what it throws (not an ELF object, no
    /// BTF) is an error at the spec's `path`.
    private static func objectFile<Result: ~Copyable>(_ body: () throws -> Result) throws -> Result {
        do { return try body() } catch { throw CubeConfigError("\(error)", at: [.key(Config.path)]) }
    }

    /// The object's path, relative to the spec file, refused when it leaves the spec directory.
    static func resolve(_ path: String, source: CubeSource) throws -> String {
        let directory = (source.file as NSString).deletingLastPathComponent
        let candidate = path.hasPrefix("/") ? path : (directory as NSString).appendingPathComponent(path)
        let resolved = URL(fileURLWithPath: candidate).resolvingSymlinksInPath().standardizedFileURL.path
        let root = URL(fileURLWithPath: source.specRoot).resolvingSymlinksInPath().standardizedFileURL.path
        guard resolved.hasPrefix(root + "/") else {
            throw CubeConfigError("object path '\(path)' leads outside the spec directory \(root)", at: [.key(Config.path)])
        }
        return resolved
    }

    private static func pairs(_ node: YAMLNode, _ what: String) throws -> [(String, YAMLNode)] {
        guard case .mapping(let pairs) = node.value else {
            throw CubeConfigError("expected a mapping for \(what), found \(node.kindName)", at: node.location)
        }
        return try pairs.map { key, value in
            guard case .scalar(let name) = key.value else {
                throw CubeConfigError("keys of \(what) must be plain names", at: key.location)
            }
            return (name, value)
        }
    }
}
