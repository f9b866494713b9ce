import Foundation

/// The datapath's BPF objects (`bpf/`), compiled by the BPFCompiler plugin during
/// `swift build` and carried inside the binary, so an installed `tailor` needs no
/// search path and always runs the objects it was built with.
public enum DatapathObjects {
    /// Names of the embedded objects: the source file names without `.c`.
    public static var names: [String] { embeddedObjects.keys.sorted() }

    /// The ELF bytes of the object compiled from `bpf/**/<name>.c`, or nil if there is none.
    public static func bytes(named name: String) -> [UInt8]? {
        guard let encoded = embeddedObjects[name], let data = Data(base64Encoded: encoded) else {
            return nil
        }
        return [UInt8](data)
    }
}
