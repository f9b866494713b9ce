import Foundation
import Testing

/// `tailor validate` and the JSON Schema (`tailor schema`, as editors and CI linters
/// use it through python's jsonschema and PyYAML) give every case of the spec corpus
/// the same verdict, except where they must differ; docs/spec.md lists the same classes.
@Suite("validate and the JSON Schema agree")
struct SchemaVerdictTests {
    static let fixtures = Golden.root.appendingPathComponent("Tests/TailorSpecTests/Fixtures")

    /// Bad fixtures `tailor validate` refuses and the schema accepts, by why. Each is
    /// either a rule a JSON Schema cannot state, or YAML that PyYAML reads as something
    /// the schema accepts while tailor refuses it because readers disagree on it.
    /// A case here that the schema comes to refuse is an error too: the list stays exact.
    static let schemaAccepts: [(why: String, cases: [String])] = [
        ("YAML 1.1 readings: PyYAML takes yes/on for booleans and 010 for the octal 8, which the schema accepts",
         ["bad-suspend", "tag-record-string", "leading-zero-integer", "leading-zero-port"]),
        ("characters refused anywhere in the text (line separators, bidirectional controls), not values",
         ["bidi-override", "comment-line-separator"]),
        ("YAML that PyYAML resolves before the schema sees it: duplicate keys (it keeps the last), merge keys, "
            + "explicit tags",
         ["duplicate-key-nested", "duplicate-top-key", "label-duplicate", "migration-duplicate", "merge-key",
          "tag-explicit"]),
        ("IPv6 text in detail: the schema's pattern counts neither groups nor '::'",
         ["filter-bad-ipv6", "ipv6-two-gaps"]),
        ("a cube's rules across its fields: ports and tcpFlags need their protocol, src and dst one IP version, "
            + "tcpFlags.set within mask, a port range low to high, a classifier's outputs distinct and named by its rules, "
            + "a nat's rules of one IP version, its address ranges apart and its forwarded ports distinct",
         ["filter-flags-no-tcp", "filter-flags-set-outside-mask", "filter-mixed-families", "filter-port-icmp",
          "filter-port-no-proto", "filter-reversed-range", "firewall-rule-flags-no-proto",
          "firewall-rule-flags-set-outside-mask", "firewall-rule-mixed-families", "firewall-rule-port-icmp",
          "firewall-rule-port-no-proto", "classifier-default-unknown-output", "classifier-duplicate-output",
          "classifier-rule-unknown-output", "nat-duplicate-dnat", "nat-mixed-families", "nat-overlapping-ranges",
          "nat-reversed-range"]),
        ("what a cube type does not support yet: the nat cube's IPv6", ["nat-ipv6"]),
        ("the chain's graph: cube names unique, next and outputs naming cubes of the chain, no cycle, "
            + "next or outputs as the cube type has one output or several",
         ["cube-duplicate-name", "cycle", "cycle-branching", "next-self", "next-unknown", "outputs-on-single"]),
        ("the file an object cube names: there, a BPF object, with the sha256 the spec pins",
         ["object-missing-file", "object-not-elf", "object-short-sha256", "object-wrong-sha256"]),
    ]

    /// What python's jsonschema says of each file: a line `accept` or `reject: why`
    /// per file, in order. A file PyYAML cannot read is rejected.
    static let script = """
        import json, sys, yaml, jsonschema
        schema = json.load(open(sys.argv[1]))
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for path in sys.argv[2:]:
            try:
                docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d is not None]
                errors = [e.message for d in docs for e in validator.iter_errors(d)]
                print("reject: " + errors[0].replace("\\n", " ")[:200] if errors else "accept")
            except Exception as e:
                print("reject: unreadable: " + type(e).__name__)
        """

    @Test("every bad fixture, good fixture and example gets the same verdict from both, but for the listed classes")
    func sameVerdict() throws {
        let bad = try FileManager.default.contentsOfDirectory(atPath: Self.fixtures.appendingPathComponent("bad").path)
            .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
        let good = try ["specs", "Tests/TailorSpecTests/Fixtures/good"].flatMap { directory in
            try FileManager.default.contentsOfDirectory(atPath: Golden.root.appendingPathComponent(directory).path)
                .filter { $0.hasSuffix(".yaml") }.sorted().map { "\(directory)/\($0)" }
        }
        let listed = Dictionary(Self.schemaAccepts.flatMap { entry in entry.cases.map { ($0, entry.why) } },
                                uniquingKeysWith: { first, _ in first })
        #expect(listed.count == Self.schemaAccepts.map(\.cases.count).reduce(0, +), "a case is listed twice")
        #expect(Set(listed.keys).subtracting(bad).isEmpty, "listed but not a bad fixture: \(Set(listed.keys).subtracting(bad))")

        let files = bad.map { "Tests/TailorSpecTests/Fixtures/bad/\($0).yaml" } + good
        let schema = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-schema-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: schema) }
        let generated = try CLI.run(["schema"])
        #expect(generated.status == 0, "tailor schema: \(generated.stderr)")
        try generated.stdout.write(to: schema, atomically: true, encoding: .utf8)
        let python = try CLI.run(["python3", "-c", Self.script, schema.path]
                                 + files.map { Golden.root.appendingPathComponent($0).path },
                                 // The caller's PATH: the python3 that scripts/setup gave the modules to.
                                 environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"],
                                 executable: "/usr/bin/env")
        let schemaVerdicts = python.stdout.split(separator: "\n").map(String.init)
        try #require(python.status == 0 && schemaVerdicts.count == files.count,
                     "python3 with jsonschema and pyyaml is required (scripts/setup installs them): \(python.stderr)")

        var disagreements: [String] = []
        for (file, schemaVerdict) in zip(files, schemaVerdicts) {
            let validate = try CLI.run(["validate", "--color", "never", file])
            let name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
            let isBad = file.contains("/bad/")
            guard validate.status == (isBad ? 1 : 0) else {
                disagreements.append("\(file): tailor validate exited \(validate.status): \(validate.stderr)")
                continue
            }
            let schemaAccepted = schemaVerdict == "accept"
            switch (isBad, schemaAccepted, listed[name]) {
            case (false, true, _), (true, false, nil), (true, true, .some): break
            case (false, false, _): disagreements.append("\(file): valid, but the schema says \(schemaVerdict)")
            case (true, true, nil): disagreements.append("\(file): refused by validate, accepted by the schema, "
                                                         + "and in no class that may differ")
            case (true, false, .some(let why)): disagreements.append("\(file): now refused by the schema too "
                                                                     + "(\(schemaVerdict)); take it out of '\(why)'")
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.joined(separator: "\n"))")
    }
}
