import Foundation
import Testing
@_spi(Testing) import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

struct InjectedFault: Error {
    let step: String
}

/// A counter a closure can bump (the fault hook runs synchronously on this thread).
final class StepCounter: @unchecked Sendable {
    var count = 0
}

/// Everything of a chain an operator could see: slots, pins, record, attachment.
struct ChainSnapshot: Equatable {
    var slots: [Int: ProgramID]
    var pins: [String]
    var record: ChainRecord?
    var attached: ProgramID?

    init(_ chain: Chain, root: PinRoot) throws {
        slots = try ProgramArray(pinnedAt: chain.directory + "/progs").occupiedSlots()
        let walker = FileManager.default.enumerator(atPath: chain.directory)
        pins = (walker?.allObjects as? [String] ?? []).sorted()
        record = try MetaRecordReader.read(chain.directory + "/meta")
        attached = try chain.settings.hook.attachedProgram()
    }
}

@Suite("rollback of a failed commit", .kernel, .serialized)
struct RollbackTests {
    static let changes: [(String, [UInt16])] = [
        ("reorder (path copy)", [1, 3, 2, 4]),
        ("insert", [1, 2, 5, 3, 4]),
        ("remove", [1, 3, 4]),
        ("replace in place", [1, 2, 3, 40]),
    ]

    static func topology(_ tags: [UInt16]) throws -> Topology {
        Topology.line(try tags.map { ("t\($0 % 10)", try Blueprints.tag($0)) })
    }

    @Test("a failure at any step of a commit leaves the chain exactly as it was", arguments: changes.map(\.0))
    func rollback(change: String) async throws {
        let tags = try #require(Self.changes.first { $0.0 == change }).1
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let chain = try Chain.create(ChainSettings(name: "rb", hook: lab.hook(.xdp(.native))),
                                             topology: Self.topology([1, 2, 3, 4]), pinRoot: root)
                defer { try? chain.destroy() }
                let packet = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .udp(sport: 1, dport: 2)).bytes
                // Count the steps the change takes, go back, then fail at each step in turn.
                let counter = StepCounter()
                chain.failpoint = { _ in counter.count += 1 }
                try chain.apply(Self.topology(tags))
                chain.failpoint = nil
                try chain.apply(Self.topology([1, 2, 3, 4]))
                let before = try ChainSnapshot(chain, root: root)
                #expect(counter.count >= 3)
                for failing in 0..<counter.count {
                    let calls = StepCounter()
                    chain.failpoint = { name in
                        defer { calls.count += 1 }
                        if calls.count == failing { throw InjectedFault(step: name) }
                    }
                    let error = #expect(throws: InjectedFault.self, "step \(failing)") {
                        try chain.apply(Self.topology(tags))
                    }
                    let after = try ChainSnapshot(chain, root: root)
                    #expect(after == before, "after a failure at '\(error?.step ?? "?")'")
                    #expect(try chain.rootProgram.testRun(packet).returnValue == 2, "after '\(error?.step ?? "?")'")
                }
                chain.failpoint = nil
                try chain.apply(Self.topology(tags))
                #expect(try ChainSnapshot(chain, root: root) != before)
            }
        }
    }

    @Test("an undo step that fails is reported beside the failure it undid, and the next open finishes the undo")
    func failedUndo() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let chain = try Chain.create(ChainSettings(name: "ru", hook: lab.hook(.xdp(.native))),
                                             topology: Self.topology([1, 2, 3, 4]), pinRoot: root)
                let before = try ChainSnapshot(chain, root: root)
                chain.failpoint = { step in
                    if step == "write record" || step == "undo: restore record" { throw InjectedFault(step: step) }
                }
                let error = #expect(throws: IncompleteUndo.self) { try chain.apply(Self.topology([1, 2, 5, 3, 4])) }
                #expect((error?.cause as? InjectedFault)?.step == "write record")
                #expect(error?.failures.map(\.step) == ["restore record"])
                #expect(error.map { "\($0)" }?.contains("putting the change back did not finish: restore record") == true)
                // Every other step of the undo ran: the old path is whole, the new instance's slot empty.
                #expect(try ProgramArray(pinnedAt: chain.directory + "/progs").occupiedSlots() == before.slots)
                // The record was left pending: reopening the chain recovers from its pins.
                #expect(try MetaRecordReader.read(chain.directory + "/meta")?.pending != nil)
                let reopened = try Chain.open("ru", pinRoot: root, recovering: true)
                defer { try? reopened.destroy() }
                let after = try ChainSnapshot(reopened, root: root)
                #expect(after.slots == before.slots && after.pins == before.pins && after.attached == before.attached)
                #expect(after.record?.pending == nil && after.record?.cubes == before.record?.cubes)
            }
        }
    }
}
