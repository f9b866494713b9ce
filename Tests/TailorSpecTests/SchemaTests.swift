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

    /// Bad fixtures whose fault the schema can express as PyYAML (YAML 1.1) reads
    /// them. Not listed, because PyYAML reads them as something the schema accepts:
    /// `yes`/`on` booleans where tailor wants a boolean, `010` (the octal 8), `1e3`
    /// (text to YAML 1.1, a number to YAML 1.2): tailor refuses them all, since
    /// some reader takes them for something other than what tailor would use.
    static let expressible = [
        "api-version", "kind", "missing-kind", "missing-spec", "missing-metadata", "unknown-top-key", "typo-top-key",
        "missing-name", "bad-chain-name", "unknown-metadata-key", "unknown-spec-key", "missing-attach", "missing-cubes",
        "empty-cubes", "cubes-not-list", "bad-hook", "missing-hook", "missing-interface", "long-interface",
        "interface-slash", "bad-mode", "bad-namespace", "unknown-attach-key", "bad-default-verdict", "bad-on-missing",
        "quoted-suspend", "cube-missing-name", "cube-missing-type", "cube-unknown-type", "cube-unknown-key",
        "cube-name-end", "cube-name-slash", "cube-not-mapping", "migration-bad-policy", "tag-missing-config",
        "tag-missing-id", "tag-id-zero", "tag-id-big", "tag-id-string", "tag-unknown-config", "counter-config-field",
        "config-not-mapping", "filter-rules-not-list", "filter-missing-action", "filter-bad-action",
        "filter-typo-match", "filter-bad-port", "filter-bad-proto", "filter-proto-300", "filter-flag-unknown",
        "filter-bad-default", "filter-too-many-rules", "too-many-cubes", "too-many-errors", "tag-id-hex-negative",
        "long-value-excerpt", "filter-bad-ipv4", "ipv4-leading-zero", "filter-bad-cidr", "ipv6-prefix-too-long",
        "ipv6-nine-groups", "interface-colon", "interface-dot-dot", "interface-tab", "name-number",
        "interface-boolean", "interface-yes",
    ]

    @Test("python jsonschema accepts every good spec and example, and rejects the bad ones it can express")
    func crossCheck() throws {
        let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
        var good = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot.appendingPathComponent("specs").path)
            .filter { $0.hasSuffix(".yaml") }.map { repositoryRoot.appendingPathComponent("specs/\($0)").path }
        good += try FileManager.default.contentsOfDirectory(atPath: fixtures.appendingPathComponent("good").path)
            .map { fixtures.appendingPathComponent("good/\($0)").path }
        let bad = Self.expressible.map { fixtures.appendingPathComponent("bad/\($0).yaml").path }
        let script = """
            import json, sys, yaml, jsonschema
            schema = json.load(open(sys.argv[1]))
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema)
            mode, failures = None, []
            for arg in sys.argv[2:]:
                if arg in ("--good", "--bad"):
                    mode = arg
                    continue
                docs = [d for d in yaml.safe_load_all(open(arg)) if d is not None]
                errors = [e for d in docs for e in validator.iter_errors(d)]
                if mode == "--good" and errors:
                    failures.append(f"{arg}: rejected: {errors[0].message}")
                if mode == "--bad" and not errors:
                    failures.append(f"{arg}: accepted")
            print("\\n".join(failures))
            sys.exit(1 if failures else 0)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, Self.schemaFile.path, "--good"] + good + ["--bad"] + bad
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "python3 with jsonschema and pyyaml is required: \(text)")
    }
}
