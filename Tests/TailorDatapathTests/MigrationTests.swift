import Foundation
import Synchronization
import Testing
@testable import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

/// State migration on the real kernel: the migrate_* fixtures (bpf/tests/migrate.h)
/// replaced by versions whose map layouts differ, under traffic.
@Suite("state migration", .kernel, .serialized)
struct MigrationTests {
    static let ports: [UInt16] = Array(7100..<7108)

    static func blueprint(_ version: String) throws -> CubeBlueprint {
        CubeBlueprint(type: "object", object: try Fixtures.testObject(version))
    }

    /// Runs `body` with a lab and a chain of the version 1 cube on TC ingress of side b.
    static func withVersion1(_ body: (Lab, PinRoot, Chain, ChainHook) async throws -> Void) async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                let chain = try Chain.create(ChainSettings(name: "mig", hook: hook),
                                             topology: .line([("m", try blueprint("migrate_v1"))]), pinRoot: root)
                defer { try? chain.destroy() }
                try await body(lab, root, chain, hook)
            }
        }
    }

    /// Per port, the sum over CPUs of the flows map's packets and bytes fields.
    static func flows(_ map: BPFMap, wide: Bool) throws -> [UInt16: (packets: UInt64, bytes: UInt64)] {
        var result: [UInt16: (packets: UInt64, bytes: UInt64)] = [:]
        for (key, value) in try map.lookupBatch() {
            let port = key.withUnsafeBytes { $0.loadUnaligned(as: UInt16.self) }
            var sum: (packets: UInt64, bytes: UInt64) = (0, 0)
            for cpu in map.perCPUValues(value) {
                cpu.withUnsafeBytes { raw in
                    sum.packets += wide ? raw.loadUnaligned(as: UInt64.self) : UInt64(raw.loadUnaligned(as: UInt32.self))
                    sum.bytes += wide ? raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                        : UInt64(raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                }
            }
            result[port] = sum
        }
        return result
    }

    /// Sends rounds of UDP to every port until stopped, counting what it sent.
    final class Background: @unchecked Sendable {
        let stop = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
        let lock = NSLock()
        var sent: [UInt16: Int] = [:]
        var failure: (any Error)?

        func start(_ lab: Lab) {
            Thread.detachNewThread {
                do {
                    while !self.stop.load(ordering: .acquiring) {
                        for port in MigrationTests.ports {
                            let count = try Traffic.udp(in: lab, count: 3, port: port, timeout: .milliseconds(500))
                            self.lock.withLock { self.sent[port, default: 0] += count }
                        }
                    }
                } catch {
                    self.failure = error
                }
                self.done.signal()
            }
        }

        /// Stops after the round in progress; returns once no packet is in flight.
        func finish() throws -> [UInt16: Int] {
            stop.store(true, ordering: .releasing)
            done.wait()
            if let failure { throw failure }
            return lock.withLock { sent }
        }
    }

    @Test("v1 -> v2 while packets flow: every entry carried, counters exact and never lower, fields converted")
    func underTraffic() async throws {
        try await Self.withVersion1 { lab, root, chain, hook in
            var sent: [UInt16: Int] = [:]
            for port in Self.ports { sent[port] = try Traffic.udp(in: lab, count: 5, port: port) }
            let oldFlows = try #require(chain.map("flows", of: "m"))
            let before = try Self.flows(oldFlows, wide: false)
            let length = try #require(before[Self.ports[0]]).bytes / 5

            // Traffic runs through the pre-copy, the switch and the grace period, so
            // both instances write the same entries; it pauses for the final pass.
            let traffic = Background()
            traffic.start(lab)
            try await Task.sleep(for: .milliseconds(100))
            let paused = Mutex<[UInt16: Int]?>(nil)
            chain.failpoint = { step in
                guard step.hasPrefix("final pass of map flows") else { return }
                let counts = try traffic.finish()
                paused.withLock { $0 = counts }
            }
            let prepared = try chain.prepare(.line([("m", try Self.blueprint("migrate_v2"))]))
            #expect(prepared.state["m"]?["flows"].map { if case .migrate = $0 { true } else { false } } == true)
            _ = try chain.commit(prepared)
            chain.failpoint = nil
            let late: [UInt16: Int] = try #require(paused.withLock { $0 })
            #expect(late.values.reduce(0, +) > 0, "no packet flowed during the migration")
            for (port, count) in late { sent[port, default: 0] += count }
            // The new instance counts on from there.
            for port in Self.ports { sent[port, default: 0] += try Traffic.udp(in: lab, count: 2, port: port) }

            let newFlows = try #require(chain.map("flows", of: "m"))
            #expect(newFlows.info.id != oldFlows.info.id)
            #expect(newFlows.info.maxEntries == 128)
            let after = try Self.flows(newFlows, wide: true)
            #expect(Set(after.keys) == Set(Self.ports))
            for port in Self.ports {
                let counted = try #require(after[port])
                #expect(counted.packets == UInt64(sent[port] ?? 0), "port \(port): packets")
                #expect(counted.bytes == counted.packets * length, "port \(port): bytes")
                #expect(counted.packets >= before[port]?.packets ?? 0, "port \(port) went backwards")
            }
            // The added field starts at the declared default on every CPU; tos is gone.
            for (_, value) in try newFlows.lookupBatch() {
                for cpu in newFlows.perCPUValues(value) {
                    #expect(cpu.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: UInt32.self) } == 2)
                }
            }
            // last: len widened from 16 to 32 bits, proto kept, seen added as zero.
            let last = try #require(chain.map("last", of: "m"))
            for (_, value) in try last.lookupBatch() {
                #expect(value.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } == UInt32(length))
                #expect(value[4] == 17 && value[5] == 0)
            }
        }
    }

    @Test("the meta record keeps each state map's declared layout, equal to the kernel's BTF of the live map; a record without them migrates the same through BTF")
    func recordedLayouts() async throws {
        try await Self.withVersion1 { _, root, chain, _ in
            let record = try #require(try MetaRecordReader.read(root.appending("mig", "meta")))
            let cube = try #require(record.cubes["m"])
            let recorded = try #require(record.layouts?[cube.objectDigest])
            let stateMaps = cube.maps.filter { $0.value == .state }.keys.sorted()
            #expect(recorded.keys.sorted() == stateMaps && stateMaps.contains("flows"))
            for name in stateMaps {
                let map = try #require(chain.map(name, of: "m"))
                #expect(try MapLayout(of: map, recorded: recorded[name]) == MapLayout(of: map, recorded: nil), "\(name)")
            }
            let withLayouts = try Chain.open("mig", pinRoot: root).prepare(.line([("m", try Self.blueprint("migrate_v2"))]))
            guard case .migrate = withLayouts.state["m"]?["flows"] else {
                Issue.record("flows is not migrated: \(String(describing: withLayouts.state["m"]))")
                return
            }
            var old = record
            old.layouts = nil
            try MetaMap(map: try BPFMap(pinnedAt: root.appending("mig", "meta"))).write(old)
            let withoutLayouts = try Chain.open("mig", pinRoot: root).prepare(.line([("m", try Self.blueprint("migrate_v2"))]))
            #expect(withoutLayouts.state == withLayouts.state)
        }
    }

    @Test("a narrowed field, an unmappable key or too many entries for the new map are refused before any change",
          arguments: [
              ("migrate_narrow", "value field 'packets' narrows from unsigned int to unsigned short"),
              ("migrate_rekey", "the new key has no place for its old key"),
              ("migrate_small", "holds 8 entries, more than the 4 the new object's map holds"),
          ])
    func refused(version: String, reason: String) async throws {
        try await Self.withVersion1 { lab, root, chain, hook in
            for port in Self.ports { _ = try Traffic.udp(in: lab, count: 1, port: port) }
            let before = try KernelSnapshot(root, hooks: [hook])
            let prepared = try chain.prepare(.line([("m", try Self.blueprint(version))]))
            #expect(prepared.refusals.count == 1)
            #expect(prepared.refusals.first?.contains(reason) == true, "\(prepared.refusals)")
            #expect(prepared.refusals.first?.contains("migration: {flows: reset}") == true)
            let refused = #expect(throws: DatapathError.self) { _ = try chain.commit(prepared) }
            #expect(refused?.code == .refused && refused?.description == prepared.refusals.first)
            #expect(try KernelSnapshot(root, hooks: [hook]) == before)

            // Asked to start empty, the same change goes ahead and flows starts over.
            var reset = try Self.blueprint(version)
            reset.resetState = ["flows"]
            let accepted = try chain.prepare(.line([("m", reset)]))
            #expect(accepted.refusals.isEmpty && accepted.state["m"]?["flows"] == .reset)
            _ = try chain.commit(accepted)
            #expect(try chain.map("flows", of: "m")?.lookupBatch().isEmpty == true)
        }
    }
}
