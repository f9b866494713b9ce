/// The type of a cube config field. Cube types declare their config with these
/// (TailorCubes, one file per type); validation here and the JSON Schema both
/// come from that one declaration.
public indirect enum ConfigType: Sendable {
    case integer(ClosedRange<Int>)
    case boolean
    case string
    /// One of a fixed set of words.
    case choice([String])
    /// An IPv4 or IPv6 prefix ("10.0.0.0/8"); a bare address is a host prefix.
    case cidr
    case ipAddress
    /// An address with the length of its network, as an interface holds it
    /// ("10.98.1.1/24"): the host bits are the point, so they are kept.
    case interfaceAddress
    /// A network interface's name, as the kernel accepts it.
    case interfaceName
    case mac
    /// A port (80) or an inclusive range ("1000-2000").
    case portRange
    /// tcp, udp, icmp, icmpv6, or a protocol number.
    case ipProtocol
    case list(ConfigType, maxItems: Int)
    case object([ConfigField])
    /// Any YAML, kept with its positions for the cube type to interpret (the
    /// `object` type encodes table entries through the object's BTF).
    case yaml(description: String)
}

/// One field of a cube config.
public struct ConfigField: Sendable {
    public var name: String
    public var type: ConfigType
    public var required: Bool
    public var doc: String

    public init(_ name: String, _ type: ConfigType, required: Bool = false, doc: String) {
        self.name = name
        self.type = type
        self.required = required
        self.doc = doc
    }
}

/// A validated config value, typed by its schema.
public indirect enum ConfigValue: Sendable, Hashable {
    case integer(Int)
    case boolean(Bool)
    case string(String)
    case prefix(IPPrefix)
    case address([UInt8])
    case ports(ClosedRange<UInt16>)
    case ipProtocol(UInt8)
    case list([ConfigValue])
    case object([String: ConfigValue])
    case node(YAMLNode)

    /// A field of an object value.
    public subscript(_ field: String) -> ConfigValue? {
        if case .object(let fields) = self { return fields[field] }
        return nil
    }

    public var integerValue: Int? { if case .integer(let v) = self { v } else { nil } }
    public var booleanValue: Bool? { if case .boolean(let v) = self { v } else { nil } }
    public var stringValue: String? { if case .string(let v) = self { v } else { nil } }
    public var prefixValue: IPPrefix? { if case .prefix(let v) = self { v } else { nil } }
    /// An IP (or MAC) address's bytes.
    public var addressValue: [UInt8]? { if case .address(let v) = self { v } else { nil } }
    public var portsValue: ClosedRange<UInt16>? { if case .ports(let v) = self { v } else { nil } }
    public var protocolValue: UInt8? { if case .ipProtocol(let v) = self { v } else { nil } }
    public var listValue: [ConfigValue]? { if case .list(let v) = self { v } else { nil } }
    public var nodeValue: YAMLNode? { if case .node(let v) = self { v } else { nil } }
}

/// What a cube type looks like to the spec: its config and its outputs.
public struct CubeTypeSchema: Sendable {
    public var name: String
    public var doc: String
    public var config: [ConfigField]
    /// How many outputs an instance has, from its validated config (most cubes: 1).
    /// Multi-output cubes name their outputs; the names are what `outputs:` maps.
    public var outputNames: @Sendable (ConfigValue) -> [String]?

    public init(name: String, doc: String, config: [ConfigField],
                outputNames: @escaping @Sendable (ConfigValue) -> [String]? = { _ in nil }) {
        self.name = name
        self.doc = doc
        self.config = config
        self.outputNames = outputNames
    }
}

/// The IP protocols a spec may name; a config normalised for a plan or `--normalized`
/// output names them the same way.
public enum IPProtocolNames {
    public static let numbers: [String: UInt8] = ["tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58]

    /// The name of protocol `number`, or nil where specs give it as a number.
    public static func name(_ number: UInt8) -> String? { numbers.first { $0.value == number }?.key }
}

enum ConfigValidator {

