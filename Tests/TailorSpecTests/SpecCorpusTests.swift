import Foundation
import Testing
import TailorCubes
@testable import TailorSpec

let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
let loader = SpecLoader(cubeTypes: CubeType.schemas)

/// Every diagnostic of loading `path`, blueprint errors included, as `validate` reports them.
func diagnose(_ paths: [String]) -> (DesiredState?, [Diagnostic]) {
    let (state, diagnostics) = loader.load(paths)
    var all = diagnostics
    for chain in state?.chains ?? [] { _ = chain.datapath(diagnostics: &all) }
    return (all.hasErrors ? nil : state, all.sorted)
}

func badFixtures() throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: fixtures.appendingPathComponent("bad").path)
        .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
}

@Suite("spec corpus")
struct SpecCorpusTests {
    @Test("each bad spec is rejected with its expected message at its position", arguments: try badFixtures())
    func badSpec(name: String) throws {
        let file = fixtures.appendingPathComponent("bad/\(name).yaml").path
        let expected = try String(contentsOfFile: fixtures.appendingPathComponent("bad/\(name).expect").path,
                                  encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let (state, diagnostics) = diagnose([file])
        #expect(state == nil, "\(name) was accepted")
        let rendered = diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" }
        #expect(rendered.contains { $0.contains(expected) }, "expected \(expected), got \(rendered)")
        #expect(diagnostics.allSatisfy { $0.location.file == file })
    }

    @Test("nodes are counted while reading: a flow list past the limit is refused at the item that passes it")
    func nodeLimitWhileReading() {
        let limit = SpecLimits().expandedNodes
        let text = "[" + Array(repeating: "1", count: limit + 1000).joined(separator: ",") + "]\n"
        var diagnostics = Diagnostics()
        #expect(loader.decode(Array(text.utf8), file: "list.yaml", diagnostics: &diagnostics).isEmpty)
        // The list counts one, so item `limit` (at column 2 x limit) is the node past it.
        #expect(diagnostics.all.map(\.description) == [
            "list.yaml:1:\(2 * limit): error: document has more than \(limit) nodes; split it into several chains or files",
        ])
    }

    @Test("the corpus has at least 80 bad specs")
    func corpusSize() throws {
        #expect(try badFixtures().count >= 80)
    }

    @Test("good specs and the examples load without a diagnostic and become datapath chains")
    func goodSpecs() throws {
        let (state, diagnostics) = diagnose([fixtures.appendingPathComponent("good").path])
        #expect(diagnostics.map(\.message) == ["cube 'second' is never reached from the chain's first cube"])
        let chains = try #require(state).chains
        #expect(chains.map(\.name).sorted() == ["edge", "gw-nat-in", "gw-nat-out", "ingress-count", "skip", "v6"])
        let skip = try #require(chains.first { $0.name == "skip" })
        #expect(skip.cubes.map(\.next) == [["third"], ["third"], [nil]])
        #expect(skip.suspend && skip.defaultVerdict == .drop && skip.onMissingCube == .failOpen)
        #expect(skip.cubes[2].migration == ["counters": .reset])
        let v6 = try #require(chains.first { $0.name == "v6" })
        #expect(v6.labels == ["team": "net", "tier": "edge"])
        #expect(v6.attach.namespace == "ns1" && v6.attach.mode == .generic)
        var diagnosticsAgain = Diagnostics()
        let (settings, topology) = try #require(v6.datapath(diagnostics: &diagnosticsAgain))
        #expect(settings.defaultVerdict == .pass && topology.entry == "only-v6")
        #expect(topology.nodes["only-v6"]?.blueprint.tables["rules"]?.count == 2)
    }

    @Test("the same spec always gives the same blueprint digests")
    func stableDigests() throws {
        let path = fixtures.appendingPathComponent("good/edge-filter.yaml").path
        let digests = (0..<2).map { _ -> [String] in
            var d = Diagnostics()
            let chain = loader.load([path]).0?.chains.first
            return chain?.datapath(diagnostics: &d)?.1.nodes.values.map(\.blueprint.digest).sorted() ?? []
        }
        #expect(!digests[0].isEmpty && digests[0] == digests[1])
    }
}

