import ArgumentParser
import TailorCubes
import TailorSpec

/// `tailor schema`: prints the spec format's JSON Schema, generated from the cube
/// types this binary has. schemas/tailor-v1.schema.json is its output.
struct Schema: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the JSON Schema (draft 2020-12) of tailor chain specs."
    )

    func run() throws {
        print(try JSONSchema.text(cubeTypes: CubeType.schemas), terminator: "")
    }
}
