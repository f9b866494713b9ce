import TailorDatapath
import TailorSpec

/// classifier: sends each packet to one of its named outputs by ordered match rules
/// (the filter's match fields), first match wins, else to the default output
/// (UniBPF's BPFClassifier, Click's IPClassifier). The spec maps each output to a
/// next cube under `outputs:`, so the chain branches. Rules change what every
/// later rule means, so a change replaces the instance.
public enum Classifier {
    /// The most rules one classifier holds (the filter's rule table).
    public static let maxRules = Filter.maxRules
    /// The most outputs a cube has (TAILOR_MAX_PORTS in bpf/include/tailor/cube.h).
    public static let maxOutputs = 8

    public static let schema = CubeTypeSchema(
        name: "classifier",
        doc: "Sends each packet to one of its named outputs by ordered match rules (first match wins).",
        config: Config.fields,
        outputNames: { config in try? Config.outputs.value(in: config) })

    /// A `classifier` config as the spec writes it.
    struct Config: ConfigObject {
        static let outputs = ConfigKey("outputs", .list(.string, maxItems: maxOutputs))
        static let rules = ConfigKey("rules", .list(.object as ConfigElement<Rule>, maxItems: maxRules))
        static let defaultOutput = ConfigKey("default", .string)
        static let fields = [
            ConfigField(outputs, required: true,
                        doc: "The output names, in order; the cube's `outputs:` maps each to a next cube."),
            ConfigField(rules, doc: "Rules in order; the first that matches decides."),
            ConfigField(defaultOutput, doc: "The output of packets no rule matches (default: the first)."),
        ]

        var outputs: [String]
        var rules: [Rule]
        var defaultOutput: String?

        init(_ config: ConfigReader) throws {
            outputs = try config.required(Self.outputs)
            rules = try config[Self.rules] ?? []
            defaultOutput = try config[Self.defaultOutput]
        }

        struct Rule: ConfigObject {
            static let output = ConfigKey("output", .string)
            static let fields = [
                ConfigField(Match.Config.key, doc: Match.Config.doc),
                ConfigField(output, required: true, doc: "The output a matching packet takes."),
            ]

            var match: Match.Config?
            var output: String

            init(_ config: ConfigReader) throws {
                match = try config[Match.Config.key]
                output = try config.required(Self.output)
            }
        }
    }

    /// The blueprint for a `classifier` config.
    static func blueprint(config: Config) throws -> CubeBlueprint {
        let outputs = config.outputs
        if let twice = outputs.indices.first(where: { outputs[..<$0].contains(outputs[$0]) }) {
            throw CubeConfigError("output names must be distinct: '\(outputs[twice])' is named twice",
                                  at: [.key(Config.outputs), .item(twice)])
        }
        let index = { (name: String, context: String, path: ConfigPath) throws -> Int in
            guard let index = outputs.firstIndex(of: name) else {
                throw CubeConfigError("\(context): output '\(name)' is not one of \(outputs.joined(separator: ", "))",
                                      at: path)
            }
            return index
        }
        let rules = try Match.rules(config.rules) { number, rule in
            (try Match.rule(rule.match, ofRule: number),
             try index(rule.output, "rule \(number + 1)",
                       [.key(Config.rules), .item(number), .key(Config.Rule.output)]))
        }
        let fallback = try config.defaultOutput.map { try index($0, "default", [.key(Config.defaultOutput)]) } ?? 0
        var blueprint = try blueprint(rules: rules, defaultOutput: fallback, outputs: outputs.count)
        blueprint.config = .attributes([
            Config.outputs.name: .list(outputs.map(ConfigDocument.string)),
            Config.rules.name: .list(rules.map { document($0.0, output: outputs[$0.1]) }),
            Config.defaultOutput.name: .string(outputs[fallback]),
        ])
        return blueprint
    }

    /// A rule in the config's words: `{match: {proto: udp, dport: 53}, output: dns}`.
    static func document(_ rule: Filter.Rule, output: String) -> ConfigDocument {
        .attributes([Match.Config.key.name: Match.document(rule), Config.Rule.output.name: .string(output)])
    }

    /// The `rules` table's entries as the rules they encode, outputs by the names
    /// the desired config gives them.
    static let words = CubeWords(entry: { map, change, config in
        guard map == "rules", let index = littleEndianValue(change.key, as: UInt32.self) else { return nil }
        let names = config?["outputs"]?.items?.map(\.flow) ?? []
        let rule = { (bytes: [UInt8]?) in
            bytes.map { bytes in
                Filter.Rule(encoded: bytes).map { rule in
                    let output = Int(bytes[46])
                    return document(rule, output: output < names.count ? names[output] : "output \(output)").flow
                } ?? hexDigest(bytes)
            }
        }
        return EntryWords(key: "rules[\(index)]", before: rule(change.before), after: rule(change.after))
    })

    /// `rules` in order, each with the output index it sends to.
    public static func blueprint(rules: [(Filter.Rule, Int)], defaultOutput: Int, outputs: Int) throws -> CubeBlueprint {
        guard (1...maxOutputs).contains(outputs), Set(rules.map(\.1) + [defaultOutput]).allSatisfy({ $0 < outputs })
        else {
            throw CubeConfigError("a classifier has 1 to \(maxOutputs) outputs, and every rule sends to one of them")
        }
        guard rules.count <= maxRules else {
            throw CubeConfigError("a classifier holds at most \(maxRules) rules, not \(rules.count)")
        }
        let entries = rules.enumerated().map { number, rule in
            TableEntry(key: littleEndian(UInt32(number)), value: rule.0.encoded(verdict: UInt8(rule.1)))
        }
        return try BuiltIn.blueprint(
            "classifier",
            rodata: ["rule_count": littleEndian(UInt32(rules.count)), "default_output": [UInt8(defaultOutput)]],
            tables: ["rules": entries], outputs: outputs)
    }
}
