import CLibBPF
import Foundation
import Testing
import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

/// A systemd-journald started by hand for a test when none runs, and stopped after.
enum Journal {
    static let socket = "/run/systemd/journal/socket"

    static func with<R>(_ body: () async throws -> R) async throws -> R {
        let running = FileManager.default.fileExists(atPath: socket) && (try? CLI.run(
            ["-c", "ls /run/systemd/journal/socket && pgrep -x systemd-journal"], executable: "/bin/sh").status) == 0
        guard !running else { return try await body() }
        let journald = Process()
        journald.executableURL = URL(fileURLWithPath: "/lib/systemd/systemd-journald")
        journald.standardOutput = FileHandle.nullDevice
        journald.standardError = FileHandle.nullDevice
        try journald.run()
        defer {
            journald.terminate()
            journald.waitUntilExit()
            try? FileManager.default.removeItem(atPath: "/run/systemd/journal")
        }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { usleep(20_000) }
        return try await body()
    }

    /// The journal entries a process wrote, as JSON objects.
    static func entries(pid: Int32) throws -> [[String: String]] {
        let out = try CLI.run(["-o", "json", "--no-pager", "_PID=\(pid)"], executable: "/usr/bin/journalctl").stdout
        return out.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }.map { $0.compactMapValues { $0 as? String } }
    }
}

/// `tailor run` as a real process.
final class Daemon {
    let process = Process()

    /// `log`: a file its log lines go to (`--log-to stderr`, also while another test's
    /// journald runs); without it they go to the journal. Every table entry is read
    /// every 2 s (`--deep-interval`), the reconciles between compare records.
    /// `arguments` go after these.
    init(_ specs: String, _ root: PinRoot, interval: String = "1", environment: [String: String] = [:],
         log: String? = nil, arguments: [String] = []) throws {
        process.executableURL = Golden.tailor
        process.arguments = ["run", specs, "--bpffs", root.path, "--interval", interval, "--deep-interval", "2",
                             "--debounce", "50"] + (log == nil ? [] : ["--log-to", "stderr"]) + arguments
        process.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"].merging(environment) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try log.map(Self.appending) ?? .nullDevice
        try process.run()
    }

    /// `path` opened for writing at its end: a daemon started again adds to the log.
    static func appending(_ path: String) throws -> FileHandle {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        return handle
    }

    /// SIGTERM, then the exit status.
    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// A datagram socket standing in for systemd's notification socket.
final class NotifySocket {
    let path: String
    let fd: Int32

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-notify-\(UUID().uuidString)").path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw NotifyError() }
    }

    struct NotifyError: Error {}

    /// The next message, or nil after `seconds`.
    func receive(within seconds: Double) -> String? {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(seconds * 1000)) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
    }

    /// Messages until one contains `text`, or nil after `seconds`.
    func wait(for text: String, within seconds: Double) -> String? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let message = receive(within: deadline.timeIntervalSinceNow), message.contains(text) { return message }
        }
        return nil
    }

    /// The messages waiting, and those that follow within 50 ms of the last (for up to 3 s).
    func drain() -> [String] {
        var messages: [String] = []
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline, let message = receive(within: 0.05) { messages.append(message) }
        return messages
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

/// Polls `condition` every 20 ms for up to `seconds`; an error counts as not yet.
func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if (try? condition()) == true { return true }
        usleep(20_000)
    }
    return (try? condition()) == true
}

@Suite("tailor run", .kernel, .serialized)
struct DaemonTests {
    /// A spec directory in a git repository: commit 1 drops UDP to port 9, commit 2
    /// to port 10, on TC ingress of the lab's side b.
    struct Repository {
        let directory: String
        let lab: Lab
        var commits: [String] = []

