import TailorDatapath
import TailorSpec

/// tag: appends its id to the packet's path in the chain metadata; with `record`
/// it also counts each distinct path seen (state map `paths`), so tests and
/// operators can tell which way packets went.
public enum Tag {
    public static let schema = CubeTypeSchema(
        name: "tag", doc: "Appends its id to the packet's path; with record, counts each path seen.",
        config: [
            ConfigField("id", .integer(1...65535), required: true, doc: "The id written into the path."),
            ConfigField("record", .boolean, doc: "Count each distinct path seen in the state map `paths`."),
        ])

    /// The blueprint for a validated `tag` config.
    public static func blueprint(config: ConfigValue) throws -> CubeBlueprint {
        let (id, record) = (config["id"]?.integerValue ?? 0, config["record"]?.booleanValue ?? false)
        var blueprint = try blueprint(id: UInt16(id), record: record)
        blueprint.config = .attributes(["id": .int(id), "record": .bool(record)])
        return blueprint
    }

    public static func blueprint(id: UInt16, record: Bool = false) throws -> CubeBlueprint {
        guard id != 0 else { throw CubeConfigError("tag id must be between 1 and 65535") }
        return try BuiltIn.blueprint("tag", rodata: ["tag_id": littleEndian(id), "record": [record ? 1 : 0]])
    }
}
