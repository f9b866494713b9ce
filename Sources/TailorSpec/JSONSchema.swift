import Foundation

/// The JSON Schema (draft 2020-12) of the spec format, generated from the same
/// declarations the validator uses (the chain format here, each cube type's config
/// from its own schema), so editors and `tailor validate` cannot disagree on
/// structure. `tailor schema` prints it; schemas/tailor-v1.schema.json is a copy
/// that a test keeps current. Some checks only `tailor validate` makes: address
/// and prefix values in detail, graph checks, and checks across files.
public enum JSONSchema {
    static let namePattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
    /// A network interface name as the kernel allows it (dev_valid_name).
    static let interfacePattern = "^(?!\\.\\.?$)[^/:\\s]{1,15}$"
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
        let target: JSON = ["type": "string", "description": "A cube of this chain, or 'end'.", "examples": ["count", "end"]]
        let verdicts: JSON = .array(ChainSpec.Verdict.allCases.map { .string($0.rawValue) })
        let cube: JSON = [
            "type": "object", "additionalProperties": false, "required": ["name", "type"],
            "description": "A cube: one network function instance in the chain's prog_array.",
            "properties": [
                "name": ["type": "string", "pattern": .string(namePattern), "not": ["const": "end"],
                         "description": "Unique in the chain; other cubes' next and outputs name it.",
                         "examples": ["acl", "count"]],
                "type": ["enum": .array(types.map { .string($0.name) }),
                         "description": "The cube type: its config is described under its own schema."],
                "config": ["type": "object", "description": "The cube type's configuration."],
                "next": target + ["description": "The cube packets go to after this one ('end' ends the path with "
                    + "the chain's defaultVerdict). Default: the next cube in the list."],
                "outputs": ["type": "object", "additionalProperties": target,
                            "description": "For cubes with named outputs (classifier): output name -> next cube."],
                "migration": ["type": "object", "additionalProperties": ["enum": ["migrate", "reset"]],
                              "description": "Per state map: carried into a replacement (migrate, the default) "
                                  + "or started empty (reset).",
                              "examples": [["conntrack": "reset"]]],
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
            "description": "One chain of eBPF network functions on one hook (docs/spec.md).",
            "type": "object", "additionalProperties": false,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": [
                "apiVersion": ["const": "tailor/v1", "description": "The spec format's version."],
                "kind": ["const": "Chain", "description": "The kind of document."],
                "metadata": [
                    "type": "object", "additionalProperties": false, "required": ["name"],
                    "description": "What names the chain.",
                    "properties": [
                        "name": ["type": "string", "pattern": .string(namePattern),
                                 "description": "Unique on the host; the chain's pin directory under the pin root.",
                                 "examples": ["edge", "host-firewall"]],
                        "labels": ["type": "object", "additionalProperties": ["type": "string"],
                                   "description": "Free-form text labels, for people and tools.",
                                   "examples": [["team": "net"]]],
                    ],
                ],
                "spec": [
                    "type": "object", "additionalProperties": false, "required": ["attach", "cubes"],
                    "description": "Where the chain attaches, how it ends, and its cubes.",
                    "properties": [
                        "attach": [
                            "type": "object", "additionalProperties": false, "required": ["interface", "hook"],
                            "description": "The hook the chain's root program attaches to (one chain per hook).",
                            "properties": [
                                "interface": ["type": "string", "pattern": .string(interfacePattern),
                                              "description": "The interface name, as the kernel allows it.",
                                              "examples": ["eth0", "tl-b"]],
                                "namespace": ["type": "string", "pattern": .string(namePattern),
                                              "description": "A named network namespace (ip netns) the interface "
                                                  + "is in; needs CAP_SYS_ADMIN. Default: the host's.",
                                              "examples": ["tailor-lab-b"]],
                                "hook": ["enum": .array(ChainSpec.Hook.allCases.map { .string($0.rawValue) }),
                                         "description": "XDP, or TC ingress or egress through a clsact qdisc."],
                                "mode": ["enum": .array(ChainSpec.XDPMode.allCases.map { .string($0.rawValue) }),
                                         "default": "native",
                                         "description": "XDP only: native (in the driver) or generic (in the stack)."],
                            ],
                            "dependentSchemas": ["mode": ["properties": ["hook": [
                                "const": .string(ChainSpec.Hook.xdp.rawValue),
                                "description": "A mode is for the xdp hook only.",
                            ]]]],
                        ],
                        "defaultVerdict": ["enum": verdicts, "default": .string(ChainSpec.Verdict.pass.rawValue),
                                           "description": "The verdict at the end of every path."],
                        "onMissingCube": ["enum": .array(ChainSpec.MissingCube.allCases.map { .string($0.rawValue) }),
                                          "default": .string(ChainSpec.MissingCube.failClosed.rawValue),
                                          "description": "An empty slot: fail-closed drops, fail-open passes; "
                                              + "either way it is counted."],
                        "suspend": ["type": "boolean", "default": false,
                                    "description": "true leaves the chain as it is in the kernel."],
                        "repairDrift": ["type": "boolean", "default": true,
                                        "description": "false reports drift without putting it back."],
                        "cubes": ["type": "array", "minItems": 1, "maxItems": .int(SpecLimits().cubesPerChain),
                                  "items": ["$ref": "#/$defs/cube"],
                                  "description": "The cubes; the first is the chain's entry."],
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
        case .interfaceAddress:
            result = ["type": "string", "pattern": .string("^(\(ipv4)/(3[0-2]|[12]?[0-9])|\(ipv6)/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$")]
        case .interfaceName:
            result = ["type": "string", "pattern": .string(interfacePattern)]
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
