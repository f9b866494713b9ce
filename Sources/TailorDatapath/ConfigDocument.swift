import Crypto

/// A cube's config as its cube type normalised it: defaults filled in, every value
/// spelled one way (`proto: tcp`, not `6`; prefixes as networks), sets sorted. It is
/// recorded with the chain when the cube is committed (`ConfigStore`), so a later
/// plan can show what changes attribute by attribute, with old values taken from
/// what is live rather than from a file that may not match it.
///
/// The kinds of container say how the plan compares them: a `list` is ordered
/// (rules), a `set` is not (a drop list), `fields` are named attributes and a `map`
/// holds entries by key (a table's). The canonical JSON keeps values only, so a
/// document read back from the store has lists and fields where the cube type had
/// sets and maps; the planner takes the kinds from the desired document.
public indirect enum ConfigDocument: Sendable, Hashable {
    case bool(Bool)
    case int(Int)
    case string(String)
    /// Items in order: an insert moves every later item one on.
    case list([ConfigDocument])
    /// Items whose order means nothing; encoded sorted and without repeats.
    case set([ConfigDocument])
    /// Named attributes, in the order the cube type declares them.
    case fields([Field])
    /// Entries by key; encoded sorted by key.
    case map([String: ConfigDocument])

    /// One named attribute of a `fields` document.
    public struct Field: Sendable, Hashable {
        public var name: String
        public var value: ConfigDocument
        public init(_ name: String, _ value: ConfigDocument) {
            self.name = name
            self.value = value
        }
    }

    /// `fields` from pairs in order, leaving out the attributes that are nil.
    public static func attributes(_ pairs: KeyValuePairs<String, ConfigDocument?>) -> ConfigDocument {
        .fields(pairs.compactMap { name, value in value.map { Field(name, $0) } })
    }

    /// The value of attribute `name` of a `fields` or `map` document.
    public subscript(_ name: String) -> ConfigDocument? {
        switch self {
        case .fields(let fields): fields.first { $0.name == name }?.value
        case .map(let entries): entries[name]
        default: nil
        }
    }

    /// Items of a list or set.
    public var items: [ConfigDocument]? {
        switch self {
        case .list(let items), .set(let items): items
        default: nil
        }
    }

    /// Named members of `fields` or `map`, in the order they are shown: declared
    /// order for fields, key order for maps.
    public var members: [Field]? {
        switch self {
        case .fields(let fields): fields
        case .map(let entries): entries.sorted { $0.key < $1.key }.map { Field($0.key, $0.value) }
        default: nil
        }
    }

    public var isContainer: Bool { items != nil || members != nil }
}

// MARK: - Flow text

extension ConfigDocument {
    /// The document on one line, as YAML flow style writes it (what plans show):
    /// `{match: {proto: tcp, dport: 443}, action: accept}`. Strings are quoted only
    /// where YAML would read them otherwise.
    public var flow: String {
        switch self {
        case .bool(let value): "\(value)"
        case .int(let value): "\(value)"
        case .string(let value): Self.flowScalar(value)
        case .list(let items), .set(let items): "[" + items.map(\.flow).joined(separator: ", ") + "]"
        case .fields, .map:
            "{" + (members ?? []).map { "\(Self.flowScalar($0.name)): \($0.value.flow)" }.joined(separator: ", ") + "}"
        }
    }

    /// `text` plain, or JSON-quoted when it is empty, holds flow indicators or a
    /// comment, or would read as a number, boolean or null. Byte by byte: a created
    /// firewall's plan writes 10,000 rules of these.
    static func flowScalar(_ text: String) -> String {
        let bytes = text.utf8
        guard let first = bytes.first, let last = bytes.last else { return quoted(text) }
        var previous: UInt8 = 0
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: ","),
                 UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "#"), UInt8(ascii: "&"), UInt8(ascii: "*"),
                 UInt8(ascii: "!"), UInt8(ascii: "|"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "@"),
                 UInt8(ascii: "`"), 0..<0x20:
                return quoted(text)
            case UInt8(ascii: " ") where previous == UInt8(ascii: ":"):
                return quoted(text)
            default:
                previous = byte
            }
        }
        let special = first == UInt8(ascii: " ") || last == UInt8(ascii: " ") || first == UInt8(ascii: "-")
            || first == UInt8(ascii: "?") || last == UInt8(ascii: ":")
            || ((UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) && Int(text) != nil)
            || Self.reserved.contains(text.lowercased())
        return special ? quoted(text) : text
    }

    /// Words YAML reads as booleans or null.
    static let reserved: Set<String> = ["true", "false", "null", "~", "yes", "no", "on", "off"]
}

