/// One field of a cube config as the schema and the control plane both see it: its
/// name, its schema type, and the Swift type its validated value reads as. A cube type
/// declares each field once, as a key; its schema lists the keys
/// (`ConfigField(key, doc:)`) and its typed config reads values by them
/// (`try config[Self.dport]`), so the two cannot disagree on a name or a type.
///
/// A class, so reading a field through a `static let` key copies no name, type or
/// closure (a 10,000-rule firewall reads some 70,000 fields).
public final class ConfigKey<Value>: Sendable {
    public let name: String
    public let element: ConfigElement<Value>

    public init(_ name: String, _ element: ConfigElement<Value>) {
        self.name = name
        self.element = element
    }

    /// This field of `config` (an object), nil where it leaves the field out: one
    /// field read without reading the rest.
    public func value(in config: ConfigValue) throws -> Value? {
        try config[name].map { try element.read($0, nil) }
    }
}

/// A schema type with the Swift type its validated values read as.
public struct ConfigElement<Value>: Sendable {
    public let type: ConfigType
    /// The value in Swift; throws only where the value is not of `type` (a schema and
    /// reader out of step, which validation rules out).
    @usableFromInline let read: @Sendable (ConfigValue, ConfigTrace?) throws -> Value

    init(_ type: ConfigType, read: @escaping @Sendable (ConfigValue, ConfigTrace?) throws -> Value) {
        self.type = type
        self.read = read
    }

    /// An element read straight off one case of `ConfigValue`.
    static func scalar(_ type: ConfigType, _ take: @escaping @Sendable (ConfigValue) -> Value?) -> Self {
        Self(type) { value, trace in
            guard let taken = take(value) else { throw ConfigReadError(trace, "expected \(type), found \(value)") }
            return taken
        }
    }
}

/// A port or an inclusive range of ports, as a `portRange` field holds it.
public typealias PortRange = ClosedRange<UInt16>

extension ConfigElement where Value: FixedWidthInteger & Sendable {
    public static func integer(_ range: ClosedRange<Int>) -> Self {
        .scalar(.integer(range)) { $0.integerValue.flatMap(Value.init(exactly:)) }
    }
}

extension ConfigElement where Value == Bool {
    public static var boolean: Self { .scalar(.boolean, { $0.booleanValue }) }
}

extension ConfigElement where Value == String {
    public static var string: Self { .scalar(.string, { $0.stringValue }) }
    public static var interfaceName: Self { .scalar(.interfaceName, { $0.stringValue }) }
}

extension ConfigElement where Value == IPPrefix {
    public static var cidr: Self { .scalar(.cidr, { $0.prefixValue }) }
    public static var interfaceAddress: Self { .scalar(.interfaceAddress, { $0.prefixValue }) }
}

extension ConfigElement where Value == [UInt8] {
    /// An IPv4 or IPv6 address: 4 or 16 bytes in network order.
    public static var ipAddress: Self { .scalar(.ipAddress, { $0.addressValue }) }
}

extension ConfigElement where Value == PortRange {
    public static var portRange: Self { .scalar(.portRange, { $0.portsValue }) }
}

extension ConfigElement where Value == UInt8 {
    /// The protocol's number (named protocols are numbers too).
    public static var ipProtocol: Self { .scalar(.ipProtocol, { $0.protocolValue }) }
}

extension ConfigElement where Value == YAMLNode {
    public static func yaml(description: String) -> Self { .scalar(.yaml(description: description), { $0.nodeValue }) }
}

extension ConfigElement where Value: Sendable {
    /// One of `words`, each standing for a value.
    public static func choice(_ words: [(String, Value)]) -> Self {
        // A search of a handful of words costs less than hashing the word.
        .scalar(.choice(words.map(\.0))) { value in value.stringValue.flatMap { word in words.first { $0.0 == word }?.1 } }
    }

    /// A list of `element`s.
    public static func list<Element>(_ element: ConfigElement<Element>, maxItems: Int) -> Self where Value == [Element] {
        Self(.list(element.type, maxItems: maxItems)) { value, trace in
            guard let items = value.listValue else { throw ConfigReadError(trace, "expected a list, found \(value)") }
            var read: [Element] = []
            read.reserveCapacity(items.count)
            for (index, item) in items.enumerated() { read.append(try element.read(item, trace?.appending(.item(index)))) }
            return read
        }
    }
}

extension ConfigElement where Value: RawRepresentable & CaseIterable & Sendable, Value.RawValue == String {
    /// One of the enum's cases, by raw value, in declaration order.
    public static var choice: Self { .choice(Value.allCases.map { ($0.rawValue, $0) }) }
}

