import TailorDatapath

/// counter: counts packets and bytes per CPU (state map `counters`) and hands
/// every packet on. No configuration.
public enum Counter {
    public static func blueprint() throws -> CubeBlueprint {
        CubeBlueprint(type: "counter", object: try BuiltIn.object("counter"))
    }
}