        init(_ lab: Lab) throws {
            self.lab = lab
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-run-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try git("init", "-q")
            for port in [9, 10] {
                try write(spec(dropping: port))
                try git("add", "edge.yaml")
                try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "drop \(port)")
                commits.append(try git("rev-parse", "HEAD").trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }

        var file: String { directory + "/edge.yaml" }

        func spec(dropping port: Int) -> String { lab.filterChainSpec(droppingUDP: port) }

        func write(_ text: String) throws { try text.write(toFile: file, atomically: true, encoding: .utf8) }

        @discardableResult
        func git(_ arguments: String...) throws -> String {
            let run = try CLI.run(["-C", directory] + arguments, executable: "/usr/bin/git")
            guard run.status == 0 else { throw CommandFailed(command: "git \(arguments)", output: run.stderr) }
            return run.stdout
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    struct CommandFailed: Error { let command: String, output: String }

    static func record(_ root: PinRoot) -> ChainRecord? {
        (try? MetaRecordReader.read(root.appending("edge", "meta"))) ?? nil
    }

    @Test("reconciles edits, git checkouts and tampering, survives bad specs, logs to the journal, stops and restarts cleanly")
    func lifecycle() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                try await Journal.with {
                    let repository = try Repository(lab)
                    defer { repository.remove() }
                    try repository.git("checkout", "-q", repository.commits[0])
                    let daemon = try Daemon(repository.directory, root)
                    var stopped = false
                    defer { if !stopped { _ = daemon.stop() } }

                    // Start: the chain is created, records the commit, and is attached (the
                    // record is in place a moment before the root is attached).
                    let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                    let started = eventually {
                        let attached = try hook.attachedProgram() != nil
                        return attached && Self.record(root)?.gitRevision == repository.commits[0]
                    }
                    #expect(started)
                    #expect(try Traffic.udp(in: lab, count: 3, port: 9, timeout: .milliseconds(300)) == 0)

                    // An edit, not committed: applied, recorded as dirty.
                    try repository.write(repository.spec(dropping: 11))
                    #expect(eventually { Self.record(root)?.gitRevision == repository.commits[0] + "+dirty" })
                    #expect(try Traffic.udp(in: lab, count: 3, port: 9) == 3)
                    #expect(try Traffic.udp(in: lab, count: 3, port: 11, timeout: .milliseconds(300)) == 0)

                    // A broken file changes nothing in the kernel.
                    let before = try KernelSnapshot(root, hooks: [])
                    try repository.write("apiVersion: tailor/v1\nkind: Chain\nmetadata: {name: edge\n")
                    usleep(1_500_000)
                    #expect(try KernelSnapshot(root, hooks: []) == before)

                    // git checkout of another commit: converges to it.
                    try repository.git("checkout", "-q", "--", ".")
                    try repository.git("checkout", "-q", repository.commits[1])
                    #expect(eventually { Self.record(root)?.gitRevision == repository.commits[1] })
                    #expect(try Traffic.udp(in: lab, count: 3, port: 10, timeout: .milliseconds(300)) == 0)

                    // Tampering, each kind repaired within an interval or two. The next tampering waits
                    // for the journal to say the repair is done: a repair puts back the tables too, so a
                    // table changed while it runs would be put back unnamed.
                    let pid = daemon.process.processIdentifier
                    let repaired = { (kind: String) in
                        eventually(10) {
                            try Journal.entries(pid: pid).contains {
                                $0["MESSAGE"] == "drift repaired" && $0["DRIFT_KIND"] == kind
                            }
                        }
                    }
                    let rootID = try Program(pinnedAt: root.appending("edge", "root")).info().id
                    try TC.detach(from: lab.b.interface(), direction: .ingress, expected: rootID)
                    #expect(eventually(5) { try hook.attachedProgram() == rootID })
                    #expect(repaired("root-detached"))
                    let slots = try ProgramArray(pinnedAt: root.appending("edge", "progs"))
                    let count = try #require(Self.record(root)?.cubes["count"])
                    try slots.clear(count.slot)
                    #expect(eventually(5) { try slots.program(at: count.slot)?.rawValue == count.program })
                    #expect(repaired("slot-empty"))
                    let rules = try BPFMap(pinnedAt: root.appending("edge", "cubes", "acl", "maps", "rules"))
                    let rule = try #require(try rules.lookup([0, 0, 0, 0]))
                    try rules.update([0, 0, 0, 0], [UInt8](repeating: 0, count: rule.count))
                    #expect(eventually(5) { try rules.lookup([0, 0, 0, 0]) == rule })
                    #expect(repaired("table-changed"))
                    let countPins = root.appending("edge", "cubes", "count")
                    try root.unpin(countPins + "/prog")
                    try root.unpin(countPins + "/maps/counters")
                    #expect(eventually(5) {
                        try Program(pinnedAt: countPins + "/prog").info().id.rawValue == count.program
                            && root.exists(countPins + "/maps/counters")
                    })

                    // SIGTERM: exits 0 and the datapath stays, still filtering.
                    #expect(daemon.stop() == 0)
                    stopped = true
                    #expect(try hook.attachedProgram() == rootID)
                    #expect(try Traffic.udp(in: lab, count: 3, port: 10, timeout: .milliseconds(300)) == 0)
                    #expect(try Traffic.udp(in: lab, count: 3, port: 9) == 3)

                    // A restart adopts what is there and changes nothing.
                    let running = try KernelSnapshot(root, hooks: [hook])
                    let again = try Daemon(repository.directory, root, interval: "60")
                    let restarted = eventually {
                        try Journal.entries(pid: again.process.processIdentifier)
                            .contains { $0["MESSAGE"] == "tailor run is ready" }
                    }
                    #expect(restarted)
                    #expect(again.stop() == 0)
                    #expect(try KernelSnapshot(root, hooks: [hook]) == running)
                    #expect(try !Journal.entries(pid: again.process.processIdentifier)
                        .contains { $0["MESSAGE"] == "chain reconciled" })

