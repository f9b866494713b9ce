import Foundation
import Testing
import TailorCubes
import TailorDatapath
import TailorLab
import TailorSpec
import TailorTestKit

@Suite("classifier cube", .kernel)
struct ClassifierTests {
    /// classifier -> web | dns | other, each a counter at the end of its path.
    static func topology(_ classifier: CubeBlueprint) throws -> Topology {
        Topology(entry: "split", nodes: [
            "split": .init(blueprint: classifier, next: ["web", "dns", "other"]),
            "web": .init(blueprint: try Counter.blueprint(), next: [nil]),
            "dns": .init(blueprint: try Counter.blueprint(), next: [nil]),
            "other": .init(blueprint: try Counter.blueprint(), next: [nil]),
        ])
    }

    static let classifier = Result {
        try Classifier.blueprint(rules: [
            (Filter.Rule(proto: 6, destinationPorts: 80...80, action: .pass), 0),
            (Filter.Rule(proto: 6, destinationPorts: 443...443, action: .pass), 0),
            (Filter.Rule(proto: 17, destinationPorts: 53...53, action: .pass), 1),
            (Filter.Rule(proto: 17, source: IPPrefix("10.99.0.0/24")!, action: .pass), 2),
        ], defaultOutput: 2, outputs: 3)
    }

    static func counts(_ chain: Chain) throws -> [UInt64] {
        try ["web", "dns", "other"].map { try chain.counters(of: $0).packets }
    }

    @Test("each class takes its output's path, first match wins, the rest the default")
    func paths() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .xdp(.native))
                let chain = try Chain.create(ChainSettings(name: "cls", hook: hook),
                                             topology: try Self.topology(Self.classifier.get()), pinRoot: root)
                defer { try? chain.destroy() }
                let cases: [(PacketBuilder, [UInt64])] = [
                    (PacketBuilder(from: "192.0.2.1", to: "192.0.2.2", .tcp(sport: 1, dport: 80, flags: .syn)), [1, 0, 0]),
                    (PacketBuilder(from: "192.0.2.1", to: "192.0.2.2", .tcp(sport: 1, dport: 443, flags: .ack)), [2, 0, 0]),
                    (PacketBuilder(from: "10.99.0.1", to: "192.0.2.2", .udp(sport: 1, dport: 53)), [2, 1, 0]),
                    (PacketBuilder(from: "10.99.0.1", to: "192.0.2.2", .udp(sport: 1, dport: 54)), [2, 1, 1]),
                    (PacketBuilder(from: "192.0.2.1", to: "192.0.2.2", .icmpEcho(id: 1, sequence: 1)), [2, 1, 2]),
                    (PacketBuilder(from: "fd00::1", to: "fd00::2", .udp(sport: 1, dport: 53)), [2, 2, 2]),
                ]
                for (packet, expected) in cases {
                    #expect(try chain.rootProgram.testRun(packet.bytes).returnValue == 2)
                    #expect(try Self.counts(chain) == expected, "\(packet)")
                }
                // Real packets over the veth pair: DNS to its path, the rest by default.
                #expect(try Traffic.udp(in: lab, count: 5, port: 53) == 5)
                #expect(try Traffic.udp(in: lab, count: 3, port: 9999) == 3)
                #expect(try Self.counts(chain) == [2, 7, 5])
            }
        }
    }

    @Test("in a spec, outputs are named and mapped; a rule naming no output is refused at its output")
    func spec() throws {
        let text = """
        apiVersion: tailor/v1
        kind: Chain
        metadata: {name: split}
        spec:
          attach: {interface: eth0, hook: xdp}
          cubes:
            - name: split
              type: classifier
              config:
                outputs: [web, other]
                rules:
                  - {match: {proto: tcp, dport: 80}, output: web}
                  - {match: {proto: udp, dport: 53}, output: dns}
                default: other
              outputs: {web: count, other: end}
            - {name: count, type: counter}

        """
        let (chain, diagnostics) = try Self.load(text)
        #expect(chain == nil)
        #expect(diagnostics.contains { $0.hasSuffix("c.yaml:13:54: error: cube 'split': rule 2: output 'dns' is not one of web, other") },
                "\(diagnostics)")
        let (good, clean) = try Self.load(text.replacingOccurrences(of: "output: dns", with: "output: other"))
        #expect(clean.isEmpty, "\(clean)")
        #expect(good?.nodes["split"]?.next == ["count", nil])
        #expect(good?.nodes["split"]?.blueprint.outputs == 2)
    }

    static func load(_ text: String) throws -> (Topology?, [String]) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-cls-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try text.write(toFile: directory + "/c.yaml", atomically: true, encoding: .utf8)
        let (state, diagnostics) = SpecLoader(cubeTypes: CubeType.schemas).load([directory])
        var all = diagnostics
        let chain = state?.chains.first.flatMap { $0.datapath(diagnostics: &all) }
        return (chain?.1, all.sorted.map(\.description))
    }
}
