import Testing
@testable import TailorCubes
@testable import TailorSpec

/// Each built-in cube type reads its config through a typed mirror of its schema
/// (`Config`, decoded by `ConfigDecoder`): the two must name the same fields.
@Suite("typed cube configs")
struct TypedConfigTests {
    /// A value of `type`, with every field of every object in it.
    static func full(_ type: ConfigType) -> ConfigValue {
        switch type {
        case .integer(let range): .integer(range.lowerBound)
        case .boolean: .boolean(true)
        case .string: .string("a")
        case .choice(let words): .string(words[0])
        case .cidr: .prefix(IPPrefix(address: [10, 0, 0, 0], length: 8))
        case .ipAddress: .address([10, 0, 0, 1])
        case .interfaceAddress: .prefix(IPPrefix(address: [10, 0, 0, 1], length: 24))
        case .interfaceName: .string("eth0")
        case .mac: .address([2, 0, 0, 0, 0, 1])
        case .portRange: .ports(80...80)
        case .ipProtocol: .ipProtocol(6)
        case .list(let element, _): .list([full(element)])
        case .object(let fields): .object(Dictionary(uniqueKeysWithValues: fields.map { ($0.name, full($0.type)) }))
        case .yaml:
            .node(YAMLNode(value: .mapping([]), location: SourceLocation(file: "t.yaml", line: 1, column: 1),
                           isQuoted: false, size: 1))
        }
    }

    @Test("every field a built-in cube type's schema declares is read by its typed config",
          arguments: CubeType.builtIn.map(\.schema.name))
    func schemaAndTypedConfigAgree(_ name: String) throws {
        let type = try #require(CubeType.builtIn.first { $0.schema.name == name })
        let config = Self.full(.object(type.schema.config))
        #expect(try type.unreadFields(config).map(\.dotted) == [], "fields of the \(name) schema its Config never reads")
    }

    struct Rule: ConfigObject {
        static let action = ConfigKey("action", .string)
        static let port = ConfigKey("port", .integer(0...255) as ConfigElement<UInt8>)
        static let fields = [ConfigField(action, doc: ""), ConfigField(port, doc: "")]
        var action: String?
        init(_ config: ConfigReader) throws { action = try config[Self.action] }
    }

    struct Partial: ConfigObject {
        static let rules = ConfigKey("rules", .list(.object as ConfigElement<Rule>, maxItems: 10))
        static let fields = [ConfigField(rules, doc: "")]
        var rules: [Rule]
        init(_ config: ConfigReader) throws { rules = try config.required(Self.rules) }
    }

    @Test("a field the typed config does not read is named with its path")
    func unreadFieldIsNamed() throws {
        let value = ConfigValue.object([
            "rules": .list([.object(["action": .string("drop"), "port": .integer(22)])]),
            "policy": .string("drop"),
        ])
        #expect(try Partial.unreadFields(value).map(\.dotted) == ["policy", "rules[0].port"])
    }

    @Test("a value of another type than its key's is an error at its path when traced")
    func mismatchNamesPath() {
        let value = ConfigValue.object(["rules": .list([.object(["action": .string("a")]), .object(["action": .integer(3)])])])
        #expect(throws: ConfigReadError.self) { try Partial.read(value) }
        #expect {
            try Partial.unreadFields(value)
        } throws: { error in
            (error as? ConfigReadError)?.path?.dotted == "rules[1].action"
        }
    }

    @Test("a key reads its one field of a config; a field left out is nil")
    func keyReadsOneField() throws {
        #expect(try Rule.port.value(in: .object(["port": .integer(7), "action": .string("x")])) == 7)
        #expect(try Rule.action.value(in: .object([:])) == nil)
        #expect(throws: ConfigReadError.self) { try Rule.port.value(in: .object(["port": .string("7")])) }
    }

    @Test("a key gives the schema its name and type")
    func keyMakesField() {
        let field = ConfigField(Rule.port, required: true, doc: "d")
        #expect(field.name == "port" && field.required)
        guard case .integer(let range) = field.type else {
            Issue.record("port is \(field.type), not an integer")
            return
        }
        #expect(range == 0...255)
    }
}
