import Foundation

/// The JSON Schema (draft 2020-12) of the spec format, generated from the same
/// declarations the validator uses (the chain format here, each cube type's config
/// from its own schema), so editors and `tailor validate` cannot disagree on
/// structure. `tailor schema` prints it; schemas/tailor-v1.schema.json is a copy
/// that a test keeps current. Some checks only `tailor validate` makes: address
/// and prefix values in detail, graph checks, and checks across files.
public enum JSONSchema {
    static let namePattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
    /// A dotted quad as the validator takes it (no leading zeros), so editors flag
    /// IPv4 typos too.
    static let ipv4 = { (octet: String) in "\(octet)(\\.\(octet)){3}" }("(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")
    /// IPv6 loosely (hex groups and colons, an optional IPv4 tail); the validator
    /// checks the group count and the single `::`.
    static let ipv6 = "[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){1,7}(:\(ipv4))?"

    /// The schema as pretty-printed JSON with sorted keys.
    public static func text(cubeTypes: [CubeTypeSchema]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(document(cubeTypes: cubeTypes)), as: UTF8.self) + "\n"
    }

    static func document(cubeTypes: [CubeTypeSchema]) -> JSON {
        let types = cubeTypes.sorted { $0.name < $1.name }
        let target: JSON = ["type": "string", "description": "A cube of this chain, or 'end'."]
        let cube: JSON = [
            "type": "object", "additionalProperties": false, "required": ["name", "type"],
            "properties": [
                "name": ["type": "string", "pattern": .string(namePattern), "not": ["const": "end"]],
                "type": ["enum": .array(types.map { .string($0.name) })],
                "config": ["type": "object"],
                "next": target,
                "outputs": ["type": "object", "additionalProperties": target],
                "migration": ["type": "object", "additionalProperties": ["enum": ["migrate", "reset"]]],
            ],
            "allOf": .array(types.map { type in
                ["if": ["properties": ["type": ["const": .string(type.name)]]],
                 "then": ["properties": ["config": schema(.object(type.config), doc: type.doc)]]
                    + (type.config.contains(where: \.required) ? ["required": ["config"]] : [:])]
            }),
        ]
        return [
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://github.com/tailor/tailor/schemas/tailor-v1.schema.json",
            "title": "tailor chain spec (apiVersion tailor/v1)",
            "type": "object", "additionalProperties": false,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": [
                "apiVersion": ["const": "tailor/v1"],
                "kind": ["const": "Chain"],
                "metadata": [
                    "type": "object", "additionalProperties": false, "required": ["name"],
                    "properties": [
                        "name": ["type": "string", "pattern": .string(namePattern)],
                        "labels": ["type": "object", "additionalProperties": ["type": "string"]],
                    ],
                ],
                "spec": [
                    "type": "object", "additionalProperties": false, "required": ["attach", "cubes"],
                    "properties": [
                        "attach": [
                            "type": "object", "additionalProperties": false, "required": ["interface", "hook"],
                            "properties": [
                                "interface": ["type": "string", "pattern": "^(?!\\.\\.?$)[^/:\\s]{1,15}$"],
                                "namespace": ["type": "string", "pattern": .string(namePattern)],
                                "hook": ["enum": .array(ChainSpec.Hook.allCases.map { .string($0.rawValue) })],
                                "mode": ["enum": .array(ChainSpec.XDPMode.allCases.map { .string($0.rawValue) })],
                            ],
                        ],
                        "defaultVerdict": ["enum": .array(ChainSpec.Verdict.allCases.map { .string($0.rawValue) })],
                        "onMissingCube": ["enum": .array(ChainSpec.MissingCube.allCases.map { .string($0.rawValue) })],
                        "suspend": ["type": "boolean"],
                        "repairDrift": ["type": "boolean"],
                        "cubes": ["type": "array", "minItems": 1, "maxItems": .int(SpecLimits().cubesPerChain),
                                  "items": ["$ref": "#/$defs/cube"]],
                    ],
                ],
            ],
            "$defs": ["cube": cube],
        ]
    }

    static func schema(_ type: ConfigType, doc: String? = nil) -> JSON {
        var result: JSON
        switch type {
        case .integer(let range):
            result = ["type": "integer", "minimum": .int(range.lowerBound), "maximum": .int(range.upperBound)]
        case .boolean: result = ["type": "boolean"]
        case .string: result = ["type": "string"]
        case .choice(let choices): result = ["enum": .array(choices.map { .string($0) })]
        case .cidr:
            result = ["type": "string", "pattern": .string("^(\(ipv4)(/(3[0-2]|[12]?[0-9]))?|\(ipv6)(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$")]
        case .ipAddress: result = ["type": "string", "pattern": .string("^(\(ipv4)|\(ipv6))$")]
        case .mac: result = ["type": "string", "pattern": "^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"]
        case .portRange:
            result = ["anyOf": [["type": "integer", "minimum": 0, "maximum": 65535],
                                ["type": "string", "pattern": "^[0-9]{1,5}(-[0-9]{1,5})?$"]]]
        case .ipProtocol:
            result = ["anyOf": [["enum": .array(IPProtocolNames.numbers.keys.sorted().map { .string($0) })],
                                ["type": "integer", "minimum": 0, "maximum": 255]]]
        case .yaml(let description): result = ["description": .string(description)]
        case .list(let element, let maxItems):
            result = ["type": "array", "items": schema(element), "maxItems": .int(maxItems)]
        case .object(let fields):
            result = [
                "type": "object", "additionalProperties": false,
                "properties": .object(Dictionary(uniqueKeysWithValues: fields.map {
                    ($0.name, schema($0.type, doc: $0.doc))
                })),
            ]
            let required = fields.filter(\.required).map { JSON.string($0.name) }
            if !required.isEmpty { result = result + ["required": .array(required)] }
        }
        return doc.map { result + ["description": .string($0)] } ?? result
    }
}

/// Just enough JSON to write a schema with literals.
indirect enum JSON: Encodable, Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    case string(String), int(Int), bool(Bool), array([JSON]), object([String: JSON])

    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int) { self = .int(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(arrayLiteral elements: JSON...) { self = .array(elements) }
    init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(Dictionary(uniqueKeysWithValues: elements))
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let v): try container.encode(v)
        case .int(let v): try container.encode(v)
        case .bool(let v): try container.encode(v)
        case .array(let v): try container.encode(v)
        case .object(let v): try container.encode(v)
        }
    }

    /// Merges two objects (right wins).
    static func + (a: JSON, b: JSON) -> JSON {
        guard case .object(let left) = a, case .object(let right) = b else { return b }
        return .object(left.merging(right) { $1 })
    }
}
