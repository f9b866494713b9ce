import TailorDatapath
import TailorSpec

/// counter: counts packets and bytes per CPU (state map `counters`) and hands
/// every packet on. No configuration.
public enum Counter {
    public static let schema = CubeTypeSchema(
        name: "counter", doc: "Counts packets and bytes per CPU and hands every packet on.", config: Config.fields)

    /// A `counter` has no config.
    struct Config: ConfigObject {
        static let fields: [ConfigField] = []
        init(_ config: ConfigReader) {}
    }

    public static func blueprint() throws -> CubeBlueprint {
        var blueprint = try BuiltIn.blueprint("counter")
        blueprint.config = .fields([])
        return blueprint
    }
}
