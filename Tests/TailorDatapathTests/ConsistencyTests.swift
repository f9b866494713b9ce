import Foundation
import Synchronization
import Testing
import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

/// Reitblatt et al.'s per-packet consistency, tested under load: while packets flow
/// (BPF_PROG_TEST_RUN on one thread, real veth traffic on another), the chain
/// switches 1,000 times among topologies that reorder, remove, insert and branch.
/// Each topology ends in its own recorder, so a packet that mixed two topologies
/// records a path no single topology has.
@Suite("per-packet consistency", .kernel, .serialized)
struct ConsistencyTests {
    static let switches = 1000

    /// Four topologies and the paths each may produce.
    static func topologies() throws -> [(Topology, Set<[UInt16]>)] {
        func line(_ tags: [UInt16], recorder: UInt16) throws -> Topology {
            var cubes = try tags.map { ("t\($0)", try Blueprints.tag($0)) }
            cubes.append(("rec", try Blueprints.tag(recorder, record: true)))
            return Topology.line(cubes)
        }
        let branch = Topology(entry: "t1", nodes: [
            "t1": .init(blueprint: try Blueprints.tag(1), next: ["split"]),
            "split": .init(blueprint: try Blueprints.split(), next: ["t2", "t3"]),
            "t2": .init(blueprint: try Blueprints.tag(2), next: ["rec"]),
            "t3": .init(blueprint: try Blueprints.tag(3), next: ["rec"]),
            "rec": .init(blueprint: try Blueprints.tag(93, record: true), next: [nil]),
        ])
        return [
            (try line([1, 2, 3], recorder: 90), [[1, 2, 3, 90]]),
            (try line([1, 3, 2], recorder: 91), [[1, 3, 2, 91]]),          // reorder
            (try line([1, 2], recorder: 92), [[1, 2, 92]]),                // remove t3
            (branch, [[1, 2, 93], [1, 3, 93]]),                             // insert a branch
        ]
    }

    @Test("1,000 chain switches under traffic: no mixed path, no miss, no drop")
    func switchesUnderTraffic() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let topologies = try Self.topologies()
                let allowed = topologies.reduce(into: Set<[UInt16]>()) { $0.formUnion($1.1) }
                let chain = try Chain.create(ChainSettings(name: "c", hook: lab.hook(.xdp(.native))),
                                             topology: topologies[0].0, pinRoot: root)
                defer { try? chain.destroy() }

                let stop = Atomic<Bool>(false)
                let testRuns = Atomic<Int>(0), badVerdicts = Atomic<Int>(0)
                let sent = Atomic<Int>(0), received = Atomic<Int>(0), failedBatches = Atomic<Int>(0)
                let firstFailure = Mutex<String?>(nil)
                let rootProgram = chain.rootProgram
                let packets = [10, 11].map {
                    PacketBuilder(from: lab.a.ipv4, to: lab.b.ipv4, .udp(sport: UInt16($0), dport: 7)).bytes
                }
                let runner = Thread {
                    var i = 0
                    while !stop.load(ordering: .relaxed) {
                        i += 1
                        // One run per call: the kernel reports only the last run's verdict.
                        let verdict = (try? rootProgram.testRun(packets[i & 1]).returnValue) ?? 0
                        if verdict != 2 { badVerdicts.add(1, ordering: .relaxed) }
                        testRuns.add(1, ordering: .relaxed)
                    }
                }
                let sender = Thread {
                    while !stop.load(ordering: .relaxed) {
                        do {
                            let got = try Traffic.udp(in: lab, count: 50, port: 7000, timeout: .seconds(1))
                            sent.add(50, ordering: .relaxed)
                            received.add(got, ordering: .relaxed)
                        } catch {
                            failedBatches.add(1, ordering: .relaxed)
                            firstFailure.withLock { $0 = $0 ?? "\(error)" }
                        }
                    }
                }
                runner.start()
                sender.start()
                var graceTotal = Duration.zero
                for i in 1...Self.switches {
                    graceTotal += try chain.apply(topologies[i % topologies.count].0).grace
                }
                stop.store(true, ordering: .relaxed)
                while runner.isExecuting || sender.isExecuting { try await Task.sleep(for: .milliseconds(10)) }

                let paths = try recordedPaths(chain)
                let mixed = paths.filter { !allowed.contains($0.key) }
                #expect(mixed.isEmpty, "paths no topology has: \(mixed)")
                #expect(badVerdicts.load(ordering: .relaxed) == 0)
                #expect(received.load(ordering: .relaxed) == sent.load(ordering: .relaxed))
                #expect(failedBatches.load(ordering: .relaxed) == 0, "\(firstFailure.withLock { $0 } ?? "")")
                #expect(try chain.rootCounters().missed == 0)
                for cube in chain.layout.keys { #expect(try chain.counters(of: cube).missed == 0, "\(cube)") }
                // The traffic really overlapped the switches.
                let recorded = paths.values.reduce(0, +)
                #expect(testRuns.load(ordering: .relaxed) > Self.switches)
                #expect(recorded >= UInt64(testRuns.load(ordering: .relaxed)))
                #expect(paths.count == allowed.count, "every topology carried packets: \(paths.keys)")
                print("consistency: \(Self.switches) switches, \(testRuns.load(ordering: .relaxed)) test runs, "
                      + "\(received.load(ordering: .relaxed)) veth packets, mean grace \(graceTotal / Self.switches)")
            }
        }
    }
}
