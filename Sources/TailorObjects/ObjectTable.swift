import Foundation

/// BPF objects compiled from `bpf/` by the BPFCompiler plugin during `swift build`
/// and carried inside the binary, so an installed `tailor` needs no search path and
/// always runs the objects it was built with. The plugin generates one table per
/// target that uses it (`datapathObjects` here).
public struct EmbeddedObjects: Sendable {
    private let base64: [String: String]

    /// Called only by the generated code.
    public init(base64: [String: String]) { self.base64 = base64 }

    /// Names of the objects: their source file names without `.c`.
    public var names: [String] { base64.keys.sorted() }

    /// The ELF bytes of the object compiled from `<name>.c`, or nil if there is none.
    public func bytes(named name: String) -> [UInt8]? {
        base64[name].flatMap { Data(base64Encoded: $0) }.map { [UInt8]($0) }
    }
}

/// The datapath's objects: cubes and chain roots.
public enum DatapathObjects {
    public static var all: EmbeddedObjects { datapathObjects }
}
