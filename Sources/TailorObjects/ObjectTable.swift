import Foundation

/// BPF objects compiled from `bpf/` by the BPFCompiler plugin during `swift build`
/// and carried inside the binary, so an installed `tailor` needs no search path and
/// always runs the objects it was built with. The plugin generates one table per
/// target that uses it (`datapathObjects` here).
public struct EmbeddedObjects: Sendable {
    private let objects: [String: [UInt8]]

    /// Called only by the generated code; decodes every object once.
    public init(base64: [String: String]) {
        objects = base64.compactMapValues { Data(base64Encoded: $0).map { [UInt8]($0) } }
    }

    /// Names of the objects: their source file names without `.c`.
    public var names: [String] { objects.keys.sorted() }

    /// The ELF bytes of the object compiled from `<name>.c`, or nil if there is none.
    public func bytes(named name: String) -> [UInt8]? { objects[name] }
}

/// The datapath's objects: cubes and chain roots.
public enum DatapathObjects {
    public static var all: EmbeddedObjects { datapathObjects }
}