                    // The journal: structured fields, one PLAN_ID per reconcile.
                    let entries = try Journal.entries(pid: pid)
                    for field in ["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC",
                                  "CHAIN", "CUBE", "ACTION", "PLAN_ID", "GIT_COMMIT", "DURATION_US", "DRIFT_KIND",
                                  "SPEC_FILE"] {
                        #expect(entries.contains { $0[field] != nil }, "no entry has \(field)")
                    }
                    #expect(entries.allSatisfy { $0["SYSLOG_IDENTIFIER"] == "tailor" })
                    let kinds = Set(entries.compactMap { $0["MESSAGE"] == "drift repaired" ? $0["DRIFT_KIND"] : nil })
                    #expect(kinds.isSuperset(of: ["root-detached", "slot-empty", "table-changed", "pin-missing"]),
                            "\(kinds)")
                    let specError = try #require(entries.first { $0["MESSAGE"] == "spec error" })
                    #expect(specError["SPEC_FILE"] == repository.file)
                    #expect(specError["POSITION"]?.hasPrefix(repository.file + ":4:") == true, "\(specError)")
                    #expect(specError["PRIORITY"] == "3")
                    let plans = Dictionary(grouping: entries.filter { $0["PLAN_ID"] != nil }) { $0["PLAN_ID"]! }
                    #expect(plans.values.allSatisfy { group in
                        group.contains { $0["MESSAGE"] == "reconcile started" }
                            && group.contains { $0["MESSAGE"] == "reconcile finished" }
                    })
                    try Chain.open("edge", pinRoot: root).destroy()
                }
            }
        }
    }

    @Test("sd_notify: READY, STATUS, WATCHDOG, STOPPING; SIGHUP reconciles; a failing chain backs off, others go on")
    func notifyAndBackoff() async throws {
        try await TransactionTests.withSpecs { specs, root in
            let lab = specs.lab
            let directory = specs.directory + "/run"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            // Native XDP on loopback: the kernel refuses the attach (a missing interface would be pending instead).
            let bad = specs.chain("bad", hook: "xdp", cubes: [specs.counter("c")])
                .replacingOccurrences(of: "interface: \(lab.b.interfaceName)", with: "interface: lo")
            try specs.chain("good", hook: "tc-ingress", cubes: [specs.counter("c")])
                .write(toFile: directory + "/good.yaml", atomically: true, encoding: .utf8)
            try bad.write(toFile: directory + "/bad.yaml", atomically: true, encoding: .utf8)
            let log = directory + ".log"
            try Data().write(to: URL(fileURLWithPath: log))
            let notify = try NotifySocket()
            let daemon = try Daemon(directory, root, environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"],
                                    log: log)
            let ready = notify.wait(for: "READY=1", within: 10)
            #expect(ready?.contains("STATUS=1 chain synced, 0 drifted, 1 failing") == true, "\(ready ?? "nothing")")
            #expect(notify.wait(for: "WATCHDOG=1", within: 1) != nil)
            #expect(root.exists(root.appending("good")) && !root.exists(root.appending("bad")))

            // The failed chain is not retried for the same specs within its 5 s backoff.
            let lines = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            #expect(eventually(5) { lines().contains("chain not retried yet") })
            #expect(lines().components(separatedBy: "chain failed").count - 1 == 1, "\(lines())")

            // SIGHUP reconciles at once; a new desired state for the chain is tried at once.
            kill(daemon.process.processIdentifier, SIGHUP)
            #expect(eventually(5) { lines().contains("REASON=SIGHUP") })
            try bad.replacingOccurrences(of: "interface: lo", with: "interface: \(lab.b.interfaceName)")
                .replacingOccurrences(of: "hook: xdp", with: "hook: tc-egress")
                .write(toFile: directory + "/bad.yaml", atomically: true, encoding: .utf8)
            #expect(notify.wait(for: "STATUS=2 chains synced, 0 drifted", within: 5) != nil)
            #expect(root.exists(root.appending("bad")))

            // A service manager that stops reading: its socket holds 10 datagrams (the watchdog's
            // pings fill it in 2 s), and the loop still reconciles. Reading again gets the newest status.
            let reconciles = { lines().components(separatedBy: "REASON=SIGHUP").count - 1 }
            for _ in 0..<15 {
                let before = reconciles()
                kill(daemon.process.processIdentifier, SIGHUP)
                #expect(eventually(5) { reconciles() > before }, "\(lines())")
                usleep(200_000)
            }
            let waiting = notify.drain()
            #expect(waiting.count >= 10, "\(waiting)")
            #expect(waiting.last { $0.hasPrefix("STATUS=") } == "STATUS=2 chains synced, 0 drifted", "\(waiting)")

            #expect(daemon.stop() == 0)
            #expect(notify.wait(for: "STOPPING=1", within: 2) != nil)
            #expect(lines().contains("tailor run is stopping; the datapath stays as it is"))
        }
    }
}