// MARK: - Canonical JSON

extension ConfigDocument {
    /// The canonical JSON: no whitespace, fields in declared order, map keys and set
    /// items sorted (by their encoding), integers as numbers. Equal documents give
    /// equal bytes, so the bytes' sha256 identifies the config (`digest`).
    public var canonicalJSON: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    /// The sha256 of the canonical JSON, as `CubeRecord.configDigest` holds it.
    public static func digest(of json: [UInt8]) -> String { hexDigest(SHA256.hash(data: json)) }

    func encode(into out: inout [UInt8]) {
        switch self {
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .int(let value): out.append(contentsOf: String(value).utf8)
        case .string(let value): Self.encodeString(value, into: &out)
        case .list(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                item.encode(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .set(let items):
            let encoded = Set(items.map(\.canonicalJSON)).sorted { $0.lexicographicallyPrecedes($1) }
            out.append(UInt8(ascii: "["))
            out += encoded.joined(separator: [UInt8(ascii: ",")])
            out.append(UInt8(ascii: "]"))
        case .fields(let fields):
            Self.encodeObject(fields.map { ($0.name, $0.value) }, into: &out)
        case .map(let entries):
            Self.encodeObject(entries.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, into: &out)
        }
    }

    private static func encodeObject(_ members: [(String, ConfigDocument)], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        for (index, (name, value)) in members.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            encodeString(name, into: &out)
            out.append(UInt8(ascii: ":"))
            value.encode(into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// `text` as a JSON string literal: how plans quote keys in paths (`drop["10.0.0.0/8"]`).
    public static func quoted(_ text: String) -> String {
        var out: [UInt8] = []
        encodeString(text, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// A JSON string: quotes, backslashes and control characters escaped, the rest as UTF-8.
    static func encodeString(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Config words rarely need escapes: copy them whole (a firewall has 10,000 rules of them).
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out.append(contentsOf: text.utf8)
            out.append(UInt8(ascii: "\""))
            return
        }
        let hex = Array("0123456789abcdef".utf8)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), byte]
            case 0x0a: out += Array("\\n".utf8)
            case 0x09: out += Array("\\t".utf8)
            case 0..<0x20: out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xf)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Reads JSON as the store holds it: objects become `fields` in their order,
    /// arrays `list`s. Numbers must be integers: configs hold no others.
    public init(json: [UInt8]) throws {
        var parser = JSONParser(bytes: json)
        self = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.position == json.count else { throw parser.error("text after the value") }
    }
}

/// What is wrong with recorded config JSON, and where.
public struct ConfigJSONError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// A recursive-descent JSON reader that keeps object members in their order
/// (Foundation's does not), for `ConfigDocument(json:)`.
private struct JSONParser {
    let bytes: [UInt8]
    var position = 0
    /// Deeper nesting than any cube config has is refused rather than recursed into.
    static let maxDepth = 64

    init(bytes: [UInt8]) { self.bytes = bytes }

    func error(_ what: String) -> ConfigJSONError {
        ConfigJSONError(description: "invalid config JSON at byte \(position): \(what)")
    }

    mutating func skipSpace() {
        while position < bytes.count, [0x20, 0x0a, 0x0d, 0x09].contains(bytes[position]) { position += 1 }
    }

    mutating func expect(_ byte: UInt8) throws {
        skipSpace()
        guard position < bytes.count, bytes[position] == byte else {
            throw error("expected '\(Character(Unicode.Scalar(byte)))'")
        }
        position += 1
    }

    /// Whether the next byte (after space) is `byte`; consumes it if so.
    mutating func take(_ byte: UInt8) -> Bool {
        skipSpace()
        guard position < bytes.count, bytes[position] == byte else { return false }
        position += 1
        return true
    }

    mutating func value(depth: Int) throws -> ConfigDocument {
        guard depth < Self.maxDepth else { throw error("nested deeper than \(Self.maxDepth)") }
        skipSpace()
        guard position < bytes.count else { throw error("unexpected end") }
        switch bytes[position] {
        case UInt8(ascii: "{"):
            position += 1
            var fields: [ConfigDocument.Field] = []
            if take(UInt8(ascii: "}")) { return .fields(fields) }
            repeat {
                skipSpace()
                let name = try string()
                try expect(UInt8(ascii: ":"))
                fields.append(ConfigDocument.Field(name, try value(depth: depth + 1)))
            } while take(UInt8(ascii: ","))
            try expect(UInt8(ascii: "}"))
            return .fields(fields)
        case UInt8(ascii: "["):
            position += 1
            var items: [ConfigDocument] = []
            if take(UInt8(ascii: "]")) { return .list(items) }
            repeat { items.append(try value(depth: depth + 1)) } while take(UInt8(ascii: ","))
            try expect(UInt8(ascii: "]"))
            return .list(items)
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            for (word, value) in [("true", true), ("false", false)] where bytes[position...].starts(with: word.utf8) {
                position += word.utf8.count
                return .bool(value)
            }
            throw error("unknown word")
        default:
            let start = position
            if bytes[position] == UInt8(ascii: "-") { position += 1 }
            while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) {
                position += 1
            }
            guard let number = Int(String(decoding: bytes[start..<position], as: UTF8.self)) else {
                throw error("expected a value")
            }
            return .int(number)
        }
    }

    mutating func string() throws -> String {
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw error("expected a string") }
        position += 1
        // Most strings have no escapes: taken whole.
        let start = position
        while position < bytes.count, bytes[position] != UInt8(ascii: "\\") {
            if bytes[position] == UInt8(ascii: "\"") {
                position += 1
                return String(decoding: bytes[start..<position - 1], as: UTF8.self)
            }
            position += 1
        }
        position = start
        var out: [UInt8] = []
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard position < bytes.count else { break }
                let escape = bytes[position]
                position += 1
                switch escape {
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xd800..<0xdc00).contains(scalar), bytes[position...].starts(with: "\\u".utf8) {
                        position += 2
                        scalar = 0x10000 + ((scalar - 0xd800) << 10) + (try hex4() - 0xdc00)
                    }
                    guard let character = Unicode.Scalar(scalar) else { throw error("bad \\u escape") }
                    out += Array(String(Character(character)).utf8)
                default: out.append(escape)
                }
            default:
                out.append(byte)
            }
        }
        throw error("unterminated string")
    }

    mutating func hex4() throws -> UInt32 {
        guard position + 4 <= bytes.count,
              let value = UInt32(String(decoding: bytes[position..<position + 4], as: UTF8.self), radix: 16)
        else { throw error("bad \\u escape") }
        position += 4
        return value
    }
}

// MARK: - Plan JSON

/// In a plan's JSON a document is the plain JSON value (the kinds are not kept).
extension ConfigDocument: Codable {
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .bool(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .int(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .string(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .list(let items), .set(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        case .fields, .map:
            var container = encoder.container(keyedBy: Key.self)
            for member in members ?? [] { try container.encode(member.value, forKey: Key(stringValue: member.name)) }
        }
    }

    public init(from decoder: any Decoder) throws {
        if let container = try? decoder.container(keyedBy: Key.self) {
            self = .fields(try container.allKeys.sorted { $0.stringValue < $1.stringValue }.map {
                Field($0.stringValue, try container.decode(ConfigDocument.self, forKey: $0))
            })
        } else if var container = try? decoder.unkeyedContainer() {
            var items: [ConfigDocument] = []
            while !container.isAtEnd { items.append(try container.decode(ConfigDocument.self)) }
            self = .list(items)
        } else {
            let container = try decoder.singleValueContainer()
            if let value = try? container.decode(Bool.self) {
                self = .bool(value)
            } else if let value = try? container.decode(Int.self) {
                self = .int(value)
            } else {
                self = .string(try container.decode(String.self))
            }
        }
    }
}
