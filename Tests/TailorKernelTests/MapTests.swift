import Testing
import TailorKernel
import TailorLab
import TailorTestKit

func bytes(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value, Array.init) }

@Suite("maps: entries, batches, prog_arrays, typed errors", .kernel)
struct MapTests {
    @Test("single entries are written, read, iterated and deleted")
    func singleEntries() throws {
        try KernelEnvironment.require()
        let map = try BPFMap.create(.hash, name: "t_single", keySize: 4, valueSize: 4, maxEntries: 16)
        for k in UInt32(0)..<10 { try map.update(bytes(k), bytes(k * 10)) }
        #expect(try map.lookup(bytes(3)) == bytes(30))
        #expect(try map.lookup(bytes(99)) == nil)
        #expect(try Set(map.keys()) == Set((0..<10).map { bytes(UInt32($0)) }))
        #expect(try map.entries().count == 10)
        #expect(try map.delete(bytes(3)))
        #expect(try !map.delete(bytes(3)))
        #expect(try map.count() == 9)
        let exists = #expect(throws: KernelError.self) { try map.update(bytes(4), bytes(1), mode: .onlyNew) }
        #expect(exists?.code == .alreadyExists)
        let missing = #expect(throws: KernelError.self) { try map.update(bytes(3), bytes(1), mode: .onlyExisting) }
        #expect(missing?.code == .notFound)
        let wrongSize = #expect(throws: KernelError.self) { try map.lookup([1, 2]) }
        #expect(wrongSize?.description.contains("key is 2 bytes, the map's keys are 4") == true)
    }

    @Test("batch lookup, update and delete move many entries per call")
    func batches() throws {
        try KernelEnvironment.require()
        let map = try BPFMap.create(.hash, name: "t_batch", keySize: 4, valueSize: 4, maxEntries: 4096)
        let entries = (UInt32(0)..<3000).map { (key: bytes($0), value: bytes($0 &* 7)) }
        try map.updateBatch(entries)
        let read = try map.lookupBatch(chunk: 64)
        #expect(read.count == 3000)
        #expect(Dictionary(uniqueKeysWithValues: read.map { ($0.key, $0.value) }) ==
                Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.value) }))
        try map.deleteBatch(entries.prefix(1000).map(\.key))
        #expect(try map.count() == 2000)
        #expect(try map.lookupBatch().count == 2000)
    }

    @Test("a full map says so with its fill level")
    func fullMap() throws {
        try KernelEnvironment.require()
        let map = try BPFMap.create(.hash, name: "t_full", keySize: 4, valueSize: 4, maxEntries: 2)
        try map.update(bytes(1), bytes(1))
        try map.update(bytes(2), bytes(2))
        let error = #expect(throws: KernelError.self) { try map.update(bytes(3), bytes(3)) }
        #expect(error?.code == .mapFull(entries: 2, capacity: 2))
        #expect(error?.description.contains("map t_full is full (2/2)") == true)
        let batch = #expect(throws: KernelError.self) { try map.updateBatch([(bytes(4), bytes(4))]) }
        #expect(batch?.code == .mapFull(entries: 2, capacity: 2))
    }

    @Test("a prog_array holds program ids per slot; other maps are refused as prog_arrays")
    func programArray() throws {
        try KernelEnvironment.require()
        var object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
        try object.loadOnly(["counter_xdp"])
        try object.load()
        let program = try object.program(named: "counter_xdp")
        let slots = try ProgramArray(BPFMap.create(.programArray, name: "t_progs", keySize: 4, valueSize: 4, maxEntries: 8))
        #expect(try slots.program(at: 3) == nil)
        try slots.set(3, to: program)
        #expect(try slots.program(at: 3) == program.info().id)
        #expect(try slots.occupiedSlots() == [3: program.info().id])
        #expect(try slots.clear(3))
        #expect(try !slots.clear(3))
        #expect(throws: KernelError.self) { try slots.set(8, to: program) }
        let hash = try BPFMap.create(.hash, name: "t_notprogs", keySize: 4, valueSize: 4, maxEntries: 1)
        let error = #expect(throws: KernelError.self) { try ProgramArray(hash) }
        #expect(error?.code == .wrongType)
        #expect(error?.description.contains("it is a hash map") == true)
    }

    @Test("per-CPU values come back one per possible CPU")
    func perCPU() throws {
        try KernelEnvironment.require()
        var object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
        try object.loadOnly(["counter_xdp"])
        try object.load()
        let packet = PacketBuilder(from: "10.0.0.1", to: "10.0.0.2", .udp(sport: 1, dport: 2)).bytes
        _ = try object.program(named: "counter_xdp").testRun(packet, repeat: 5)
        let counters = try object.map(named: "counters")
        let values = counters.perCPUValues(try #require(try counters.lookup(bytes(0))))
        #expect(values.count == BPFMap.possibleCPUs)
        #expect(values.map { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }.reduce(0, +) == 5)
    }
}
