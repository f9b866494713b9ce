import Foundation
import Testing
@testable import TailorCubes
@testable import TailorDatapath
import TailorKernel
import TailorLab
import TailorSpec
@testable import TailorReconcile
import TailorTestKit

/// The configs chains record in the kernel (`<chain>/config/<sha256>`), written with
/// each commit and read by observe: what the plan's old values come from.
@Suite("recorded configs", .kernel)
struct ConfigStoreTests {
    /// What a failpoint throws.
    struct InjectedFault: Error {
        let step: String
    }

    /// A chain on the lab's TC ingress: a ratelimit whose rate and drop list are
    /// given, and with `twin` a second one with the same drop list and that rate.
    static func chain(_ lab: Lab, rate: Int = 1000, drop: [String] = [], twin: Int? = nil) throws -> DesiredChain {
        let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
        let config = { (rate: Int) in
            RateLimit.Config(rate: UInt64(rate), burst: 10, drop: drop.compactMap { IPPrefix($0) })
        }
        var cubes = [("limit", try RateLimit.blueprint(config: config(rate)))]
        if let twin { cubes.append(("twin", try RateLimit.blueprint(config: config(twin)))) }
        return DesiredChain(settings: ChainSettings(name: "rl", hook: hook), topology: .line(cubes))
    }

    static func apply(_ chain: DesiredChain, _ root: PinRoot, failpoint: ((String) throws -> Void)? = nil) throws {
        var executor = Executor(pinRoot: root)
        executor.failpoint = failpoint
        let plan = Planner.plan(desired: [chain], observed: Observer.observe(pinRoot: root))
        _ = try executor.apply(try executor.verify(plan, desired: [chain]), desired: [chain])
    }

    /// The digests pinned under the chain's config directory.
    static func pinned(_ root: PinRoot) -> [String] {
        ConfigStore(pinRoot: root, chain: ChainPins("rl", under: root)).pinned()
    }

    @Test("every commit records its cubes' configs, once per distinct config, and removes those no record names")
    func lifecycle() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let first = try Self.chain(lab, drop: ["10.0.0.0/8"], twin: 1000)
                try Self.apply(first, root)
                let json = try #require(first.topology.nodes["limit"]?.blueprint.config?.canonicalJSON)
                let digest = ConfigDocument.digest(of: json)
                #expect(Self.pinned(root) == [digest])
                let observed = Observer.observe("rl", pinRoot: root)
                #expect(observed.record?.cubes["limit"]?.configDigest == digest)
                #expect(observed.configs == ["limit": .json(json), "twin": .json(json)])

