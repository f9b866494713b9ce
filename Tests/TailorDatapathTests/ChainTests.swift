import Synchronization
import Testing
import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

let hookKinds: [ChainHook.Kind] = [.xdp(.native), .xdp(.generic), .tcIngress, .tcEgress]

@Suite("chains on the real kernel", .kernel)
struct ChainTests {
    @Test("chains of 1, 2, 4 and 8 cubes give the verdicts and counters expected",
          arguments: [1, 2, 4, 8], [ChainHook.Kind.xdp(.native), .tcIngress])
    func chainsOfCounters(length: Int, kind: ChainHook.Kind) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let names = (0..<length).map { "c\($0)" }
                let topology = Topology.line(try names.map { ($0, try Blueprints.counter()) })
                let chain = try Chain.create(ChainSettings(name: "n\(length)", hook: lab.hook(kind)),
                                             topology: topology, pinRoot: root)
                defer { try? chain.destroy() }
                let packet = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .udp(sport: 1, dport: 2)).bytes
                let run = try chain.rootProgram.testRun(packet, repeat: 1000)
                #expect(run.returnValue == verdicts(chain.settings.hook).pass)
                #expect(try Traffic.udp(in: lab, count: 50) == 50)
                let rootCounters = try chain.rootCounters()
                #expect(rootCounters.packets == 1050 && rootCounters.forwarded == 1050)
                #expect(rootCounters.passed == 0 && rootCounters.dropped == 0 && rootCounters.missed == 0)
                for (index, name) in names.enumerated() {
                    let counters = try chain.counters(of: name)
                    let last = index == length - 1
                    #expect(counters.packets == 1050, "\(name)")
                    #expect(counters.forwarded == (last ? 0 : 1050), "\(name)")
                    #expect(counters.passed == (last ? 1050 : 0), "\(name)")
                    #expect(counters.dropped == 0 && counters.missed == 0, "\(name)")
                    let own = try #require(chain.map("counters", of: name))
                    let perCPU = own.perCPUValues(try #require(try own.lookup([0, 0, 0, 0])))
                    #expect(perCPU.map { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }.reduce(0, +) == 1050)
                }
            }
        }
    }

    @Test("a filter in the middle drops what it matches; the cubes after it see none", arguments: hookKinds)
    func filterDrops(kind: ChainHook.Kind) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let topology = Topology.line([("before", try Blueprints.counter()),
                                              ("filter", try Blueprints.dropUDP(port: 9999)),
                                              ("after", try Blueprints.counter())])
                let chain = try Chain.create(ChainSettings(name: "f", hook: lab.hook(kind)),
                                             topology: topology, pinRoot: root)
                defer { try? chain.destroy() }
                #expect(try Traffic.udp(in: lab, count: 20, port: 9999, timeout: .milliseconds(300)) == 0)
                #expect(try Traffic.udp(in: lab, count: 20, port: 9000) == 20)
                #expect(try chain.counters(of: "before").packets == 40)
                #expect(try chain.counters(of: "filter").dropped == 20)
                #expect(try chain.counters(of: "filter").forwarded == 20)
                #expect(try chain.counters(of: "after").packets == 20)
            }
        }
    }

    @Test("a branching cube sends each class down its own path")
    func branches() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let topology = Topology(entry: "split", nodes: [
                    "split": .init(blueprint: try Blueprints.split(), next: ["even", "odd"]),
                    "even": .init(blueprint: try Blueprints.tag(2), next: ["rec"]),
                    "odd": .init(blueprint: try Blueprints.tag(3), next: ["rec"]),
                    "rec": .init(blueprint: try Blueprints.tag(9, record: true), next: [nil]),
                ])
                let chain = try Chain.create(ChainSettings(name: "b", hook: lab.hook(.xdp(.native))),
                                             topology: topology, pinRoot: root)
                defer { try? chain.destroy() }
                for sport in [UInt16(10), 11, 12] {
                    let packet = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .udp(sport: sport, dport: 2)).bytes
                    _ = try chain.rootProgram.testRun(packet, repeat: 100)
                }
                #expect(try chain.counters(of: "even").packets == 200)
                #expect(try chain.counters(of: "odd").packets == 100)
                #expect(try recordedPaths(chain) == [[2, 9]: 200, [3, 9]: 100])
            }
        }
    }

    @Test("an empty reachable slot fails closed or open as the chain says, and is counted",
          arguments: [Verdict.drop, .pass])
    func emptySlot(policy: Verdict) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let topology = Topology.line([("a", try Blueprints.counter()), ("b", try Blueprints.counter())])
                let settings = ChainSettings(name: "e", hook: lab.hook(.xdp(.native)), onEmptySlot: policy)
                let chain = try Chain.create(settings, topology: topology, pinRoot: root)
                defer { try? chain.destroy() }
                // Break the chain by hand, as a careless operator with bpftool would.
                let slots = try ProgramArray(pinnedAt: chain.directory + "/progs")
                try slots.clear(try #require(chain.layout["b"]).slot)
                let packet = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .udp(sport: 1, dport: 2)).bytes
                let run = try chain.rootProgram.testRun(packet, repeat: 10)
                #expect(run.returnValue == (policy == .drop ? 1 : 2))
                let a = try chain.counters(of: "a")
                #expect(a.forwarded == 10 && a.missed == 10)
                #expect(policy == .drop ? a.dropped == 10 : a.passed == 10)
                // Slot 0 itself empty: the root counts the miss.
                try slots.clear(0)
                _ = try chain.rootProgram.testRun(packet, repeat: 5)
                #expect(try chain.rootCounters().missed == 5)
            }
        }
    }

    @Test("the end of a path applies the chain's default verdict")
    func defaultVerdict() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let settings = ChainSettings(name: "d", hook: lab.hook(.tcIngress), defaultVerdict: .drop)
                let chain = try Chain.create(settings, topology: .line([("a", try Blueprints.counter())]),
                                             pinRoot: root)
                defer { try? chain.destroy() }
                #expect(try Traffic.udp(in: lab, count: 10, timeout: .milliseconds(300)) == 0)
                #expect(try chain.counters(of: "a").dropped == 10)
            }
        }
    }

    @Test("pins show the chain; destroy detaches the root and removes every pin")
    func pinsAndDestroy() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = lab.hook(.xdp(.native))
                let chain = try Chain.create(ChainSettings(name: "p", hook: hook),
                                             topology: .line([("a", try Blueprints.tag(1))]), pinRoot: root)
                for pin in ["root", "progs", "packet_meta", "root_counters", "cubes/a/prog",
                            "cubes/a/maps/tailor_counters", "cubes/a/maps/paths"] {
                    #expect(root.exists(chain.directory + "/" + pin), "\(pin)")
                }
                let interface = try lab.b.interface()
                #expect(try XDP.query(interface).native == chain.rootProgram.info().id)
                let again = #expect(throws: DatapathError.self) {
                    try Chain.create(ChainSettings(name: "p", hook: hook), topology: .line([]), pinRoot: root)
                }
                #expect(again?.code == .chainExists && again?.chain == "p")
                #expect(again?.description == "chain p already exists at \(chain.directory)")
                try chain.destroy()
                #expect(!root.exists(chain.directory))
                #expect(try XDP.query(interface) == XDPAttachments())
            }
        }
    }

    @Test("a chain whose interface and namespace were deleted under it is destroyed, nothing to detach; renamed, it is left alone")
    func destroyWithInterfaceGone() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let chain = try Chain.create(ChainSettings(name: "gone", hook: lab.hook(.tcIngress)),
                                             topology: .line([("a", try Blueprints.tag(1))]), pinRoot: root)
                let (namespace, name, renamed) = (lab.b.namespaceName, lab.b.interfaceName, lab.b.interfaceName + "r")
                try run("ip", ["-n", namespace, "link", "set", "dev", name, "down", "name", renamed])
                let refused = #expect(throws: DatapathError.self) { try Chain.destroy("gone", pinRoot: root) }
                #expect(refused?.code == .rootAttachedElsewhere, "\(String(describing: refused))")
                #expect(root.exists(chain.directory))
                try run("ip", ["-n", namespace, "link", "set", "dev", renamed, "name", name, "up"])

                try run("ip", ["netns", "delete", lab.b.namespaceName])
                #expect(chain.settings.hook.isGone)
                let notes = try Chain.destroy("gone", pinRoot: root)
                #expect(notes == ["\(lab.b.interfaceName) in netns \(lab.b.namespaceName) is gone, and with it the "
                                  + "chain's attachment: removed its pins"])
                #expect(!root.exists(chain.directory))
            }
        }
    }

    @Test("an object without the cube ABI, or without a program for the hook, is refused")
    func foreignObjects() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let foreign = CubeBlueprint(type: "object", object: try Fixtures.testObject("rodata_probe"))
                let noABI = #expect(throws: DatapathError.self) {
                    try Chain.create(ChainSettings(name: "x", hook: lab.hook(.xdp(.native))),
                                     topology: .line([("probe", foreign)]), pinRoot: root)
                }
                #expect(noABI?.code == .notACubeObject && noABI?.chain == "x" && noABI?.cube == "probe")
                #expect(noABI?.description.hasPrefix("cube probe: its object does not include <tailor/cube.h>") == true)
                let tcOnly = #expect(throws: DatapathError.self) {
                    try Chain.create(ChainSettings(name: "y", hook: lab.hook(.tcIngress)),
                                     topology: .line([("probe", foreign)]), pinRoot: root)
                }
                #expect(tcOnly?.code == .notOneHookProgram && tcOnly?.cube == "probe")
                #expect(tcOnly?.description == "cube probe: its object needs exactly one TC program, found none")
                #expect(!root.exists(root.appending("x")) && !root.exists(root.appending("y")))
            }
        }
    }
}

