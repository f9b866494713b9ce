import Foundation
import TailorLab

/// Runs `executable` with `arguments` (the calling thread's network namespace,
/// standard output to /dev/null, standard error to `stderrFile`) and returns how long
/// it took from spawn to exit. Benchmarks time processes with it: `Process`'s
/// `waitUntilExit` polls every 50 ms, coarser than what they measure. A non-zero
/// exit throws with the command and its standard error.
func timedRun(_ executable: String, _ arguments: [String], stderrFile: String) throws -> Duration {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, stderrFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let start = ContinuousClock.now
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
    guard spawned == 0 else {
        throw CommandFailed(command: executable, status: -1, stderr: "posix_spawn: \(String(cString: strerror(spawned)))")
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let elapsed = ContinuousClock.now - start
    // WIFEXITED and WEXITSTATUS, which Swift does not import.
    guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
        let stderr = (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? ""
        throw CommandFailed(command: ([executable] + arguments.prefix(8)).joined(separator: " "),
                            status: status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + status & 0x7f,
                            stderr: String(stderr.suffix(2000)))
    }
    return elapsed
}