/// Prune safety of `tailor run` (docs/daemon.md, "Prune safety").
extension DaemonTests {
    @Test("an emptied spec directory is refused and a removed one keeps the last good state: the chain stays, the log says why")
    func emptiedAndRemovedSpecs() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let directory = FileManager.default.temporaryDirectory
                    .appendingPathComponent("tailor-run-empty-\(UniqueName.make(""))").path
                let (gone, log, allowLog) = (directory + ".gone", directory + ".log", directory + ".allow.log")
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                defer { for path in [directory, gone, log, allowLog] { try? FileManager.default.removeItem(atPath: path) } }
                let file = directory + "/edge.yaml"
                try lab.filterChainSpec(droppingUDP: 9).write(toFile: file, atomically: true, encoding: .utf8)
                for path in [log, allowLog] { try Data().write(to: URL(fileURLWithPath: path)) }
                let lines = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
                let count = { (text: String) in lines().components(separatedBy: text).count - 1 }
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)

                let daemon = try Daemon(directory, root, log: log)
                var stopped = false
                defer { if !stopped { _ = daemon.stop() } }
                let ready = eventually { try hook.attachedProgram() != nil && lines().contains("tailor run is ready") }
                #expect(ready, "\(lines())")
                let before = try KernelSnapshot(root, hooks: [hook])

                // Emptied: the plan is refused, the chain stays, the log and the status say why.
                try FileManager.default.removeItem(atPath: file)
                // The refusal is logged before the reconcile's closing status: wait for the latter.
                #expect(eventually { lines().contains("specs hold no chains: refused, 1 live chain kept") }, "\(lines())")
                #expect(lines().contains("plan refused: nothing is changed"), "\(lines())")
                #expect(lines().contains("REFUSAL=the specs hold no chains while 1 chain is live (edge)"), "\(lines())")
                #expect(lines().contains("LIVE_CHAINS=edge"), "\(lines())")
                var finished = count("reconcile finished")
                #expect(eventually { count("reconcile finished") >= finished + 2 })  // interval reconciles refuse too
                #expect(try KernelSnapshot(root, hooks: [hook]) == before, "an emptied directory changed the kernel")

                // Back, then the whole directory gone at once: a spec error, the last good state kept.
                let synced = count("STATUS=1 chain synced, 0 drifted\n")
                try lab.filterChainSpec(droppingUDP: 9).write(toFile: file, atomically: true, encoding: .utf8)
                #expect(eventually { count("STATUS=1 chain synced, 0 drifted\n") > synced }, "\(lines())")
                try FileManager.default.moveItem(atPath: directory, toPath: gone)
                #expect(eventually { lines().contains("no such file or directory") }, "\(lines())")
                #expect(eventually { count("STATUS=1 chain synced, 0 drifted, specs have 1 error") >= 2 }, "\(lines())")
                finished = count("reconcile finished")
                #expect(eventually { count("reconcile finished") >= finished + 1 })
                #expect(try KernelSnapshot(root, hooks: [hook]) == before, "a missing directory changed the kernel")
                #expect(daemon.stop() == 0)
                stopped = true

                // A first start on a missing directory changes nothing either.
                let missing = try CLI.run(["run", directory, "--bpffs", root.path])
                #expect(missing.status == 64 && missing.stderr.contains("is not a directory"), "\(missing)")
                #expect(try KernelSnapshot(root, hooks: [hook]) == before)

                // With --allow-empty, an empty directory removes the chain.
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                let allowing = try Daemon(directory, root, log: allowLog, arguments: ["--allow-empty"])
                defer { if allowing.process.isRunning { _ = allowing.stop() } }
                #expect(eventually { !root.exists(root.appending("edge")) })
                #expect(try hook.attachedProgram() == nil)
                #expect(allowing.stop() == 0)
            }
        }
    }
}

