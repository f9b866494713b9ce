import Foundation
import Testing
import TailorCubes
@testable import TailorSpec

/// Specs written back by SpecWriter load again as the same chains: the normalized
/// text is a fixed point and gives the same datapath blueprints.
@Suite("round trip")
struct RoundTripTests {
    /// Loads `text`, failing the test on any error.
    func decode(_ text: String, with loader: SpecLoader, _ comment: Comment) -> [ChainSpec] {
        var diagnostics = Diagnostics()
        let chains = loader.decode(Array(text.utf8), file: "normalized.yaml", diagnostics: &diagnostics)
        #expect(!diagnostics.hasErrors, "\(comment): \(diagnostics.sorted)\n\(text)")
        return chains
    }

    static func goodSpecPaths() throws -> [String] {
        let specs = repositoryRoot.appendingPathComponent("specs").path
        return try FileManager.default.contentsOfDirectory(atPath: specs).filter { $0.hasSuffix(".yaml") }
            .map { "\(specs)/\($0)" }
            + FileManager.default.contentsOfDirectory(atPath: fixtures.appendingPathComponent("good").path)
            .map { fixtures.appendingPathComponent("good/\($0)").path }
    }

    @Test("every good spec and example writes back to text that loads as the same chains", arguments: try goodSpecPaths())
    func goodSpecs(path: String) throws {
        let writer = SpecWriter(cubeTypes: CubeType.schemas)
        let original = try #require(loader.load([path]).0).chains
        let text = try writer.yaml(original)
        let again = decode(text, with: loader, "\(path) written back")
        #expect(try writer.yaml(again) == text, "the normalized text of \(path) is not a fixed point")
        func digests(_ chains: [ChainSpec]) -> [String] {
            var diagnostics = Diagnostics()
            return chains.flatMap { chain in
                chain.datapath(diagnostics: &diagnostics)?.1.nodes.sorted { $0.key < $1.key }
                    .map { "\(chain.name)/\($0.key) \($0.value.next) \($0.value.blueprint.digest)" } ?? []
            }
        }
        #expect(digests(again) == digests(original) && !digests(original).isEmpty)
    }

    @Test("strings that YAML would read as something else are quoted on the way out")
    func awkwardStrings() throws {
        let values = ["null", "~", "", "true", "no", "Y", "80", "0x10", "-1", ".5", "1e3", "a: b", "# not a comment",
                      "- item", "[x]", "{y}", "*alias", "&anchor", "!tag", "%dir", "@at", "`tick", "'single'",
                      "\"double\"", "two\nlines", "tab\there", " padded ", "é ünïcödé", "\u{85}next line", "\u{2028}", "\u{202E}rtl",
                      "trailing:", "---", "...", "|", ">", "?", String(repeating: "long ", count: 100)]
        let labels = values.enumerated().map { "    k\($0.offset): \(json($0.element))\n" }.joined()
        let text = "apiVersion: tailor/v1\nkind: Chain\nmetadata:\n  name: c\n  labels:\n" + labels
            + "    \(json("key: with colon")): x\n"
            + "spec:\n  attach: {interface: e, hook: xdp}\n  cubes: [{name: a, type: counter}]\n"
        let chain = try #require(decode(text, with: loader, "the input").first)
        let written = try SpecWriter(cubeTypes: CubeType.schemas).yaml([chain])
        let again = try #require(decode(written, with: loader, "written back").first)
        #expect(again.labels == chain.labels)
        #expect(chain.labels.count == values.count + 1)
    }

    /// A JSON string literal is a YAML double-quoted scalar; the characters specs
    /// may not hold raw are written as escapes.
    func json(_ text: String) -> String {
        String(decoding: (try? JSONEncoder().encode(text)) ?? Data(), as: UTF8.self).unicodeScalars.map { scalar in
            YAMLReader.invisibleBreaks[scalar.value] == nil ? String(scalar)
                : "\\u" + String(("000" + String(scalar.value, radix: 16)).suffix(4))
        }.joined()
    }

    static let split = CubeTypeSchema(
        name: "split", doc: "test: named outputs",
        config: [ConfigField("outputs", .list(.string, maxItems: 8), required: true, doc: "output names")],
        outputNames: { config in config["outputs"]?.listValue?.compactMap(\.stringValue) })
    static let raw = CubeTypeSchema(
        name: "raw", doc: "test: YAML kept as written",
        config: [ConfigField("data", .yaml(description: "any YAML"), doc: "kept with positions")])

    @Test("named outputs and YAML kept as written (quoted or plain) survive the trip")
    func outputsAndNodes() throws {
        let loader = SpecLoader(cubeTypes: [Self.split, Self.raw])
        let text = """
            apiVersion: tailor/v1
            kind: Chain
            metadata: {name: c}
            spec:
              attach: {interface: e, hook: tc-ingress}
              cubes:
                - {name: k, type: split, config: {outputs: [web, other]}, outputs: {other: end, web: w}}
                - name: w
                  type: raw
                  config:
                    data:
                      - {key: {addr: 10.0.0.1, port: 80}, value: {label: "80", mac: "02:00:00:00:00:01", n: 0x10}}
                      - [1, "two", ~, '', true]

            """
        let chain = try #require(decode(text, with: loader, "the input").first)
        let writer = SpecWriter(cubeTypes: [Self.split, Self.raw])
        let written = try writer.yaml([chain])
        let again = try #require(decode(written, with: loader, "written back").first)
        #expect(again.cubes.map(\.next) == [["w", nil], [nil]])
        #expect(written.contains("outputs:\n      web: w\n      other: end\n"), "outputs in declared order: \(written)")
        #expect(try writer.yaml([again]) == written)
        let data = try #require(again.cubes[1].config["data"]?.nodeValue)
        #expect(data.kindName == "a list")
        #expect(written.contains("label: \"80\"") && written.contains("port: 80") && written.contains("n: 0x10"))
    }
}
