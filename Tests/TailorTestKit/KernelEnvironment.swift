import CLibBPF
import CShims
import Foundation
import TailorObjects
import Testing

/// Whether this process can run kernel tests, and what to do when it cannot:
/// skip with the reason, or (with TAILOR_REQUIRE_KERNEL=1, as CI sets) fail.
public enum KernelEnvironment {
    /// Set in CI: a kernel test that cannot run is a failure, not a skip.
    public static let isRequired = ProcessInfo.processInfo.environment["TAILOR_REQUIRE_KERNEL"] == "1"

    /// Why kernel tests cannot run here, or nil when they can.
    public static let unavailableReason: String? = {
        if geteuid() != 0 { return "kernel tests need root (or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)" }
        var info = statfs()
        if statfs("/sys/fs/bpf", &info) != 0 || info.f_type != 0xcafe_4a11 {
            return "no bpffs at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)"
        }
        let fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "tailor_probe", 4, 4, 1, nil)
        if fd < 0 { return "the kernel refused a BPF map: \(String(cString: strerror(-fd)))" }
        close(fd)
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") && !FileManager.default.isExecutableFile(atPath: "/sbin/ip") {
            return "iproute2 (`ip`) is not installed"
        }
        return nil
    }()

    /// Enables a kernel test when the kernel is usable, or when CI requires it
    /// (then the test runs and `require()` fails it with the reason).
    public static var trait: ConditionTrait {
        .enabled(if: unavailableReason == nil || isRequired, Comment(rawValue: unavailableReason ?? "kernel available"))
    }

    /// Fails the calling test when the kernel cannot be used.
    public static func require() throws {
        if let unavailableReason { throw KernelUnavailable(reason: unavailableReason) }
    }
}

/// A kernel test ran where the kernel cannot be used (only with TAILOR_REQUIRE_KERNEL=1).
public struct KernelUnavailable: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "kernel test cannot run: \(reason)" }
}

extension Trait where Self == ConditionTrait {
    /// Marks a test that needs root, bpffs and BPF; see `KernelEnvironment`.
    public static var kernel: ConditionTrait { KernelEnvironment.trait }
}

/// Loads test fixture objects (`bpf/tests/`, `bpf/bench/`) and datapath objects by name.
public enum Fixtures {
    /// The ELF bytes of `bpf/tests/<name>.c` or `bpf/bench/<name>.c`, compiled for the tests.
    public static func testObject(_ name: String) throws -> [UInt8] {
        guard let bytes = testObjects.bytes(named: name) else { throw MissingObject(name: name) }
        return bytes
    }

    /// The ELF bytes of a datapath object (`bpf/cubes/<name>.c`, ...).
    public static func datapathObject(_ name: String) throws -> [UInt8] {
        guard let bytes = DatapathObjects.all.bytes(named: name) else { throw MissingObject(name: name) }
        return bytes
    }

    struct MissingObject: Error, CustomStringConvertible {
        let name: String
        var description: String { "no embedded BPF object \(name)" }
    }
}
