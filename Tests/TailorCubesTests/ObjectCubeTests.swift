import Foundation
import Testing
import TailorCubes
import TailorDatapath
import TailorLab
import TailorSpec
import TailorTestKit

/// A spec directory holding `flowtable.o` (bpf/tests/flowtable.c) and one chain
/// whose object cube is configured by `config` (YAML lines under `config:`).
struct ObjectSpec {
    let directory: String
    let digest: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-obj-\(UUID().uuidString)").path
        let bytes = try Fixtures.testObject("flowtable")
        try FileManager.default.createDirectory(atPath: directory + "/objects", withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: directory + "/objects/flowtable.o"))
        digest = CubeBlueprint(type: "object", object: bytes).objectDigest
    }

    func load(_ config: String) throws -> (Topology?, [Diagnostic]) {
        let text = """
            apiVersion: tailor/v1
            kind: Chain
            metadata: {name: flows}
            spec:
              attach: {interface: eth0, hook: tc-ingress}
              cubes:
                - name: flows
                  type: object
                  config:
            \(config.split(separator: "\n").map { "          " + $0 }.joined(separator: "\n"))

            """
        try text.write(toFile: directory + "/chain.yaml", atomically: true, encoding: .utf8)
        let (state, loaded) = SpecLoader(cubeTypes: CubeType.schemas).load([directory])
        var diagnostics = loaded
        let result = state?.chains.first?.datapath(diagnostics: &diagnostics)
        return (result?.1, diagnostics.sorted)
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    static let entry = """
        tables:
          flows:
            - key: {addr: 10.99.0.2, port: 80, proto: 6}
              value: {limit: 1000, next_hop: "02:00:00:00:00:09", action: 1, weight: -3, v6: "fd00::1", label: web}
        """
}

@Suite("object cube: any BTF object, tables written by field name")
struct ObjectCubeTests {
    @Test("table entries and rodata are encoded through the object's BTF")
    func encodes() throws {
        let spec = try ObjectSpec()
        defer { spec.remove() }
        let (topology, diagnostics) = try spec.load("""
            path: objects/flowtable.o
            sha256: \(spec.digest)
            rodata: {unknown_flow: FLOW_DROP}
            \(ObjectSpec.entry)
            """)
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let blueprint = try #require(topology?.nodes["flows"]?.blueprint)
        #expect(blueprint.rodata == ["unknown_flow": [1, 0, 0, 0]])
        let entry = try #require(blueprint.tables["flows"]?.first)
        #expect(entry.key == [10, 99, 0, 2, 80, 0, 6, 0])
        var value = [UInt8](repeating: 0, count: 40)
        value[0] = 0xe8; value[1] = 0x03                            // limit 1000, little-endian
        value.replaceSubrange(8..<14, with: [2, 0, 0, 0, 0, 9])      // next_hop
        value[14] = 1                                                // action
        value[15] = 0xfd                                             // weight -3
        value.replaceSubrange(16..<32, with: [0xfd] + Array(repeating: 0, count: 14) + [1])
        value.replaceSubrange(32..<35, with: Array("web".utf8))
        #expect(entry.value == value)
    }

