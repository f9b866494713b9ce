import TailorDatapath
import TailorSpec

/// tag: appends its id to the packet's path in the chain metadata; with `record`
/// it also counts each distinct path seen (state map `paths`), so tests and
/// operators can tell which way packets went.
public enum Tag {
    public static let schema = CubeTypeSchema(
        name: "tag", doc: "Appends its id to the packet's path; with record, counts each path seen.",
        config: Config.fields)

    /// A `tag` config as the spec writes it.
    struct Config: ConfigObject {
        static let id = ConfigKey("id", .integer(1...65535) as ConfigElement<UInt16>)
        static let record = ConfigKey("record", .boolean)
        static let fields = [
            ConfigField(id, required: true, doc: "The id written into the path."),
            ConfigField(record, doc: "Count each distinct path seen in the state map `paths`."),
        ]

        var id: UInt16
        var record: Bool

        init(_ config: ConfigReader) throws {
            id = try config.required(Self.id)
            record = try config[Self.record] ?? false
        }
    }

    /// The blueprint for a `tag` config.
    static func blueprint(config: Config) throws -> CubeBlueprint {
        var blueprint = try blueprint(id: config.id, record: config.record)
        blueprint.config = .attributes([Config.id.name: .int(Int(config.id)), Config.record.name: .bool(config.record)])
        return blueprint
    }

    public static func blueprint(id: UInt16, record: Bool = false) throws -> CubeBlueprint {
        guard id != 0 else { throw CubeConfigError("tag id must be between 1 and 65535") }
        return try BuiltIn.blueprint("tag", rodata: ["tag_id": littleEndian(id), "record": [record ? 1 : 0]])
    }
}
