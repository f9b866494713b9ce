import Testing
import TailorKernel
import TailorLab
import TailorTestKit

@Suite("BPF objects: open, rodata, load, verifier log")
struct ObjectTests {
    @Test("an object lists its programs and maps")
    func listsProgramsAndMaps() throws {
        let object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
        #expect(object.programNames == ["counter_tc", "counter_xdp"])
        let counters = try #require(object.maps.first { $0.name == "counters" })
        #expect(counters.type == .perCPUArray)
        #expect(counters.keySize == 4 && counters.valueSize == 16 && counters.maxEntries == 1)
        #expect(!counters.isInternal)
    }

    @Test("bytes that are not an ELF object are refused with the object named")
    func refusesGarbage() throws {
        let error = #expect(throws: KernelError.self) {
            let object = try BPFObject(bytes: [1, 2, 3, 4], name: "garbage")
            _ = object.name
        }
        #expect(error?.description.contains("garbage") == true)
    }

    @Test("a rodata value set before load is what the program sees", .kernel)
    func rodataReachesTheProgram() throws {
        try KernelEnvironment.require()
        let packet = PacketBuilder(from: "10.0.0.1", to: "10.0.0.2", .udp(sport: 1, dport: 2)).bytes
        for (value, expected) in [(UInt32(1), UInt32(1)), (3, 3)] {
            var object = try BPFObject(bytes: Fixtures.testObject("rodata_probe"), name: "rodata_probe")
            try object.setRodata("verdict", to: value)
            try object.load()
            let result = try object.program(named: "rodata_probe").testRun(packet)
            #expect(result.returnValue == expected)
        }
        var untouched = try BPFObject(bytes: Fixtures.testObject("rodata_probe"), name: "rodata_probe")
        try untouched.load()
        #expect(try untouched.program(named: "rodata_probe").testRun(packet).returnValue == 2)
    }

    @Test("unknown rodata names and wrong widths are refused before load")
    func rodataErrors() throws {
        let object = try BPFObject(bytes: Fixtures.testObject("rodata_probe"), name: "rodata_probe")
        let unknown = #expect(throws: KernelError.self) { try object.setRodata("verdcit", to: UInt32(1)) }
        #expect(unknown?.code == .notFound)
        let narrow = #expect(throws: KernelError.self) { try object.setRodata("verdict", to: UInt8(1)) }
        #expect(narrow?.code == .invalidArgument)
        #expect(narrow?.description.contains("4 bytes") == true)
    }

    @Test("a program the verifier rejects fails to load with the end of the verifier's log", .kernel)
    func verifierRejection() throws {
        try KernelEnvironment.require()
        var object = try BPFObject(bytes: Fixtures.testObject("rejected"), name: "rejected")
        let error = #expect(throws: KernelError.self) { try object.load() }
        #expect(error?.code == .verifierRejected)
        let log = try #require(error?.verifierLog)
        #expect(log.contains("invalid access to packet"), "log was: \(log)")
        #expect(error?.description.contains("load program rejected of object rejected") == true)
    }

    @Test("loadOnly keeps the other programs out of the kernel", .kernel)
    func loadOnlyOneProgram() throws {
        try KernelEnvironment.require()
        var object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
        try object.loadOnly(["counter_tc"])
        try object.load()
        #expect(try object.program(named: "counter_tc").info().type == .schedCls)
        let error = #expect(throws: KernelError.self) { try object.program(named: "counter_xdp") }
        #expect(error?.code == .notFound)
        #expect(throws: KernelError.self) { try object.loadOnly(["no_such_program"]) }
    }

    @Test("program info names the program, its tag, type, BTF and maps", .kernel)
    func programInfo() throws {
        try KernelEnvironment.require()
        var object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
        try object.loadOnly(["counter_xdp"])
        try object.load()
        let program = try object.program(named: "counter_xdp")
        let map = try object.map(named: "counters")
        let info = try program.info()
        #expect(info.name == "counter_xdp")
        #expect(info.type == .xdp)
        #expect(info.tag.count == 16 && info.tag.allSatisfy(\.isHexDigit))
        #expect(info.btfID != nil)
        #expect(info.mapIDs.contains(map.info.id))
        #expect(try Program(id: info.id).info() == info)
        #expect(map.info.type == .perCPUArray && map.info.name == "counters")
        #expect(map.info.btfID != nil)
        #expect(try BPFMap(id: map.info.id).info == map.info)
    }

    @Test("BTF lists a struct's fields from the object and from the live map", .kernel)
    func btfFields() throws {
        try KernelEnvironment.require()
        var object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
        let expected = [
            BTFField(name: "packets", offset: 0, size: 8, typeName: "__u64", kind: .int),
            BTFField(name: "bytes", offset: 8, size: 8, typeName: "__u64", kind: .int),
        ]
        #expect(try object.btf().fields(ofStruct: "counter_value") == expected)
        // Both hook programs share the prog_array, which takes one program type: load one.
        try object.loadOnly(["counter_xdp"])
        try object.load()
        #expect(try object.map(named: "counters").valueFields() == expected)
        let notStruct = #expect(throws: KernelError.self) { try object.map(named: "counters").keyFields() }
        #expect(notStruct?.code == .wrongType)
        #expect(throws: KernelError.self) { try object.btf().fields(ofStruct: "no_such_struct") }
    }
}