    @Test("wrong fields, widths, digests and paths are errors at their position", arguments: [
        ("sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"", "has sha256"),
        // Unquoted, all digits with a leading zero is a number to YAML 1.1 readers.
        ("sha256: 0000000000000000000000000000000000000000000000000000000000000000", "YAML reads as the octal number"),
        ("sha256: abc", "sha256 must be 64 hex digits"),
        ("tables: {flows: [{key: {adr: 1, port: 80}, value: {}}]}", "has no field 'adr' (did you mean 'addr'?)"),
        ("tables: {flows: [{key: {port: 70000}, value: {}}]}", "70000 does not fit flows key.port (unsigned 16-bit)"),
        ("tables: {flows: [{key: {proto: tcp}, value: {}}]}", "expected an integer for flows key.proto"),
        ("tables: {flows: [{key: {}, value: {label: averyverylonglabel}}]}", "does not fit flows value.label (8 bytes)"),
        ("tables: {flows: [{key: {}}]}", "each entry of table 'flows' has exactly 'key' and 'value'"),
        ("tables: {flws: []}", "the object has no map 'flws'"),
        ("tables: {tailor_counters: []}", "map 'tailor_counters' is not marked TAILOR_TABLE"),
        ("rodata: {unknown: 1}", "the object has no `const volatile` global 'unknown'"),
        ("rodata: {unknown_flow: FLOW_MAYBE}", "expected an integer for unknown_flow (FLOW_DROP, FLOW_PASS or a number)"),
    ])
    func errors(line: String, message: String) throws {
        let spec = try ObjectSpec()
        defer { spec.remove() }
        let sha = line.hasPrefix("sha256") ? "" : "sha256: \(spec.digest)\n"
        let (topology, diagnostics) = try spec.load("path: objects/flowtable.o\n" + sha + line)
        #expect(topology == nil)
        #expect(diagnostics.contains { $0.message.contains(message) }, "\(diagnostics)")
        #expect(diagnostics.allSatisfy { $0.location.file.hasSuffix("chain.yaml") && $0.location.line > 1 })
    }

    @Test("an object path leading out of the spec directory is refused")
    func escape() throws {
        let spec = try ObjectSpec()
        defer { spec.remove() }
        let (_, diagnostics) = try spec.load("path: ../../etc/passwd\nsha256: \(spec.digest)")
        #expect(diagnostics.contains { $0.message.contains("leads outside the spec directory") })
    }

    @Test("an object path naming a FIFO, a directory or a file over 16 MiB is refused at the path, by what fstat says",
          arguments: ["fifo", "directory", "huge"])
    func notRead(kind: String) throws {
        let spec = try ObjectSpec()
        defer { spec.remove() }
        let path = spec.directory + "/objects/other.o"
        switch kind {
        case "fifo": #expect(mkfifo(path, 0o600) == 0)
        case "directory": try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        default:
            // Sparse, and 1,000 bytes past the limit: the size in the message is fstat's, not what was read.
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: UInt64(ObjectCube.maxObjectBytes + 1000))
            try handle.close()
        }
        let (topology, diagnostics) = try spec.load("path: objects/other.o\nsha256: \(spec.digest)")
        #expect(topology == nil)
        let expected = kind == "huge" ? "is 16778216 bytes; object files may be at most 16777216 (16 MiB)"
            : "is not a regular file (a FIFO, device or directory)"
        #expect(diagnostics.map { "\($0.location.line):\($0.location.column)" } == ["10:17"], "\(diagnostics)")
        #expect(diagnostics.contains { $0.message.contains(expected) }, "\(diagnostics)")
    }

    @Test("an object cube runs in a chain with its table filled from the spec", .kernel)
    func runs() async throws {
        let spec = try ObjectSpec()
        defer { spec.remove() }
        let (topology, diagnostics) = try spec.load("path: objects/flowtable.o\nsha256: \(spec.digest)\n"
                                                    + ObjectSpec.entry)
        #expect(diagnostics.isEmpty)
        let flows = try #require(topology)
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                let chain = try Chain.create(ChainSettings(name: "obj", hook: hook), topology: flows, pinRoot: root)
                defer { try? chain.destroy() }
                let web = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .tcp(sport: 1, dport: 80, flags: .syn))
                let other = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .tcp(sport: 1, dport: 81, flags: .syn))
                #expect(try chain.rootProgram.testRun(web.bytes).returnValue == 2)    // TC_ACT_SHOT
                #expect(try chain.rootProgram.testRun(other.bytes).returnValue == 0)  // TC_ACT_OK
                let table = try #require(chain.map("flows", of: "flows"))
                let entries = try table.entries()
                #expect(entries.map(\.key) == flows.nodes["flows"]?.blueprint.tables["flows"]?.map(\.key))
                #expect(entries.map(\.value) == flows.nodes["flows"]?.blueprint.tables["flows"]?.map(\.value))
            }
        }
    }
}