/// Spec directories replaced under the daemon (docs/daemon.md, "Git-sync layouts").
extension DaemonTests {
    @Test("a spec symlink swapped to a new worktree, and a directory removed and made again, are applied without an interval")
    func swappedAndRecreatedSpecs() async throws {
        try await Lab.with { lab in
            try await TestPinRoot.with { root in
                let fileManager = FileManager.default
                let base = fileManager.temporaryDirectory.appendingPathComponent("tailor-run-sync-\(UniqueName.make(""))").path
                try fileManager.createDirectory(atPath: base, withIntermediateDirectories: true)
                defer { try? fileManager.removeItem(atPath: base) }
                let write = { (directory: String, port: Int) in
                    try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
                    try lab.filterChainSpec(droppingUDP: port)
                        .write(toFile: directory + "/edge.yaml", atomically: true, encoding: .utf8)
                }
                // git-sync's swap: a new link beside the old one, renamed over it.
                let link = base + "/current"
                let swap = { (worktree: String) in
                    try fileManager.createSymbolicLink(atPath: base + "/new-link", withDestinationPath: worktree)
                    #expect(rename(base + "/new-link", link) == 0)
                }
                let (log, plainLog) = (base + "/swap.log", base + "/plain.log")
                for path in [log, plainLog] { try Data().write(to: URL(fileURLWithPath: path)) }
                let lines = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
                let plainLines = { (try? String(contentsOfFile: plainLog, encoding: .utf8)) ?? "" }
                let hook = ChainHook(interface: lab.b.interfaceName, namespace: lab.b.namespaceName, kind: .tcIngress)
                let digest = { Self.record(root)?.specDigest }

                try write(base + "/worktrees/one", 9)
                // A repository with no commit yet: git cannot say its revision, and the log says why.
                #expect(try CLI.run(["init", "-q", base + "/worktrees/one"], executable: "/usr/bin/git").status == 0)
                try fileManager.createSymbolicLink(atPath: link, withDestinationPath: "worktrees/one")
                // An interval no test waits for: only the watcher can bring the changes in.
                let daemon = try Daemon(link, root, interval: "600", log: log)
                var stopped = false
                defer { if !stopped { _ = daemon.stop() } }
                #expect(eventually { try hook.attachedProgram() != nil && lines().contains("tailor run is ready") }, "\(lines())")
                #expect(lines().contains("git revision unreadable"), "\(lines())")
                #expect(lines().contains("ambiguous argument 'HEAD'"), "\(lines())")

                // Twice: the watches must follow the first swap for the second to be seen.
                for (worktree, port) in [("worktrees/two", 10), ("worktrees/three", 11)] {
                    let before = digest()
                    try write(base + "/" + worktree, port)
                    try swap(worktree)
                    #expect(eventually(5) { digest() != before }, "swap to \(worktree) not applied: \(lines())")
                    #expect(try Traffic.udp(in: lab, count: 3, port: UInt16(port), timeout: .milliseconds(300)) == 0)
                }
                #expect(daemon.stop() == 0)
                stopped = true

                // A plain directory removed, then made again with another rule.
                let plain = base + "/plain"
                try write(plain, 12)
                var before = digest()
                let again = try Daemon(plain, root, interval: "600",
                                       log: plainLog)
                defer { if again.process.isRunning { _ = again.stop() } }
                #expect(eventually { digest() != before && plainLines().contains("tailor run is ready") }, "\(plainLines())")
                try fileManager.removeItem(atPath: plain)
                #expect(eventually(5) { plainLines().contains("no such file or directory") }, "\(plainLines())")
                before = digest()
                try write(plain, 13)
                #expect(eventually(5) { digest() != before }, "the re-created directory was not applied: \(plainLines())")
                #expect(try Traffic.udp(in: lab, count: 3, port: 13, timeout: .milliseconds(300)) == 0)
                #expect(again.stop() == 0)
                try Chain.open("edge", pinRoot: root).destroy()
            }
        }
    }
}

