import Testing
@testable import TailorSpec

/// Multi-output cubes (a classifier) map each named output to a cube or `end`.
/// A test-only cube type stands in for the classifier here.
@Suite("outputs of multi-output cubes")
struct OutputsTests {
    static let split = CubeTypeSchema(
        name: "split", doc: "test: two outputs",
        config: [ConfigField("outputs", .list(.string, maxItems: 8), required: true, doc: "output names")],
        outputNames: { config in config["outputs"]?.listValue?.compactMap(\.stringValue) })
    static let counter = CubeTypeSchema(name: "counter", doc: "test", config: [])
    let loader = SpecLoader(cubeTypes: [split, counter])

    func load(_ cubes: String) -> ([ChainSpec], [Diagnostic]) {
        var diagnostics = Diagnostics()
        let text = "apiVersion: tailor/v1\nkind: Chain\nmetadata: {name: c}\nspec:\n  attach: {interface: e, hook: xdp}\n"
            + "  cubes:\n" + cubes
        let chains = loader.decode(Array(text.utf8), file: "c.yaml", diagnostics: &diagnostics)
        return (chains, diagnostics.sorted)
    }

    @Test("each named output continues to its cube or ends the path")
    func resolved() throws {
        let (chains, diagnostics) = load("""
                - {name: k, type: split, config: {outputs: [web, other]}, outputs: {web: w, other: end}}
                - {name: w, type: counter}

            """)
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        #expect(try #require(chains.first).cubes.map(\.next) == [["w", nil], [nil]])
    }

    @Test("missing, unknown and misplaced outputs are errors", arguments: [
        ("- {name: k, type: split, config: {outputs: [a, b]}, outputs: {a: end}}",
         "output 'b' of cube 'k' is not mapped to a cube or 'end'"),
        ("- {name: k, type: split, config: {outputs: [a]}, outputs: {a: end, c: end}}",
         "unknown field 'c' in outputs of cube 'k'"),
        ("- {name: k, type: split, config: {outputs: [a]}}",
         "cube 'k' must map each of its outputs (a) to a cube or 'end' under 'outputs'"),
        ("- {name: k, type: split, config: {outputs: [a]}, next: end}",
         "split cubes name their outputs: use 'outputs', not 'next'"),
        ("- {name: k, type: split, config: {outputs: [a]}, outputs: {a: nowhere}}",
         "output 'a' of cube 'k' is 'nowhere', which is not a cube of this chain"),
    ])
    func errors(cube: String, message: String) {
        // decode() may return what it could read; the errors make the whole load fail.
        let (_, diagnostics) = load("    " + cube + "\n")
        #expect(diagnostics.contains { $0.severity == .error && $0.message.contains(message) }, "\(diagnostics)")
    }
}
