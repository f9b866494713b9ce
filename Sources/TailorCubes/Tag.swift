import TailorDatapath

/// tag: appends its id to the packet's path in the chain metadata; with `record`
/// it also counts each distinct path seen (state map `paths`), so tests and
/// operators can tell which way packets went.
public enum Tag {
    public static func blueprint(id: UInt16, record: Bool = false) throws -> CubeBlueprint {
        guard id != 0 else { throw CubeConfigError("tag id must be between 1 and 65535") }
        return CubeBlueprint(type: "tag", object: try BuiltIn.object("tag"),
                             rodata: ["tag_id": littleEndian(id), "record": [record ? 1 : 0]])
    }
}