/// Chains whose interface does not exist yet (docs/daemon.md, "Pending chains").
extension DaemonTests {
    @Test("a chain whose interface does not exist is pending, not failed, and attached within 2 s of it appearing, again after it is deleted")
    func pendingInterface() async throws {
        try KernelEnvironment.require()
        let unique = UniqueName.make("")
        let (namespace, interface, peer) = ("tailor-t\(unique)p", "tt\(unique)p", "tt\(unique)q")
        try await Self.withNamespaceAndSpec(namespace, unique: unique, spec: """
                apiVersion: tailor/v1
                kind: Chain
                metadata: {name: late}
                spec:
                  attach: {interface: \(interface), namespace: \(namespace), hook: tc-ingress}
                  cubes:
                    - {name: count, type: counter}

                """) { root, directory, log, lines in
            // The CLI's answer stays an error: an apply cannot do what it was asked.
            let apply = try CLI.run(["apply", directory, "--bpffs", root.path])
            #expect(apply.status == 1 && apply.stderr.contains("no interface \(interface) in netns \(namespace)"), "\(apply)")

            let notify = try NotifySocket()
            let daemon = try Daemon(directory, root, interval: "600", environment: ["NOTIFY_SOCKET": notify.path],
                                    log: log)
            var stopped = false
            defer { if !stopped { _ = daemon.stop() } }
            let ready = notify.wait(for: "READY=1", within: 10)
            #expect(ready?.contains("STATUS=0 chains synced, 0 drifted, 1 pending") == true, "\(ready ?? "nothing")")
            #expect(lines().contains("chain pending"), "\(lines())")
            #expect(lines().contains("CHAIN=late") && lines().contains("INTERFACE=\(interface)")
                && lines().contains("NAMESPACE=\(namespace)"), "\(lines())")

            // Time for the daemon's link-event socket to open: the interface's arrival is then what it hears.
            usleep(500_000)
            let hook = ChainHook(interface: interface, namespace: namespace, kind: .tcIngress)
            let created = try CLI.run(["-n", namespace, "link", "add", interface, "type", "veth", "peer", "name", peer],
                                      executable: "/usr/sbin/ip")
            #expect(created.status == 0, "\(created)")
            #expect(eventually(2) { try hook.attachedProgram() != nil }, "not attached within 2 s: \(lines())")
            #expect(notify.wait(for: "STATUS=1 chain synced, 0 drifted", within: 2) != nil)
            #expect(lines().contains("REASON=interface"), "\(lines())")

            // The interface deleted: pending again at the next reconcile, re-attached when it is back.
            let pendingLines = { lines().components(separatedBy: "chain pending").count - 1 }
            let before = pendingLines()
            #expect(try CLI.run(["-n", namespace, "link", "del", interface], executable: "/usr/sbin/ip").status == 0)
            kill(daemon.process.processIdentifier, SIGHUP)
            #expect(eventually(5) { pendingLines() > before }, "\(lines())")
            usleep(500_000)
            #expect(try CLI.run(["-n", namespace, "link", "add", interface, "type", "veth", "peer", "name", peer],
                                executable: "/usr/sbin/ip").status == 0)
            #expect(eventually(2) { try hook.attachedProgram() != nil }, "not re-attached within 2 s: \(lines())")
            #expect(!lines().contains("chain failed") && !lines().contains("chain not retried yet"), "\(lines())")
            #expect(daemon.stop() == 0)
            stopped = true
            try Chain.open("late", pinRoot: root).destroy()
        }
    }
}