    /// Validates `node` against `type`; nil (with errors) when it does not conform.
    static func validate(_ node: YAMLNode, as type: ConfigType, what: String,
                         diagnostics: inout Diagnostics) -> ConfigValue? {
        switch type {
        case .integer(let range):
            return node.integer(what, in: range, diagnostics: &diagnostics).map(ConfigValue.integer)
        case .boolean:
            return node.boolean(what, diagnostics: &diagnostics).map(ConfigValue.boolean)
        case .string:
            return node.string(what, diagnostics: &diagnostics).map(ConfigValue.string)
        case .choice(let choices):
            return node.choice(what, choices, diagnostics: &diagnostics).map(ConfigValue.string)
        case .cidr:
            guard let prefix = parsed(node, what, "a CIDR prefix such as 10.0.0.0/8 or fd00::/16", &diagnostics, {
                IPPrefix($0).map(ConfigValue.prefix)
            })?.prefixValue else { return nil }
            // 10.0.0.1/8 matches 10.0.0.0/8: likely a typo for /32, so say so, and
            // keep the network so both spellings give the same digest.
            guard prefix.isNetwork else {
                diagnostics.warning("\(prefix) has bits set past /\(prefix.length), so \(what) matches all of "
                                    + "\(prefix.network); write that, or the longer prefix you meant", at: node.location)
                return .prefix(prefix.network)
            }
            return .prefix(prefix)
        case .ipAddress:
            return parsed(node, what, "an IPv4 or IPv6 address", &diagnostics) { IPAddress.parse($0).map(ConfigValue.address) }
        case .interfaceAddress:
            return parsed(node, what, "an address with its network's length such as 10.0.0.1/24 or fd00::1/64",
                          &diagnostics) { text in text.contains("/") ? IPPrefix(text).map(ConfigValue.prefix) : nil }
        case .interfaceName:
            guard let name = node.string(what, diagnostics: &diagnostics) else { return nil }
            guard isValidInterfaceName(name) else {
                diagnostics.error("interface name '\(excerpt(name))' is not valid: 1-15 bytes, not '.' or '..', no '/', "
                                  + "':' or white space (the kernel's rules)", at: node.location)
                return nil
            }
            return .string(name)
        case .mac:
            return parsed(node, what, "a MAC address such as 02:00:00:00:00:01", &diagnostics) {
                MACAddress.parse($0).map(ConfigValue.address)
            }
        case .portRange:
            let bounds = { (text: String) in text.split(separator: "-", omittingEmptySubsequences: false).map { UInt16($0) } }
            // An inverted range is likely the two ends swapped: say which way round they go.
            if case .scalar(let text) = node.value, node.leadingZeroProblem == nil, case let ends = bounds(text),
               ends.count == 2, let low = ends[0], let high = ends[1], low > high {
                diagnostics.error("'\(text)' is not a port range: \(low) is above \(high) (\(what)); write \(high)-\(low)",
                                  at: node.location)
                return nil
            }
            return parsed(node, what, "a port (0-65535) or a range such as 1000-2000", &diagnostics) { text in
                let ends = bounds(text)
                guard (1...2).contains(ends.count), let low = ends.first ?? nil, let high = ends.last ?? nil,
                      low <= high else { return nil }
                return .ports(low...high)
            }
        case .ipProtocol:
            return parsed(node, what, "tcp, udp, icmp, icmpv6 or a protocol number (0-255)", &diagnostics) {
                (IPProtocolNames.numbers[$0] ?? UInt8($0)).map(ConfigValue.ipProtocol)
            }
        case .list(let element, let maxItems):
            guard let items = node.list(what, diagnostics: &diagnostics) else { return nil }
            guard items.count <= maxItems else {
                diagnostics.error("\(what) has \(items.count) items; at most \(maxItems) are allowed", at: node.location)
                return nil
            }
            let values = items.enumerated().map {
                validate($0.element, as: element, what: "\(what)[\($0.offset)]", diagnostics: &diagnostics)
            }
            return values.contains { $0 == nil } ? nil : .list(values.compactMap { $0 })
        case .object(let fields):
            return object(node, fields, what: what, diagnostics: &diagnostics)
        case .yaml:
            return .node(node)
        }
    }

    static func object(_ node: YAMLNode, _ fields: [ConfigField], what: String,
                       diagnostics: inout Diagnostics) -> ConfigValue? {
        guard let reader = MappingReader(node, context: what, allowed: fields.map(\.name),
                                         diagnostics: &diagnostics) else { return nil }
        var values: [String: ConfigValue] = [:]
        values.reserveCapacity(fields.count)
        var valid = true
        for field in fields {
            guard let value = reader[field.name] else {
                if field.required {
                    diagnostics.error("missing required field '\(field.name)' in \(what)", at: node.location)
                    valid = false
                }
                continue
            }
            if let validated = validate(value, as: field.type, what: field.name, diagnostics: &diagnostics) {
                values[field.name] = validated
            } else {
                valid = false
            }
        }
        return valid ? .object(values) : nil
    }

    /// A scalar parsed by `parse`, or an error saying what was expected.
    private static func parsed(_ node: YAMLNode, _ what: String, _ expected: String, _ diagnostics: inout Diagnostics,
                               _ parse: (String) -> ConfigValue?) -> ConfigValue? {
        guard case .scalar(let text) = node.value, !node.isNull else {
            diagnostics.error("expected \(expected) for \(what), found \(node.kindName)", at: node.location)
            return nil
        }
        if let problem = node.leadingZeroProblem {
            diagnostics.error("\(what): \(problem)", at: node.location)
            return nil
        }
        guard let value = parse(text) else {
            diagnostics.error("'\(excerpt(text))' is not \(expected) (\(what))", at: node.location)
            return nil
        }
        return value
    }
}
