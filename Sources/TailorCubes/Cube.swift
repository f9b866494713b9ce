import TailorDatapath
import TailorObjects

import TailorSpec

/// Errors in turning a cube's configuration into a blueprint, with the place in the
/// spec when one is known (else the cube's own): a YAML node's location, or the
/// path of the config value at fault, which the cube's spec turns into one.
public struct CubeConfigError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let location: SourceLocation?
    public let path: ConfigPath?
    public init(_ message: String, at location: SourceLocation? = nil) {
        self.message = message
        self.location = location
        path = nil
    }
    public init(_ message: String, at path: ConfigPath) {
        self.message = message
        location = nil
        self.path = path
    }
    public var description: String { message }
}

/// The errors of every bad item of a cube's list (each bad rule, not only the first),
/// so a spec is put right in one round.
public struct CubeConfigErrors: Error, Sendable {
    public let errors: [CubeConfigError]
}

/// What a cube type's control plane gets: the validated config and where it came from.
public struct CubeSource: Sendable {
    public var config: ConfigValue
    /// The spec file declaring the cube, and the spec directory it must not leave.
    public var file: String
    public var specRoot: String
}

/// Shared by the built-in cubes' control planes.
enum BuiltIn {
    /// The embedded objects' digests, computed once: a spec of a thousand chains
    /// would otherwise hash the same objects a thousand times.
    static let digests: [String: String] = Dictionary(uniqueKeysWithValues: DatapathObjects.all.names.compactMap { name in
        DatapathObjects.all.bytes(named: name).map { (name, CubeBlueprint.digest(of: $0)) }
    })

    /// A blueprint of the embedded object for a built-in cube type.
    static func blueprint(_ name: String, rodata: [String: [UInt8]] = [:], tables: [String: [TableEntry]] = [:],
                          outputs: Int = 1, sharedState: [String: String] = [:]) throws -> CubeBlueprint {
        CubeBlueprint(type: name, object: try object(name), objectDigest: digests[name], rodata: rodata, tables: tables,
                      outputs: outputs, sharedState: sharedState)
    }

    /// A blueprint of the embedded object whose tables are built when first needed.
    static func blueprint(_ name: String, rodata: [String: [UInt8]], tables: LazyTables,
                          sharedState: [String: String]) throws -> CubeBlueprint {
        CubeBlueprint(type: name, object: try object(name), objectDigest: digests[name], rodata: rodata, tables: tables,
                      sharedState: sharedState)
    }

    private static func object(_ name: String) throws -> [UInt8] {
        guard let bytes = DatapathObjects.all.bytes(named: name) else {
            throw CubeConfigError("this tailor binary was built without the \(name) cube")
        }
        return bytes
    }
}

extension IPPrefix {
    /// The key of an LPM trie entry (`struct tailor_lpm_v4`/`_v6` in
    /// bpf/include/tailor/lpm.h): the prefix length, then the network's bytes.
    var lpmKey: [UInt8] { littleEndian(UInt32(length)) + network.address }
}

/// Little-endian bytes of an integer, as BPF on the host reads it.
func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian, Array.init)
}