@Suite("spec directories and cross-file checks")
struct SpecDirectoryTests {
    /// A fresh directory with `files` (relative path -> text); removed afterwards.
    func withDirectory(_ files: [String: String], _ body: (String) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-spec-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (path, text) in files {
            let full = (dir as NSString).appendingPathComponent(path)
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
        try body(dir)
    }

    static func chain(_ name: String, interface: String = "eth0", hook: String = "xdp", cubes: String? = nil) -> String {
        "apiVersion: tailor/v1\nkind: Chain\nmetadata: {name: \(name)}\nspec:\n  attach: {interface: \(interface), hook: \(hook)}\n"
            + "  cubes:\n" + (cubes ?? "    - {name: a, type: counter}\n")
    }

    @Test("chain names are unique across files, and one chain per hook")
    func crossFile() throws {
        try withDirectory(["a.yaml": Self.chain("same"), "sub/b.yml": Self.chain("same", interface: "eth1"),
                           "c.yaml": Self.chain("other")]) { dir in
            let (state, diagnostics) = diagnose([dir])
            #expect(state == nil)
            let messages = diagnostics.map(\.message)
            #expect(messages.contains { $0.hasPrefix("duplicate chain name 'same' (first at ") })
            #expect(messages.contains { $0.contains("which chain 'same' already uses") })
        }
    }

    @Test("hidden files and other extensions are skipped")
    func skipped() throws {
        try withDirectory(["a.yaml": Self.chain("a"), ".hidden.yaml": "garbage: [", ".git/x.yaml": "garbage: [",
                           "notes.txt": "garbage: ["]) { dir in
            let (state, diagnostics) = diagnose([dir])
            #expect(diagnostics.isEmpty)
            #expect(state?.chains.map(\.name) == ["a"])
        }
    }

    @Test("a symlink leading out of the spec directory is refused")
    func symlinkEscape() throws {
        try withDirectory(["a.yaml": Self.chain("a")]) { outside in
            try withDirectory(["b.yaml": Self.chain("b", interface: "eth1")]) { dir in
                try FileManager.default.createSymbolicLink(atPath: dir + "/evil.yaml", withDestinationPath: outside + "/a.yaml")
                let (state, diagnostics) = diagnose([dir])
                #expect(state == nil)
                #expect(diagnostics.contains { $0.message.hasPrefix("leads outside the spec directory") })
            }
        }
    }

    @Test("a directory linked back into the tree is read once; the links are errors")
    func directoryLoop() throws {
        try withDirectory(["a.yaml": Self.chain("a")]) { dir in
            // Two links back to the root would make an unguarded walk exponential.
            try FileManager.default.createSymbolicLink(atPath: dir + "/again", withDestinationPath: ".")
            try FileManager.default.createSymbolicLink(atPath: dir + "/more", withDestinationPath: ".")
            let (state, diagnostics) = diagnose([dir])
            #expect(state == nil)
            #expect(diagnostics.map { ($0.location.file as NSString).lastPathComponent } == ["again", "more"])
            #expect(diagnostics.allSatisfy { $0.message.hasPrefix("leads back to ") })
        }
    }

    @Test("a FIFO named like a spec is refused, not waited on")
    func fifo() throws {
        try withDirectory(["a.yaml": Self.chain("a")]) { dir in
            #expect(mkfifo(dir + "/pipe.yaml", 0o644) == 0)
            let (state, diagnostics) = diagnose([dir])
            #expect(state == nil)
            #expect(diagnostics.map(\.description) == [
                "\(dir)/pipe.yaml:1:1: error: not a regular file; specs are read from regular files only",
            ])
        }
    }

    @Test("a world-writable spec file in a subdirectory is warned about")
    func worldWritableFile() throws {
        try withDirectory(["sub/a.yaml": Self.chain("a")]) { dir in
            try FileManager.default.setAttributes([.posixPermissions: 0o666], ofItemAtPath: dir + "/sub/a.yaml")
            let (state, diagnostics) = diagnose([dir])
            #expect(state != nil)
            #expect(diagnostics.map(\.description) == [
                "\(dir)/sub/a.yaml:1:1: warning: world-writable: anyone on this host can change the datapath; chmod o-w it",
            ])
        }
    }

    @Test("free-form mappings of tens of thousands of keys load (duplicates found by hashing, not pairwise)")
    func largeFreeFormMappings() throws {
        let labels = (0..<40_000).map { "    l\($0): v\n" }.joined()
        let text = "apiVersion: tailor/v1\nkind: Chain\nmetadata:\n  name: big\n  labels:\n" + labels
            + "spec:\n  attach: {interface: eth0, hook: xdp}\n  cubes:\n    - {name: a, type: counter}\n"
        var diagnostics = Diagnostics()
        let chains = loader.decode(Array(text.utf8), file: "big.yaml", diagnostics: &diagnostics)
        #expect(diagnostics.all.isEmpty)
        #expect(chains.first?.labels.count == 40_000)
    }

    @Test("a world-writable spec directory is warned about")
    func worldWritable() throws {
        try withDirectory(["a.yaml": Self.chain("a")]) { dir in
            try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: dir)
            let (state, diagnostics) = diagnose([dir])
            #expect(state != nil)
            #expect(diagnostics.contains { $0.severity == .warning && $0.message.contains("world-writable") })
        }
    }

    @Test("a path longer than 32 cubes is refused; an unreachable cube is warned about")
    func pathLength() throws {
        let long = (0..<33).map { "    - {name: c\($0), type: counter}\n" }.joined()
        let skip = "    - {name: a, type: counter, next: end}\n    - {name: b, type: counter}\n"
        try withDirectory(["long.yaml": Self.chain("long", cubes: long),
                           "skip.yaml": Self.chain("skip", interface: "eth1", cubes: skip)]) { dir in
            let (_, diagnostics) = diagnose([dir])
            #expect(diagnostics.contains { $0.message.contains("has a path of 33 cubes; the kernel allows at most 32") })
            #expect(diagnostics.contains { $0.severity == .warning && $0.message.contains("'b' is never reached") })
        }
    }

    @Test("every bad rule of a firewall is reported at its own line, up to a file's 100 errors")
    func everyBadRule() throws {
        let rules = (1...150).map { "          - {match: {dport: \($0)}, action: drop}\n" }.joined()
        let cubes = "    - name: fw\n      type: firewall\n      config:\n        policy: accept\n        rules:\n" + rules
        try withDirectory(["fw.yaml": Self.chain("fw", cubes: cubes)]) { dir in
            let (state, diagnostics) = diagnose([dir])
            #expect(state == nil)
            let rendered = diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" }
            #expect(rendered.count == 101)
            #expect(Array(rendered.prefix(100)) == (1...100).map {
                "\(11 + $0):29: cube 'fw': rule \($0): dport needs proto tcp or udp"
            })
            #expect(rendered.last == "112:29: too many errors in this file; stopped after 100")
        }
    }

    @Test("a ratelimit drop list within its schema but over its size for one IP version is refused at drop")
    func dropListPerVersion() throws {
        let drop = (0...RateLimit.maxListed).map { "          - 10.\($0 / 256).\($0 % 256).0/24\n" }.joined()
        let cubes = "    - name: limit\n      type: ratelimit\n      config:\n        rate: 100\n        burst: 10\n"
            + "        drop:\n" + drop
        try withDirectory(["limit.yaml": Self.chain("limit", cubes: cubes)]) { dir in
            let (state, diagnostics) = diagnose([dir])
            #expect(state == nil)
            #expect(diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" } == [
                "13:11: cube 'limit': a drop list holds at most 16384 IPv4 and 16384 IPv6 prefixes, not 16385 and 0",
            ])
        }
    }

    @Test("a file over the size limit is refused by its size, without being read or parsed")
    func oversized() throws {
        try withDirectory(["big.yaml": "# " + String(repeating: "x", count: 4 << 20) + "\n"]) { dir in
            let (_, diagnostics) = diagnose([dir])
            #expect(diagnostics.contains { $0.message.hasPrefix("file is 4194307 bytes; spec files may be at most 4194304") })
        }
    }

    @Test("every error of a run is reported, sorted by file and position")
    func allErrorsSorted() throws {
        try withDirectory(["b.yaml": Self.chain("b", hook: "xpd"), "a.yaml": Self.chain("a", hook: "tcc")]) { dir in
            let (_, diagnostics) = diagnose([dir])
            #expect(diagnostics.count == 2)
            #expect(diagnostics.map { ($0.location.file as NSString).lastPathComponent } == ["a.yaml", "b.yaml"])
        }
    }

    @Test("a UTF-8 byte order mark is allowed")
    func byteOrderMark() throws {
        try withDirectory(["a.yaml": "\u{FEFF}" + Self.chain("a")]) { dir in
            let (state, diagnostics) = diagnose([dir])
            #expect(diagnostics.isEmpty, "\(diagnostics)")
            #expect(state?.chains.map(\.name) == ["a"])
        }
    }

    @Test("a file named twice on the command line is read once")
    func overlappingPaths() throws {
        try withDirectory(["a.yaml": Self.chain("a")]) { dir in
            let (state, diagnostics) = diagnose([dir, dir + "/a.yaml", dir + "/./a.yaml"])
            #expect(diagnostics.isEmpty, "\(diagnostics)")
            #expect(state?.chains.map(\.name) == ["a"])
        }
    }

    @Test("a linked directory that leads back into the tree is the one blamed, not the real directory it names")
    func linkBlamedNotTarget() throws {
        try withDirectory(["z-real/a.yaml": Self.chain("a")]) { dir in
            // Sorted first, the link would be walked before the directory it names.
            try FileManager.default.createSymbolicLink(atPath: dir + "/a-link", withDestinationPath: "z-real")
            let (state, diagnostics) = diagnose([dir])
            #expect(state == nil)
            #expect(diagnostics.map { ($0.location.file as NSString).lastPathComponent } == ["a-link"])
        }
    }

    @Test("a symlinked spec file is judged by its target: not warned about when the target is private, warned about when others can replace it")
    func symlinkedFile() throws {
        try withDirectory(["real/a.yaml": Self.chain("a")]) { dir in
            try FileManager.default.createSymbolicLink(atPath: dir + "/link.yaml", withDestinationPath: "real/a.yaml")
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: dir + "/real/a.yaml")
            // The file is read once (through both names), and a link's own 0777 means nothing.
            let (state, diagnostics) = diagnose([dir + "/link.yaml"])
            #expect(state?.chains.map(\.name) == ["a"] && diagnostics.isEmpty, "\(diagnostics)")
            try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: dir + "/real")
            let (_, replaceable) = diagnose([dir + "/link.yaml"])
            #expect(replaceable.map(\.message) == ["links into \(dir)/real, which is world-writable: anyone on this host "
                + "can replace what it points at; chmod o-w it"])
        }
    }

    @Test("empty documents (a trailing ---, or one between two) are skipped, as kubectl does")
    func emptyDocuments() throws {
        let text = "---\n" + Self.chain("a") + "---\n---\n# only a comment\n---\n" + Self.chain("b", interface: "eth1")
            + "---\n"
        var diagnostics = Diagnostics()
        let chains = loader.decode(Array(text.utf8), file: "docs.yaml", diagnostics: &diagnostics)
        #expect(diagnostics.all.isEmpty, "\(diagnostics.all)")
        #expect(chains.map(\.name) == ["a", "b"])
    }

    @Test("warnings do not count toward the error limit: a valid spec with 120 warnings stays valid")
    func manyWarnings() throws {
        let rules = (0..<120).map { "          - {match: {src: 10.0.\($0).1/8}, action: drop}\n" }.joined()
        let text = Self.chain("w", cubes: "    - name: f\n      type: firewall\n      config:\n        policy: accept\n"
                              + "        rules:\n" + rules)
        try withDirectory(["w.yaml": text]) { dir in
            let (state, diagnostics) = diagnose([dir])
            #expect(state != nil)
            #expect(diagnostics.allSatisfy { $0.severity == .warning })
            #expect(diagnostics.count == 101 && diagnostics.last?.message.hasPrefix("too many warnings") == true)
        }
    }

    @Test("the position of the first byte that is not UTF-8, in characters")
    func invalidUTF8Position() {
        var diagnostics = Diagnostics()
        _ = YAMLReader.documents(Array("a: é\nbb: ".utf8) + [0xC3, 0x28], file: "x.yaml", diagnostics: &diagnostics)
        #expect(diagnostics.all.map(\.description) == ["x.yaml:2:5: error: file is not valid UTF-8 (byte 0xC3)"])
    }

    @Test("plain scalars other YAML readers take as numbers, booleans or null are refused where a string is wanted; quoted they are text")
    func nonTextScalars() throws {
        let cases = ["123", "1e3", "0x1F", "0o17", "017", "yes", "Off", "True", "~", "1:20", ".inf", "+12", "09", ".5",
                     "1.", "-1_000", "1:20:30.5", "2E-3", "0b101", "-.INF", ".NaN"]
        for text in cases {
            var diagnostics = Diagnostics()
            let node = YAMLNode(value: .scalar(text), location: SourceLocation(file: "f", line: 1, column: 1),
                                isQuoted: false, size: 1)
            #expect(node.string("x", diagnostics: &diagnostics) == nil, "\(text)")
            let quoted = YAMLNode(value: .scalar(text), location: node.location, isQuoted: true, size: 1)
            #expect(quoted.string("x", diagnostics: &diagnostics) == text)
        }
        for text in ["eth0", "10.0.0.1", "fd00::1", "1000-2000", "v1.2", "0x", "e1", "edge-1", ".", "1:60", "1e", "1.2.3",
                     "-", "0o", "12ab", "1_000x", "-.nan"] {
            var diagnostics = Diagnostics()
            let node = YAMLNode(value: .scalar(text), location: SourceLocation(file: "f", line: 1, column: 1),
                                isQuoted: false, size: 1)
            #expect(node.string("x", diagnostics: &diagnostics) == text, "\(diagnostics.all)")
        }
    }

    @Test("a spec file that cannot be read (here a link to nothing) is an error at the file, so no reconcile prunes what it held")
    func unreadableFile() throws {
        try withDirectory(["a.yaml": Self.chain("a")]) { dir in
            try FileManager.default.createSymbolicLink(atPath: dir + "/b.yaml", withDestinationPath: "gone.yaml")
            let (state, diagnostics) = diagnose([dir])
            #expect(state == nil)
            #expect(diagnostics.map(\.description).contains { $0.hasPrefix("\(dir)/b.yaml:1:1: error: ") }, "\(diagnostics)")
        }
    }

    @Test("a missing path is an error")
    func missingPath() {
        let (_, diagnostics) = diagnose(["/nonexistent/specs"])
        #expect(diagnostics.first?.message == "no such file or directory")
    }
}
