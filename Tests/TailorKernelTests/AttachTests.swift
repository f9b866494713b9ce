import Testing
import TailorKernel
import TailorLab
import TailorTestKit

/// A counter cube instance loaded for one hook, with its counters map.
struct CounterInstance {
    let program: Program
    let counters: BPFMap

    init(for hook: String) throws {
        var object = try BPFObject(bytes: Fixtures.datapathObject("counter"), name: "counter")
        try object.loadOnly([hook])
        try object.load()
        program = try object.program(named: hook)
        counters = try object.map(named: "counters")
    }
}

@Suite("attach: XDP and TC on veth in namespaces", .kernel)
struct AttachTests {
    static let packets = 100
    /// Ethernet 14 + IPv4 20 + UDP 8 + payload 64.
    static let frameBytes = UInt64(14 + 20 + 8 + 64)

    @Test("the counter cube counts exactly the packets sent, with XDP in each mode", arguments: XDPMode.allCases)
    func counterOnXDP(mode: XDPMode) async throws {
        try await Lab.with { lab in
            let cube = try CounterInstance(for: "counter_xdp")
            let interface = try lab.b.interface()
            try XDP.attach(cube.program, to: interface, mode: mode, replacing: nil)
            #expect(try XDP.query(interface)[mode] == cube.program.info().id)
            #expect(try Traffic.udp(in: lab, count: Self.packets) == Self.packets)
            let totals = try counterTotals(cube.counters)
            #expect(totals.packets == UInt64(Self.packets))
            #expect(totals.bytes == UInt64(Self.packets) * Self.frameBytes)
            try XDP.detach(from: interface, mode: mode, expected: cube.program)
            #expect(try XDP.query(interface) == XDPAttachments())
        }
    }

    @Test("the counter cube counts exactly the packets sent, on TC ingress and egress", arguments: TCDirection.allCases)
    func counterOnTC(direction: TCDirection) async throws {
        try await Lab.with { lab in
            let cube = try CounterInstance(for: "counter_tc")
            // Ingress counts what b receives; egress counts what a sends.
            let interface = try direction == .ingress ? lab.b.interface() : lab.a.interface()
            try TC.createHook(on: interface)
            try TC.attach(cube.program, to: interface, direction: direction, replacing: nil)
            #expect(try TC.query(interface, direction: direction) == cube.program.info().id)
            #expect(try Traffic.udp(in: lab, count: Self.packets) == Self.packets)
            let totals = try counterTotals(cube.counters)
            #expect(totals.packets == UInt64(Self.packets))
            #expect(totals.bytes == UInt64(Self.packets) * Self.frameBytes)
            try TC.detach(from: interface, direction: direction, expected: cube.program.info().id)
            #expect(try TC.query(interface, direction: direction) == nil)
            try TC.destroyHook(on: interface)
        }
    }

