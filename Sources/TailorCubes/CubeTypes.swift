import TailorDatapath
import TailorSpec

/// The built-in cube types: each one's config schema (for the spec) and its control
/// plane (config -> blueprint). Adding a type is one file and one line here.
public struct CubeType: Sendable {
    public let schema: CubeTypeSchema
    public let blueprint: @Sendable (CubeSource) throws -> CubeBlueprint
    /// How plans show its config changes and its tables' entries.
    public let words: CubeWords
    /// Why the type cannot run on an XDP chain; nil where it can.
    public let xdpRefusal: String?

    /// A cube type whose control plane takes its config decoded into `Config`, the
    /// typed mirror of its schema.
    init<Config: ConfigObject>(schema: CubeTypeSchema, config: Config.Type, words: CubeWords = .none,
                               xdpRefusal: String? = nil,
                               blueprint: @escaping @Sendable (Config, CubeSource) throws -> CubeBlueprint) {
        self.schema = schema
        self.words = words
        self.xdpRefusal = xdpRefusal
        self.blueprint = { source in try blueprint(try Self.read(Config.self, source.config), source) }
        unreadFields = { try Config.unreadFields($0) }
    }

    /// The fields of a config that the type's typed config does not read (a test
    /// requires none, for a config with every field of the schema).
    let unreadFields: @Sendable (ConfigValue) throws -> [ConfigPath]

    public static let builtIn: [CubeType] = [
        CubeType(schema: Counter.schema, config: Counter.Config.self) { _, _ in try Counter.blueprint() },
        CubeType(schema: Tag.schema, config: Tag.Config.self) { config, _ in try Tag.blueprint(config: config) },
        CubeType(schema: Filter.schema, config: Filter.Config.self, words: Filter.words) { config, _ in
            try Filter.blueprint(config: config)
        },
        CubeType(schema: RateLimit.schema, config: RateLimit.Config.self, words: RateLimit.words) { config, _ in
            try RateLimit.blueprint(config: config)
        },
        CubeType(schema: Classifier.schema, config: Classifier.Config.self, words: Classifier.words) { config, _ in
            try Classifier.blueprint(config: config)
        },
        CubeType(schema: Firewall.schema, config: Firewall.Config.self, words: Firewall.words) { config, _ in
            try Firewall.blueprint(config: config)
        },
        CubeType(schema: Router.schema, config: Router.Config.self, words: Router.words, xdpRefusal: Router.xdpRefusal) {
            config, _ in try Router.blueprint(config: config)
        },
        CubeType(schema: NAT.schema, config: NAT.Config.self, words: NAT.words, xdpRefusal: NAT.xdpRefusal) { config, _ in try NAT.blueprint(config: config) },
        CubeType(schema: ObjectCube.schema, config: ObjectCube.Config.self, words: ObjectCube.words,
                 blueprint: ObjectCube.blueprint(config:source:)),
    ]

    /// A validated config as `Config`; one that does not read (a schema and typed
    /// config out of step) is an error at the cube.
    private static func read<Config: ConfigObject>(_ type: Config.Type, _ value: ConfigValue) throws -> Config {
        do {
            return try Config.read(value)
        } catch let error as ConfigReadError {
            throw CubeConfigError("the cube type cannot read its config (\(error.message)); "
                                  + "its schema and typed config are out of step")
        }
    }

    public static var schemas: [CubeTypeSchema] { builtIn.map(\.schema) }

    /// The words of cube type `name`; a type this tailor does not know has none.
    public static func words(of name: String) -> CubeWords {
        builtIn.first { $0.schema.name == name }?.words ?? .none
    }
}

extension ChainSpec {
    /// The datapath's view of this chain: settings and topology with every cube's
    /// blueprint. Errors in turning a config into a blueprint are reported at the value at
    /// fault, else at the cube.
    public func datapath(diagnostics: inout Diagnostics) -> (ChainSettings, Topology)? {
        let types = Dictionary(uniqueKeysWithValues: CubeType.builtIn.map { ($0.schema.name, $0) })
        var nodes: [String: Topology.Node] = [:]
        for cube in cubes {
            guard let type = types[cube.type] else {
                diagnostics.error("unknown cube type '\(cube.type)'", at: cube.location)
                continue
            }
            if attach.hook == .xdp, let refusal = type.xdpRefusal {
                diagnostics.error("cube '\(cube.name)': \(refusal)", at: cube.location)
                continue
            }
            do {
                var blueprint = try type.blueprint(
                    CubeSource(config: cube.config, file: cube.location.file, specRoot: specRoot))
                blueprint.outputs = cube.next.count
                blueprint.resetState = Set(cube.migration.filter { $0.value == .reset }.keys)
                nodes[cube.name] = Topology.Node(blueprint: blueprint, next: cube.next)
            } catch {
                // Every bad rule where it is written, but no more of them than a file's errors.
                let errors = (error as? CubeConfigErrors)?.errors ?? (error as? CubeConfigError).map { [$0] }
                var found = Diagnostics(limit: SpecLimits().errorsPerFile)
                for error in errors ?? [] {
                    found.error("cube '\(cube.name)': \(error.message)", at: error.location ?? cube.location(of: error.path))
                }
                if errors == nil { found.error("cube '\(cube.name)': \(error)", at: cube.location) }
                diagnostics.append(contentsOf: found)
            }
        }
        guard nodes.count == cubes.count else { return nil }
        let kind: ChainHook.Kind = switch attach.hook {
        case .xdp: .xdp(attach.mode == .native ? .native : .generic)
        case .tcIngress: .tcIngress
        case .tcEgress: .tcEgress
        }
        let settings = ChainSettings(
            name: name, hook: ChainHook(interface: attach.interface, namespace: attach.namespace, kind: kind),
            defaultVerdict: defaultVerdict == .drop ? .drop : .pass,
            onEmptySlot: onMissingCube == .failOpen ? .pass : .drop)
        return (settings, Topology(entry: entry, nodes: nodes))
    }
}
