import TailorDatapath
import TailorObjects

/// Errors in turning a cube's configuration into a blueprint.
public struct CubeConfigError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
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