extension DaemonTests {
    @Test("an interface a router names that does not exist yet is bound within 2 s of it appearing")
    func cubeInterfaceAppears() async throws {
        try KernelEnvironment.require()
        let unique = UniqueName.make("")
        let (namespace, interface, peer, later) = ("tailor-t\(unique)r", "tt\(unique)a", "tt\(unique)b", "tt\(unique)c")
        try await Self.withNamespaceAndSpec(namespace, unique: unique, spec: """
                apiVersion: tailor/v1
                kind: Chain
                metadata: {name: gw}
                spec:
                  attach: {interface: \(interface), namespace: \(namespace), hook: tc-ingress}
                  cubes:
                    - name: route
                      type: router
                      config:
                        interfaces:
                          - {name: \(interface), addresses: [10.0.1.1/24]}
                          - {name: \(later), addresses: [10.0.2.1/24]}

                """) { root, directory, log, lines in
            #expect(try CLI.run(["-n", namespace, "link", "add", interface, "type", "veth", "peer", "name", peer],
                                executable: "/usr/sbin/ip").status == 0)
            let bound = { () -> UInt32? in
                (try? MetaRecordReader.read(root.appending("gw", "meta")))??.cubes["route"]?.interfaces?[later]
            }
            let notify = try NotifySocket()
            let daemon = try Daemon(directory, root, interval: "600", environment: ["NOTIFY_SOCKET": notify.path],
                                    log: log)
            var stopped = false
            defer { if !stopped { _ = daemon.stop() } }
            #expect(notify.wait(for: "READY=1", within: 10)?.contains("STATUS=1 chain synced") == true)
            #expect(bound() == 0, "\(lines())")

            usleep(500_000)  // the link-event socket opens
            #expect(try CLI.run(["-n", namespace, "link", "add", later, "type", "veth", "peer", "name", later + "p"],
                                executable: "/usr/sbin/ip").status == 0)
            let index = try NetworkInterface.lookup(later, in: .named(namespace)).index.rawValue
            #expect(eventually(2) { bound() == UInt32(index) }, "not bound within 2 s: \(lines())")
            #expect(lines().contains("interface \(later): absent -> ifindex \(index)"), "\(lines())")
            #expect(daemon.stop() == 0)
            stopped = true
            try Chain.open("gw", pinRoot: root).destroy()
        }
    }
}

