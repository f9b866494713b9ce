import Foundation
import Testing
import TailorCubes
@testable import TailorSpec

/// The repository root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

@Suite("JSON Schema")
struct SchemaTests {
    static let schemaFile = repositoryRoot.appendingPathComponent("schemas/tailor-v1.schema.json")

    @Test("schemas/tailor-v1.schema.json is what `tailor schema` generates (regenerate: tailor schema > schemas/tailor-v1.schema.json)")
    func committedSchemaIsCurrent() throws {
        let committed = try String(contentsOf: Self.schemaFile, encoding: .utf8)
        #expect(committed == (try JSONSchema.text(cubeTypes: CubeType.schemas)))
    }

    @Test("every property of the schema has a description, so editors can show what a field does")
    func everyPropertyDescribed() throws {
        let schema = try JSONSerialization.jsonObject(with: Data(try JSONSchema.text(cubeTypes: CubeType.schemas).utf8))
        var missing: [String] = []
        func walk(_ value: Any, _ path: String) {
            if let object = value as? [String: Any] {
                // The `if` branches only select a cube type; they describe nothing.
                if let properties = object["properties"] as? [String: Any], !path.hasSuffix("/if") {
                    for (name, property) in properties where (property as? [String: Any])?["description"] == nil {
                        missing.append("\(path)/\(name)")
                    }
                }
                for (key, child) in object { walk(child, "\(path)/\(key)") }
            } else if let array = value as? [Any] {
                for (index, child) in array.enumerated() { walk(child, "\(path)[\(index)]") }
            }
        }
        walk(schema, "")
        #expect(missing.isEmpty, "no description: \(missing.sorted())")
    }
}