                // Entries in place: the record and the store follow; then a replacement.
                for next in [try Self.chain(lab, drop: ["10.0.0.0/8", "192.0.2.0/24"], twin: 1000),
                             try Self.chain(lab, rate: 5, twin: 5)] {
                    try Self.apply(next, root)
                    let digest = try #require(next.topology.nodes["limit"]?.blueprint.config.map {
                        ConfigDocument.digest(of: $0.canonicalJSON)
                    })
                    #expect(Self.pinned(root) == [digest])
                    #expect(Observer.observe("rl", pinRoot: root).record?.cubes["twin"]?.configDigest == digest)
                    #expect(Planner.plan(desired: [next], observed: Observer.observe(pinRoot: root)).isEmpty)
                }
                try Chain.open("rl", pinRoot: root).destroy()
            }
        }
    }

    @Test("a commit that fails at any step of its own leaves the configs as they were",
          arguments: ["write configs", "write pending record", "commit slot", "write record", "remove unused configs"])
    func failure(_ step: String) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                try Self.apply(try Self.chain(lab), root)
                let before = Self.pinned(root)
                let failing = { (name: String) throws in
                    if name.contains(step) { throw InjectedFault(step: step) }
                }
                #expect(throws: InjectedFault.self) { try Self.apply(try Self.chain(lab, rate: 7), root, failpoint: failing) }
                #expect(Self.pinned(root) == before)
                #expect(Observer.observe("rl", pinRoot: root).configs.values.allSatisfy { $0.isJSON })
                try Chain.open("rl", pinRoot: root).destroy()
            }
        }
    }

    @Test("a config changed or removed outside tailor is seen as such, not read")
    func tampered() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                try Self.apply(try Self.chain(lab), root)
                let digest = try #require(Self.pinned(root).first)
                let pin = root.appending("rl", "config", digest)
                let map = try BPFMap(pinnedAt: pin)
                var element = try #require(try map.lookup([0, 0, 0, 0]))
                element[5] ^= 0x20
                try map.update([0, 0, 0, 0], element)
                #expect(Observer.observe("rl", pinRoot: root).configs["limit"]
                        == .unavailable("its recorded config at \(pin) does not match its digest (changed outside tailor)"))
                try root.unpin(pin)
                #expect(Observer.observe("rl", pinRoot: root).configs["limit"]
                        == .unavailable("its recorded config is missing (no pin \(pin))"))
                // The plan still changes the cube, and says why it cannot show values.
                let plan = Planner.plan(desired: [try Self.chain(lab, rate: 9)], observed: Observer.observe(pinRoot: root))
                #expect(plan.chains[0].cubes[0].action == .replace)
                #expect(plan.chains[0].cubes[0].valuesUnavailable?.hasPrefix("its recorded config is missing") == true)
                try Chain.open("rl", pinRoot: root).destroy()
            }
        }
    }

    @Test("a commit that names a config changed outside tailor pins it whole again")
    func healed() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                try Self.apply(try Self.chain(lab, rate: 5, twin: 5), root)
                let pin = root.appending("rl", "config", try #require(Self.pinned(root).first))
                let map = try BPFMap(pinnedAt: pin)
                var element = try #require(try map.lookup([0, 0, 0, 0]))
                element[5] ^= 0x20
                try map.update([0, 0, 0, 0], element)
                // The twin keeps naming the changed config; then limit takes it again.
                try Self.apply(try Self.chain(lab, rate: 9, twin: 5), root)
                #expect(Observer.observe("rl", pinRoot: root).configs["twin"]?.isJSON == false)
                try Self.apply(try Self.chain(lab, rate: 5, twin: 5), root)
                #expect(Observer.observe("rl", pinRoot: root).configs.values.allSatisfy { $0.isJSON })
                try Chain.open("rl", pinRoot: root).destroy()
            }
        }
    }

    @Test("a config of 10,000 rules spans several elements and reads back whole")
    func large() async throws {
        try await TestPinRoot.with { root in
            let rules = (0..<10_000).map { index in
                ConfigDocument.attributes([
                    "match": .attributes(["dst": .string("10.\(index / 256).\(index % 256).0/24"), "proto": .string("tcp"),
                                          "dport": .int(1024 + index)]),
                    "action": .string(index % 3 == 0 ? "drop" : "accept"),
                ])
            }
            let json = ConfigDocument.attributes(["policy": .string("drop"), "rules": .list(rules)]).canonicalJSON
            let digest = ConfigDocument.digest(of: json)
            let store = ConfigStore(pinRoot: root, chain: ChainPins("big", under: root))
            try store.write([digest: json])
            let map = try BPFMap(pinnedAt: store.directory + "/" + digest)
            #expect(json.count > 500_000 && map.info.maxEntries == (json.count + 4 + (1 << 16) - 1) >> 16)
            #expect(store.read(digest) == .json(json))
            // A record naming no config: the one pinned goes, and is said.
            let record = ChainRecord(settings: ChainSettings(name: "big", hook: ChainHook(interface: "lo", kind: .tcIngress)))
            #expect(try store.trim(to: record) == [digest])
            #expect(store.pinned().isEmpty)
        }
    }
}

extension RecordedConfig {
    /// Whether observe read the config whole and unchanged.
    var isJSON: Bool { if case .json = self { true } else { false } }
}
