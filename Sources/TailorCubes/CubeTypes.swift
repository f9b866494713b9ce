import TailorDatapath
import TailorSpec

/// The built-in cube types: each one's config schema (for the spec) and its control
/// plane (config -> blueprint). Adding a type is one file and one line here.
public struct CubeType: Sendable {
    public let schema: CubeTypeSchema
    public let blueprint: @Sendable (CubeSource) throws -> CubeBlueprint
    /// How plans show its config changes and its tables' entries.
    public let words: CubeWords

    public static let builtIn: [CubeType] = [
        CubeType(schema: Counter.schema, blueprint: { _ in try Counter.blueprint() }, words: .none),
        CubeType(schema: Tag.schema, blueprint: { try Tag.blueprint(config: $0.config) }, words: .none),
        CubeType(schema: Filter.schema, blueprint: { try Filter.blueprint(config: $0.config) }, words: Filter.words),
        CubeType(schema: RateLimit.schema, blueprint: { try RateLimit.blueprint(config: $0.config) }, words: RateLimit.words),
        CubeType(schema: Classifier.schema, blueprint: { try Classifier.blueprint(config: $0.config) },
                 words: Classifier.words),
        CubeType(schema: Firewall.schema, blueprint: { try Firewall.blueprint(config: $0.config) }, words: Firewall.words),
        CubeType(schema: ObjectCube.schema, blueprint: ObjectCube.blueprint(source:), words: ObjectCube.words),
    ]

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
