import ArgumentParser
import Foundation
import TailorCommandLine
import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorObjects

/// `tailor-bench datapath`: the cost of chaining, against one program doing the
/// same work, and the cost of changing a chain.
struct BenchDatapath: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "datapath",
        abstract: "ns/packet of chains of N counter cubes vs a monolithic program; commit and grace-period times."
    )

    @Option(help: "BPF_PROG_TEST_RUN repeats per measurement.")
    var repeats = 1_000_000

    @Option(help: "Measurements per configuration; the median is reported.")
    var rounds = 9

    @Option(help: "Changes timed per commit kind; the median is reported.")
    var commits = 51

    @Option(help: "Output format.")
    var output: OutputFormat = .text

    struct Row: Codable {
        var hook: String
        var cubes: Int
        var monolithicNs: Double
        var chainNs: Double
        var perHopNs: Double
        var ratio: Double
    }

    struct CommitTiming: Codable {
        var kind: String
        var prepareUs: Double
        var commitUs: Double
        var graceUs: Double
    }

    struct Report: Codable {
        var repeats: Int
        var rounds: Int
        var packetBytes: Int
        var chains: [Row]
        var commits: [CommitTiming]
        var gracePeriodUs: Double
    }

    func run() throws {
        try withBenchLab("tb") { lab, pinRoot in

            let packet = Self.packet(lab)
            var rows: [Row] = []
            for kind in [ChainHook.Kind.xdp(.native), .tcIngress] {
                // The chain on side b, the monolithic program on side a: both attached,
                // measured in alternating rounds so that drift affects both alike.
                let chainHook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: kind)
                let monolithicHook = ChainHook(interface: lab.a.interfaceName, namespace: lab.a.namespaceName, kind: kind)
                for cubes in [1, 2, 4, 8] {
                    let monolithic = try Self.monolithic(cubes: cubes, xdp: chainHook.isXDP)
                    let chain = try Chain.create(
                        ChainSettings(name: "bench\(cubes)", hook: chainHook),
                        topology: .line((0..<cubes).map { ("c\($0)", try Counter.blueprint()) }), pinRoot: pinRoot)
                    defer { try? chain.destroy() }
                    let (mono, chained) = try whileAttached(monolithic, monolithicHook) {
                        try measure(monolithic, against: chain.rootProgram, packet)
                    }
                    rows.append(Row(hook: chainHook.isXDP ? "xdp" : "tc", cubes: cubes, monolithicNs: mono,
                                    chainNs: chained, perHopNs: (chained - mono) / Double(cubes),
                                    ratio: chained / mono))
                }
            }
            let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .xdp(.native))
            let timings = try commitTimings(hook: hook, pinRoot: pinRoot)
            let grace = try GracePeriod()
            let graceUs = median(try (0..<commits).map { _ in
                try ContinuousClock().measure { try grace.wait() }.microseconds
            })
            let report = Report(repeats: repeats, rounds: rounds, packetBytes: packet.count, chains: rows,
                                commits: timings, gracePeriodUs: graceUs)
            if output == .json { try printJSON(report) } else { print(Self.text(report)) }
        }
    }

    /// ns/packet of two programs: the median over rounds of wall time / repeats,
    /// alternating the two in each round, after a warm-up run of each (the kernel's
    /// own figure is in whole nanoseconds).
    func measure(_ first: Program, against second: Program, _ packet: [UInt8]) throws -> (Double, Double) {
        let times = try nsPerPacket([first, second], packet, repeats: repeats, rounds: rounds)
        return (times[0], times[1])
    }

    /// Runs `body` with `program` attached to `hook`, as a chain root is. An attached
    /// XDP program joins the kernel's XDP dispatcher (a direct call); a detached one
    /// is reached through a retpolined indirect call, which costs about 16 ns more
    /// here and would flatter the chain.
    func whileAttached<R>(_ program: Program, _ hook: ChainHook, _ body: () throws -> R) throws -> R {
        let interface = try NetworkInterface.lookup(hook.interface, in: hook.namespace.map(NetworkNamespace.named))
        try hook.attachPoint.attach(program, to: interface, replacing: nil)
        defer { try? hook.attachPoint.detach(program, from: interface) }
        return try body()
    }

    /// Times a single-slot change (one cube replaced in place) and a path copy
    /// (two cubes swapped) on a chain of four tags.
    func commitTimings(hook: ChainHook, pinRoot: PinRoot) throws -> [CommitTiming] {
        let tags = try (1...4).map { try Tag.blueprint(id: UInt16($0)) }
        let base: [(String, CubeBlueprint)] = zip(["t1", "t2", "t3", "t4"], tags).map { ($0, $1) }
        let chain = try Chain.create(ChainSettings(name: "commits", hook: hook), topology: .line(base),
                                     pinRoot: pinRoot)
        defer { try? chain.destroy() }
        var alternate = base
        alternate[1].1 = try Tag.blueprint(id: 20)
        let swapped = [base[0], base[2], base[1], base[3]]
        return try [("single-slot", Topology.line(alternate)), ("path-copy", Topology.line(swapped))].map { kind, changed in
            var prepare: [Double] = [], commit: [Double] = [], grace: [Double] = []
            for i in 0..<commits {
                let clock = ContinuousClock()
                let start = clock.now
                let prepared = try chain.prepare(i % 2 == 0 ? changed : .line(base))
                prepare.append((clock.now - start).microseconds)
                let report = try chain.commit(prepared)
                commit.append(report.commit.microseconds)
                grace.append(report.grace.microseconds)
            }
            return CommitTiming(kind: kind, prepareUs: median(prepare), commitUs: median(commit), graceUs: median(grace))
        }
    }

    static func monolithic(cubes: Int, xdp: Bool) throws -> Program {
        guard let bytes = benchObjects.bytes(named: "monolithic") else {
            throw ValidationError("this tailor-bench binary was built without the monolithic benchmark object")
        }
        var object = try BPFObject(bytes: bytes, name: "monolithic")
        let program = xdp ? "monolithic_xdp" : "monolithic_tc"
        try object.loadOnly([program])
        try object.setRodata("cubes", to: UInt32(cubes))
        try object.load()
        return try object.program(named: program)
    }

    /// A 64-byte-payload UDP frame from side a to side b.
    static func packet(_ lab: VethLab) -> [UInt8] {
        var builder = PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .udp(sport: 12345, dport: 53),
                                    payload: [UInt8](repeating: 0x5a, count: 64))
        builder.sourceMAC = lab.a.macBytes
        builder.destinationMAC = lab.b.macBytes
        return builder.bytes
    }

    static func text(_ report: Report) -> String {
        let f = { (value: Double) in String(format: "%.1f", value) }
        var text = "Datapath: \(report.packetBytes)-byte UDP frame, BPF_PROG_TEST_RUN, \(report.repeats) repeats, "
            + "median of \(report.rounds) rounds (ns/packet)\n\n"
        text += table(["hook", "cubes", "monolithic", "chain", "per hop", "chain/monolithic"],
                      report.chains.map { [$0.hook, "\($0.cubes)", f($0.monolithicNs), f($0.chainNs), f($0.perHopNs),
                                           String(format: "%.2fx", $0.ratio)] })
        text += "\n\nCommits on a chain of 4 cubes (µs, median of each kind)\n\n"
        text += table(["change", "prepare (load+verify)", "commit (slot writes)", "grace wait"],
                      report.commits.map { [$0.kind, f($0.prepareUs), f($0.commitUs), f($0.graceUs)] })
        text += "\n\nRCU grace period alone: \(f(report.gracePeriodUs)) µs (median)"
        return text
    }
}
