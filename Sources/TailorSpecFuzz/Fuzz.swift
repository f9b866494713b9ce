import Glibc
import TailorCubes
import TailorSpec

// libFuzzer entry point for the spec parser and decoder: any bytes must give a
// result or diagnostics, never a crash, a hang or runaway memory; and what is
// valid must write back (SpecWriter) to text that loads without errors and writes
// back the same (a violation traps, so libFuzzer keeps the input).
// Build and run: see docs/spec.md ("Fuzzing"). Without -DFUZZING the target is a
// plain executable that replays the files given (crash reproducers, the corpus).

let loader = SpecLoader(cubeTypes: CubeType.schemas)
let writer = SpecWriter(cubeTypes: CubeType.schemas)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = [UInt8](UnsafeRawBufferPointer(start: start, count: count))
    var diagnostics = Diagnostics()
    let chains = loader.decode(bytes, file: "fuzz.yaml", diagnostics: &diagnostics)
    for chain in chains { _ = chain.datapath(diagnostics: &diagnostics) }
    guard !diagnostics.hasErrors, !chains.isEmpty else { return 0 }
    do {
        let text = try writer.yaml(chains)
        // Aliases are written out expanded, so the text may outgrow the file limit.
        guard text.utf8.count <= loader.limits.fileBytes else { return 0 }
        var again = Diagnostics()
        let reloaded = loader.decode(Array(text.utf8), file: "written.yaml", diagnostics: &again)
        guard !again.hasErrors else { preconditionFailure("written back, the spec has errors: \(again.sorted)\n\(text)") }
        guard try writer.yaml(reloaded) == text else { preconditionFailure("the written spec is no fixed point:\n\(text)") }
    } catch {
        preconditionFailure("cannot write back a valid spec: \(error)")
    }
    return 0
}

#if !FUZZING
@main
struct Replay {
    static func main() throws {
        for path in CommandLine.arguments.dropFirst() {
            // One byte past the input keeps the pointer valid for empty files.
            let bytes = try [UInt8](contentsOf: path) + [0]
            _ = bytes.withUnsafeBytes { raw in raw.baseAddress.map { fuzz($0, bytes.count - 1) } }
            print("ok \(path)")
        }
    }
}

extension Array where Element == UInt8 {
    init(contentsOf path: String) throws {
        guard let file = fopen(path, "rb") else { throw ReplayError(path: path) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while case let n = fread(&chunk, 1, chunk.count, file), n > 0 { bytes += chunk[0..<n] }
        self = bytes
    }
}

struct ReplayError: Error { let path: String }
#endif
