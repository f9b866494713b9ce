import Glibc

// libbpf's option structs carry their own size (`sz`) and libbpf refuses one whose
// bytes past the last field it knows are not zero. Optimised Swift can leave garbage
// in padding, so every option struct is built in zeroed memory and `sz` is set to the
// end of the last field used, never to MemoryLayout<T>.size (DESIGN.md, Known traps).

/// Calls `body` with a pointer to a `T` whose every byte, padding included, is zero.
func withZeroed<T, R, E: Error>(_: T.Type, _ body: (UnsafeMutablePointer<T>) throws(E) -> R) throws(E) -> R {
    let pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
    memset(pointer, 0, MemoryLayout<T>.stride)
    defer { pointer.deallocate() }
    return try body(pointer)
}

/// The end of `field` within `T` (C's `offsetofend`): the value libbpf wants in `sz`.
func offsetOfEnd<T, F>(_ field: KeyPath<T, F>) -> Int {
    guard let offset = MemoryLayout<T>.offset(of: field) else {
        preconditionFailure("\(field) is not a stored field")
    }
    return offset + MemoryLayout<F>.size
}

/// Reads a fixed-size C `char[N]` field (imported as a tuple) as a Swift string.
func string<T>(fromCArray array: T) -> String {
    withUnsafeBytes(of: array) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// A file descriptor this process owns; closed exactly once, when the owner goes.
final class Descriptor: Sendable {
    let raw: Int32
    init(adopting raw: Int32) { self.raw = raw }
    deinit { close(raw) }
}

/// What a BPF file descriptor refers to, from its anon-inode name: "bpf-prog",
/// "bpf-map", "bpf_link"... (the info syscall answers for any kind, so it cannot tell).
func bpfObjectKind(_ fd: Int32) -> String {
    var target = [CChar](repeating: 0, count: 64)
    let n = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
    guard n > 0 else { return "unknown" }
    let name = String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.hasPrefix("anon_inode:") ? String(name.dropFirst("anon_inode:".count)) : name
}
