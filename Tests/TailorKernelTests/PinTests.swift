import Testing
import TailorKernel
import TailorLab
import TailorTestKit

@Suite("pins under a configurable bpffs root", .kernel)
struct PinTests {
    @Test("programs and maps pinned under the root reopen by path and unpin")
    func pinAndReopen() async throws {
        try await TestPinRoot.with { root in
            var object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
            try object.loadOnly(["counter_xdp"])
            try object.load()
            let program = try object.program(named: "counter_xdp")
            let map = try object.map(named: "counters")
            try root.makeDirectory(root.appending("chain", "cubes", "c1"))
            try program.pin(at: root.appending("chain", "cubes", "c1", "prog"))
            try map.pin(at: root.appending("chain", "cubes", "c1", "counters"))
            #expect(try Program(pinnedAt: root.appending("chain", "cubes", "c1", "prog")).info().id == program.info().id)
            #expect(try BPFMap(pinnedAt: root.appending("chain", "cubes", "c1", "counters")).info.id == map.info.id)
            try root.unpin(root.appending("chain", "cubes", "c1", "prog"))
            #expect(!root.exists(root.appending("chain", "cubes", "c1", "prog")))
        }
    }

    @Test("a missing pin, or a pin of the other kind, is a clear error")
    func pinErrors() async throws {
        try await TestPinRoot.with { root in
            let missing = #expect(throws: KernelError.self) { try Program(pinnedAt: root.appending("nothing")) }
            #expect(missing?.code == .notFound)
            #expect(missing?.description.contains(root.appending("nothing")) == true)
            let map = try BPFMap.create(.hash, name: "t_pinkind", keySize: 4, valueSize: 4, maxEntries: 1)
            try map.pin(at: root.appending("a_map"))
            let wrong = #expect(throws: KernelError.self) { try Program(pinnedAt: root.appending("a_map")) }
            #expect(wrong?.code == .wrongType)
            #expect(wrong?.description.contains("the pin is a bpf-map, not a program") == true)
            let prog = #expect(throws: KernelError.self) { try ProgramArray(pinnedAt: root.appending("a_map")) }
            #expect(prog?.code == .wrongType)
            var object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
            try object.loadOnly(["counter_tc"])
            try object.load()
            try object.program(named: "counter_tc").pin(at: root.appending("a_prog"))
            let notMap = #expect(throws: KernelError.self) { try BPFMap(pinnedAt: root.appending("a_prog")) }
            #expect(notMap?.code == .wrongType)
        }
    }

    @Test("one controller at a time: a second lock on the pin root waits, then fails clearly")
    func lock() async throws {
        try await TestPinRoot.with { root in
            var first: PinRootLock? = try PinRootLock(root)
            let error = #expect(throws: KernelError.self) { try PinRootLock(root, timeout: 0.2) }
            #expect(error?.description.contains("another tailor (apply or the daemon) holds it") == true)
            withExtendedLifetime(first) {}
            first = nil
            _ = try PinRootLock(root, timeout: 0.2)
        }
    }

    @Test("a pin root must be on bpffs")
    func rootOnBPFFS() throws {
        try KernelEnvironment.require()
        let error = #expect(throws: KernelError.self) { try PinRoot("/tmp/not-bpffs") }
        #expect(error?.description.contains("not on a bpffs") == true)
    }

    @Test("a pinned map is reused by a newly opened object: both instances share it")
    func reusePinnedMap() async throws {
        try await TestPinRoot.with { root in
            var first = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
            try first.loadOnly(["counter_xdp"])
            try first.load()
            try first.map(named: "counters").pin(at: root.appending("counters"))

            var second = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
            try second.loadOnly(["counter_xdp"])
            try second.reuse(map: "counters", with: BPFMap(pinnedAt: root.appending("counters")))
            try second.load()
            let packet = PacketBuilder(from: "10.0.0.1", to: "10.0.0.2", .udp(sport: 1, dport: 2)).bytes
            _ = try first.program(named: "counter_xdp").testRun(packet, repeat: 3)
            _ = try second.program(named: "counter_xdp").testRun(packet, repeat: 4)
            #expect(try second.map(named: "counters").info.id == first.map(named: "counters").info.id)
            let pinned = try BPFMap(pinnedAt: root.appending("counters"))
            #expect(try totalPackets(pinned) == 7)
        }
    }
}

/// Sum of the counter cube's per-CPU packet counts.
func totalPackets(_ counters: BPFMap) throws -> UInt64 {
    try counterTotals(counters).packets
}

/// Sum of the counter cube's per-CPU packet and byte counts.
func counterTotals(_ counters: BPFMap) throws -> (packets: UInt64, bytes: UInt64) {
    let buffer = try #require(try counters.lookup(bytes(0)))
    return counters.perCPUValues(buffer).reduce((0, 0)) { sum, value in
        value.withUnsafeBytes {
            (sum.0 + $0.loadUnaligned(as: UInt64.self), sum.1 + $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
    }
}