extension ConfigElement where Value: ConfigObject {
    /// An object of the fields `Value` declares, read into `Value`.
    public static var object: Self {
        Self(.object(Value.fields)) { value, trace in
            guard case .object(let fields) = value else {
                throw ConfigReadError(trace, "expected an object, found \(value)")
            }
            return try Value(ConfigReader(fields: fields, trace: trace))
        }
    }
}

/// A typed cube config, or an object inside one: its fields (the schema's) and how it
/// reads them from a validated value.
public protocol ConfigObject: Sendable {
    static var fields: [ConfigField] { get }
    init(_ config: ConfigReader) throws
}

extension ConfigObject {
    /// The typed config of `value`, validated against `fields`.
    public static func read(_ value: ConfigValue) throws -> Self { try ConfigElement<Self>.object.read(value, nil) }

    /// The fields present in `value` that reading it as `Self` leaves unread: fields
    /// the schema declares and the typed config forgets. A test runs this on a config
    /// holding every field of each cube type's schema.
    public static func unreadFields(_ value: ConfigValue) throws -> [ConfigPath] {
        let reads = ConfigTrace.Reads()
        _ = try ConfigElement<Self>.object.read(value, ConfigTrace(reads: reads, path: []))
        var unread: [ConfigPath] = []
        func walk(_ value: ConfigValue, _ path: [ConfigPath.Step]) {
            switch value {
            case .object(let fields):
                for (name, field) in fields.sorted(by: { $0.key < $1.key }) {
                    let here = path + [.field(name)]
                    if reads.paths.contains(ConfigPath(here)) { walk(field, here) } else { unread.append(ConfigPath(here)) }
                }
            case .list(let items):
                for (index, item) in items.enumerated() { walk(item, path + [.item(index)]) }
            default:
                break
            }
        }
        walk(value, [])
        return unread
    }
}

/// The fields of one object of a validated config, read by key.
public struct ConfigReader {
    @usableFromInline let fields: [String: ConfigValue]
    @usableFromInline let trace: ConfigTrace?

    /// The field's value, nil where the config leaves it out.
    @inlinable public subscript<Value>(key: ConfigKey<Value>) -> Value? {
        get throws {
            guard let value = fields[key.name] else { return nil }
            let trace = trace?.appending(.field(key.name))
            if let trace { trace.reads.paths.insert(ConfigPath(trace.path)) }
            return try key.element.read(value, trace)
        }
    }

    /// A field the schema requires, so validation made sure of it.
    @inlinable public func required<Value>(_ key: ConfigKey<Value>) throws -> Value {
        guard let value = try self[key] else {
            throw ConfigReadError(trace?.appending(.field(key.name)), "a required field is missing")
        }
        return value
    }
}

/// Where a read is and what it read: kept only when asked (`unreadFields`), so the
/// reads of a 10,000-rule firewall cost no paths.
public struct ConfigTrace: Sendable {
    @usableFromInline final class Reads: @unchecked Sendable {
        @usableFromInline var paths: Set<ConfigPath> = []
        init() {}
    }
    @usableFromInline let reads: Reads
    @usableFromInline let path: [ConfigPath.Step]

    @usableFromInline func appending(_ step: ConfigPath.Step) -> ConfigTrace { ConfigTrace(reads: reads, path: path + [step]) }
}

/// A validated config that does not read as its typed config: only a schema and a
/// reader out of step.
public struct ConfigReadError: Error, Sendable, CustomStringConvertible {
    public let message: String
    /// Where, when the read was traced.
    public let path: ConfigPath?

    @usableFromInline init(_ trace: ConfigTrace?, _ message: String) {
        self.message = message
        path = trace.map { ConfigPath($0.path) }
    }

    public var description: String { message }
}

extension ConfigField {
    /// The field of `key`, its name and type taken from the key.
    public init<Value>(_ key: ConfigKey<Value>, required: Bool = false, doc: String) {
        self.init(key.name, key.element.type, required: required, doc: doc)
    }
}

extension ConfigPath.Step {
    /// The step to the field of `key`.
    public static func key<Value>(_ key: ConfigKey<Value>) -> Self { .field(key.name) }
}

extension ConfigPath {
    /// `rules[3].match.dport`, as messages spell a path.
    public var dotted: String {
        var text = ""
        for step in steps {
            switch step {
            case .field(let name): text += text.isEmpty ? name : "." + name
            case .item(let index): text += "[\(index)]"
            }
        }
        return text
    }
}
