import TailorDatapath
import TailorObjects

import TailorSpec

/// Errors in turning a cube's configuration into a blueprint, with the place in the
/// spec when one is known (else the cube's own).
public struct CubeConfigError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let location: SourceLocation?
    public init(_ message: String, at location: SourceLocation? = nil) {
        self.message = message
        self.location = location
    }
    public var description: String { message }
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
    /// The embedded object for a built-in cube type.
    static func object(_ name: String) throws -> [UInt8] {
        guard let bytes = DatapathObjects.all.bytes(named: name) else {
            throw CubeConfigError("this tailor binary was built without the \(name) cube")
        }
        return bytes
    }
}

/// Little-endian bytes of an integer, as BPF on the host reads it.
func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian, Array.init)
}