extension DaemonTests {
    /// Runs `body` with namespace `namespace` made, a pin root, and a spec directory
    /// holding `spec` (and its log file, read by `lines`); removes them all afterwards.
    static func withNamespaceAndSpec(
        _ namespace: String, unique: String, spec: String,
        _ body: (_ root: PinRoot, _ directory: String, _ log: String, _ lines: @escaping @Sendable () -> String) async throws -> Void
    ) async throws {
        #expect(try CLI.run(["netns", "add", namespace], executable: "/usr/sbin/ip").status == 0)
        defer { _ = try? CLI.run(["netns", "delete", namespace], executable: "/usr/sbin/ip") }
        try await TestPinRoot.with { root in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailor-run-\(unique)").path
            let log = directory + ".log"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { for path in [directory, log] { try? FileManager.default.removeItem(atPath: path) } }
            try spec.write(toFile: directory + "/spec.yaml", atomically: true, encoding: .utf8)
            try Data().write(to: URL(fileURLWithPath: log))
            try await body(root, directory, log) { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        }
    }
}

/// The watchdog stands for the reconcile loop (docs/daemon.md, "Watchdog").
extension DaemonTests {
    @Test("WATCHDOG=1 stops while a reconcile hangs longer than WatchdogSec, and comes back after it")
    func watchdogFollowsTheLoop() async throws {
        try await TransactionTests.withSpecs { specs, root in
            let directory = specs.directory + "/run"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try specs.chain("fast", hook: "tc-ingress", cubes: [specs.counter("c")])
                .write(toFile: directory + "/fast.yaml", atomically: true, encoding: .utf8)
            let log = directory + ".log"
            try Data().write(to: URL(fileURLWithPath: log))
            let lines = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            let notify = try NotifySocket()
            // WatchdogSec=0.4 s: pings every 0.2 s; creating chain slow hangs 2.5 s.
            let daemon = try Daemon(directory, root, interval: "600", environment: [
                "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
                "TAILOR_FAILPOINTS": "slow: pin chain slow=sleep:2500",
            ], log: log)
            var stopped = false
            defer { if !stopped { _ = daemon.stop() } }
            #expect(notify.wait(for: "READY=1", within: 10) != nil)

            /// Every message in the next `seconds`, with when it came.
            let listen = { (seconds: Double) -> [(at: Date, message: String)] in
                var messages: [(at: Date, message: String)] = []
                let deadline = Date().addingTimeInterval(seconds)
                while Date() < deadline {
                    if let message = notify.receive(within: deadline.timeIntervalSinceNow) { messages.append((Date(), message)) }
                }
                return messages
            }
            let gaps = { (messages: [(at: Date, message: String)]) -> [Double] in
                let pings = messages.filter { $0.message == "WATCHDOG=1" }.map(\.at)
                return zip(pings, pings.dropFirst()).map { $1.timeIntervalSince($0) }
            }
            let idle = gaps(listen(1))
            #expect(idle.count >= 3 && idle.allSatisfy { $0 < 0.35 }, "pings while idle: \(idle)")

            try specs.chain("slow", hook: "tc-egress", cubes: [specs.counter("c")])
                .write(toFile: directory + "/slow.yaml", atomically: true, encoding: .utf8)
            let during = listen(4)
            let longest = gaps(during).max() ?? 0
            #expect(longest > 1.5, "no gap in the pings while a reconcile hung: \(gaps(during))")
            let synced = try #require(during.firstIndex { $0.message.contains("STATUS=2 chains synced") },
                                      "the slow reconcile did not finish: \(during.map(\.message))")
            let after = gaps(Array(during[synced...]))
            #expect(after.count >= 3 && after.allSatisfy { $0 < 0.35 }, "pings after the reconcile: \(after)")
            #expect(lines().contains("reconcile stuck: watchdog pings withheld"), "\(lines())")
            #expect(lines().contains("watchdog pings resumed"), "\(lines())")
            #expect(daemon.stop() == 0)
            stopped = true
        }
    }
}

/// `tailor --version`: what a bug report needs to name the build.
@Suite("tailor --version")
struct VersionTests {
    @Test("prints tailor's version, the git commit it was built from, libbpf's version and the kernel release")
    func version() throws {
        let run = try CLI.run(["--version"])
        #expect(run.status == 0 && run.stderr.isEmpty, "\(run)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 4, "\(run.stdout)")
        #expect(lines[0].wholeMatch(of: /tailor \d+\.\d+\.\d+/) != nil, "\(lines[0])")

        // Built from this repository: a commit it has (the tests may run after later commits), else unknown.
        let head = try CLI.run(["-C", Golden.root.path, "rev-parse", "HEAD"], executable: "/usr/bin/git")
        if head.status == 0 {
            let commit = try #require(lines[1].wholeMatch(of: /commit ([0-9a-f]{40})(\+dirty)?/), "\(lines[1])").1
            let known = try CLI.run(["-C", Golden.root.path, "cat-file", "-e", "\(commit)^{commit}"], executable: "/usr/bin/git")
            #expect(known.status == 0, "\(commit) is not a commit of \(Golden.root.path)")
        } else {
            #expect(lines[1] == "commit unknown")
        }

        #expect(lines[2] == "libbpf \(libbpf_major_version()).\(libbpf_minor_version())")
        var system = utsname()
        #expect(uname(&system) == 0)
        let release = withUnsafeBytes(of: system.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        #expect(lines[3] == "kernel \(release)")
    }
}