    @Test("XDP replace swaps the expected program atomically and refuses a stale expectation")
    func xdpReplace() async throws {
        try await Lab.with { lab in
            let interface = try lab.b.interface()
            let first = try CounterInstance(for: "counter_xdp")
            let second = try CounterInstance(for: "counter_xdp")
            let third = try CounterInstance(for: "counter_xdp")
            try XDP.attach(first.program, to: interface, mode: .native, replacing: nil)
            let occupied = #expect(throws: KernelError.self) {
                try XDP.attach(second.program, to: interface, mode: .native, replacing: nil)
            }
            #expect(occupied?.code == .staleExpectation)
            try XDP.attach(second.program, to: interface, mode: .native, replacing: first.program)
            #expect(try XDP.query(interface).native == second.program.info().id)
            let stale = #expect(throws: KernelError.self) {
                try XDP.attach(third.program, to: interface, mode: .native, replacing: first.program)
            }
            #expect(stale?.code == .staleExpectation)
            #expect(stale?.description.contains("found \(try second.program.info().id)") == true)
            #expect(try XDP.query(interface).native == second.program.info().id)
            // The replacement carries traffic: only the second instance counts.
            #expect(try Traffic.udp(in: lab, count: 10) == 10)
            #expect(try totalPackets(second.counters) == 10)
            #expect(try totalPackets(first.counters) == 0)
            let staleDetach = #expect(throws: KernelError.self) {
                try XDP.detach(from: interface, mode: .native, expected: first.program)
            }
            #expect(staleDetach?.code == .staleExpectation)
            try XDP.detach(from: interface, mode: .native, expected: second.program)
        }
    }

    @Test("XDP query reports the mode in effect; the other mode is refused while one is in use")
    func xdpModes() async throws {
        try await Lab.with { lab in
            let interface = try lab.b.interface()
            let native = try CounterInstance(for: "counter_xdp")
            let generic = try CounterInstance(for: "counter_xdp")
            try XDP.attach(generic.program, to: interface, mode: .generic, replacing: nil)
            #expect(try XDP.query(interface) == XDPAttachments(generic: generic.program.info().id))
            let refused = #expect(throws: KernelError.self) {
                try XDP.attach(native.program, to: interface, mode: .native, replacing: nil)
            }
            #expect(refused?.description.contains("in generic mode (the kernel allows one mode at a time)") == true)
            try XDP.detach(from: interface, mode: .generic, expected: generic.program)
            try XDP.attach(native.program, to: interface, mode: .native, replacing: nil)
            #expect(try XDP.query(interface) == XDPAttachments(native: native.program.info().id))
        }
    }

    @Test("TC replace swaps the expected program and refuses a stale expectation")
    func tcReplace() async throws {
        try await Lab.with { lab in
            let interface = try lab.b.interface()
            let first = try CounterInstance(for: "counter_tc")
            let second = try CounterInstance(for: "counter_tc")
            try TC.createHook(on: interface)
            try TC.createHook(on: interface)  // a second create is not an error
            try TC.attach(first.program, to: interface, direction: .ingress, replacing: nil)
            let occupied = #expect(throws: KernelError.self) {
                try TC.attach(second.program, to: interface, direction: .ingress, replacing: nil)
            }
            #expect(occupied?.code == .staleExpectation)
            try TC.attach(second.program, to: interface, direction: .ingress, replacing: first.program.info().id)
            #expect(try TC.query(interface, direction: .ingress) == second.program.info().id)
            #expect(try TC.query(interface, direction: .egress) == nil)
            let stale = #expect(throws: KernelError.self) {
                try TC.attach(first.program, to: interface, direction: .ingress, replacing: first.program.info().id)
            }
            #expect(stale?.code == .staleExpectation)
            #expect(try Traffic.udp(in: lab, count: 10) == 10)
            #expect(try totalPackets(second.counters) == 10)
            #expect(try totalPackets(first.counters) == 0)
        }
    }

    @Test("a missing interface or namespace is a clear error")
    func missingInterface() async throws {
        try await Lab.with { lab in
            let error = #expect(throws: KernelError.self) {
                try NetworkInterface.lookup("nope0", in: lab.a.namespace)
            }
            #expect(error?.code == .interfaceNotFound)
            #expect(error?.description.contains("no interface nope0 in \(lab.a.namespace)") == true)
            let namespace = #expect(throws: KernelError.self) {
                try NetworkInterface.lookup("lo", in: .named("tailor-no-such-ns"))
            }
            #expect(namespace?.code == .notFound)
        }
    }

    @Test("a namespace is entered by name or by path, and the thread comes back")
    func namespaces() async throws {
        try await Lab.with { lab in
            let byName = try NetworkInterface.lookup(lab.a.interfaceName, in: lab.a.namespace)
            let byPath = try NetworkInterface.lookup(lab.a.interfaceName, in: NetworkNamespace(path: lab.a.namespace.path))
            #expect(byName.index == byPath.index)
            // The veth end exists only inside its namespace.
            #expect(throws: KernelError.self) { try NetworkInterface.lookup(lab.a.interfaceName) }
            #expect(throws: KernelError.self) { try NetworkInterface.lookup(lab.a.interfaceName, in: lab.b.namespace) }
        }
    }
}

@Suite("test kit: BPF_PROG_TEST_RUN, packets and real traffic", .kernel)
struct HarnessTests {
    @Test("a test run returns the verdict, the packet and the time per run")
    func testRun() throws {
        try KernelEnvironment.require()
        let cube = try CounterInstance(for: "counter_xdp")
        for transport: PacketBuilder.Transport in [.udp(sport: 5, dport: 53), .tcp(sport: 5, dport: 80, flags: .syn),
                                                   .icmpEcho(id: 1, sequence: 1)] {
            for (source, destination) in [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")] {
                let packet = PacketBuilder(from: source, to: destination, transport, payload: [1, 2, 3]).bytes
                let result = try cube.program.testRun(packet, repeat: 1000)
                #expect(result.returnValue == 2)  // XDP_PASS
                #expect(result.output == packet)
                #expect(result.nanosecondsPerRun > 0)
            }
        }
        #expect(try totalPackets(cube.counters) == 6000)
    }

    @Test("UDP and TCP cross the veth pair and are counted on arrival")
    func traffic() async throws {
        try await Lab.with { (lab: Lab) async throws in
            #expect(try Traffic.udp(in: lab, count: 50) == 50)
            #expect(try Traffic.tcp(in: lab, bytes: 100_000) == 100_000)
        }
    }
}