/// The recorder's `paths` map: path (tag ids) -> packets.
func recordedPaths(_ chain: Chain, cube: String = "rec") throws -> [[UInt16]: UInt64] {
    let map = try #require(chain.map("paths", of: cube))
    var paths: [[UInt16]: UInt64] = [:]
    for (key, value) in try map.entries() {
        let words = key.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
        let path = Array(words[1...].prefix(Int(words[0])))
        paths[path, default: 0] += value.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }
    return paths
}

@Suite("chain adoption from pins", .kernel)
struct AdoptionTests {
    @Test("a path copy takes its cube's tables over without building them again")
    func pathCopyBuildsNoTables() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let builds = Mutex(0)
                // A fresh blueprint each time, as a new plan makes one: equal inputs, its own tables.
                let block = {
                    CubeBlueprint(type: "object", object: try Fixtures.testObject("blocklist"),
                                  tables: LazyTables(inputs: ["blocked": [80]]) { _ in
                                      builds.withLock { $0 += 1 }
                                      return ["blocked": [TableEntry(key: [80, 0], value: [1])]]
                                  })
                }
                let chain = try Chain.create(ChainSettings(name: "copy", hook: lab.hook(.tcIngress)),
                                             topology: .line([("block", try block())]), pinRoot: root)
                defer { try? chain.destroy() }
                #expect(builds.withLock { $0 } == 1)
                // A cube after it changes its next: it gets a new instance with every map of the old one.
                let before = chain.record.cubes["block"]?.program
                try chain.apply(.line([("block", try block()), ("after", try Blueprints.tag(1))]))
                #expect(chain.record.cubes["block"]?.program != before)
                #expect(builds.withLock { $0 } == 1)
                #expect(try chain.map("blocked", of: "block")?.lookup([80, 0]) == [1])
            }
        }
    }

    @Test("a second controller adopts the chain from its pins and meta record and changes it")
    func adopt() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let topology = Topology.line([("a", try Blueprints.counter()), ("b", try Blueprints.tag(1))])
                let first = try Chain.create(ChainSettings(name: "adopt", hook: lab.hook(.tcIngress)),
                                             topology: topology, pinRoot: root)
                let packet = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .udp(sport: 1, dport: 2)).bytes
                _ = try first.rootProgram.testRun(packet, repeat: 7)

                let second = try Chain.open("adopt", pinRoot: root)
                #expect(second.record == first.record)
                #expect(second.layout == first.layout)
                #expect(try second.counters(of: "a").packets == 7)
                // Nothing to do for the same topology; a change carries state over.
                #expect(try second.prepare(topology).plan.isEmpty)
                try second.apply(.line([("a", try Blueprints.counter()), ("b", try Blueprints.tag(2))]))
                _ = try second.rootProgram.testRun(packet, repeat: 3)
                #expect(try second.counters(of: "a").packets == 10)
                #expect(try second.counters(of: "b").packets == 10)
                #expect(try Chain.open("adopt", pinRoot: root).record == second.record)
                try second.destroy()
                #expect(!root.exists(root.appending("adopt")))
            }
        }
    }

    @Test("a chain without a meta record cannot be adopted")
    func missingMeta() async throws {
        try await TestPinRoot.with { root in
            let error = #expect(throws: KernelError.self) { try Chain.open("nothing", pinRoot: root) }
            #expect(error?.code == .notFound)
        }
    }
}
