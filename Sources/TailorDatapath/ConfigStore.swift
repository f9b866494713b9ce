import Foundation
import TailorKernel

/// The configs a chain's cubes were committed with, pinned in the kernel beside the
/// chain, so the plan's old values are what is live: after a reboot bpffs is empty
/// and every chain is built again, so a file on disk could only ever be stale.
///
/// One array map per config under `<chain>/config/`, pinned under the sha256 of its
/// canonical JSON (`ConfigDocument.canonicalJSON`): a 4-byte little-endian length,
/// the JSON, zeros to the end, cut into elements of at most 64 KiB (a 10,000-rule
/// firewall is about 1 MiB; the meta record's one 64 KiB value could not hold it).
/// Named by content, a config is written once however many cubes and commits name it,
/// and the commit protocol only ever adds configs before a record names them and
/// removes them once no record does: the record (committed or pending) always names
/// configs that are there. `bpftool map dump pinned <chain>/config/<digest>` shows
/// the bytes.
public struct ConfigStore: Sendable {
    /// The largest element: big configs span several.
    static let elementLimit = 1 << 16
    /// The map name the kernel shows (15 characters at most).
    static let mapName = "tailor_config"

    let pinRoot: PinRoot
    /// `<chain>/config`.
    public let directory: String

    /// The store of the chain pinned at `chain`.
    public init(pinRoot: PinRoot, chain: ChainPins) {
        self.pinRoot = pinRoot
        directory = chain.config
    }

    /// Pins each config (digest -> canonical JSON) that is not pinned whole yet; one
    /// changed outside tailor is pinned anew, so the commit that names it heals it. A
    /// map is filled before it is pinned, so a pin always holds a whole config.
    func write(_ configs: [String: [UInt8]]) throws {
        guard !configs.isEmpty else { return }
        try pinRoot.makeDirectory(directory)
        for (digest, json) in configs.sorted(by: { $0.key < $1.key }) where read(digest) != .json(json) {
            if pinRoot.exists(pin(digest)) { try pinRoot.unpin(pin(digest)) }
            var bytes = withUnsafeBytes(of: UInt32(json.count).littleEndian, Array.init) + json
            let size = min(Self.elementLimit, (bytes.count + 7) & ~7)
            let count = (bytes.count + size - 1) / size
            bytes += [UInt8](repeating: 0, count: count * size - bytes.count)
            let map = try BPFMap.create(.array, name: Self.mapName, keySize: 4, valueSize: size, maxEntries: count)
            try map.writeAll(FlatEntries(keys: (0..<UInt32(count)).flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) },
                                         values: bytes, keySize: 4, valueSize: size))
            try map.pin(at: pin(digest))
        }
    }

    /// Unpins every config `record` does not name (`unreferenced`); returns their digests.
    @discardableResult
    func trim(to record: ChainRecord) throws -> [String] {
        let unreferenced = unreferenced(by: record)
        for name in unreferenced { try pinRoot.unpin(pin(name)) }
        return unreferenced
    }

    /// Where config `digest` is pinned.
    private func pin(_ digest: String) -> String { directory + "/" + digest }

    /// The digests of the configs pinned.
    func pinned() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    /// The configs pinned that `record` does not name (committed or pending): left by
    /// an apply stopped between pinning them and writing the record, or before it
    /// removed the ones its record no longer names.
    public func unreferenced(by record: ChainRecord) -> [String] {
        let named = record.configDigests
        return pinned().filter { !named.contains($0) }
    }

    /// The JSON of config `digest`, checked against the digest; why not, when it is
    /// missing, unreadable, or does not match (changed outside tailor).
    public func read(_ digest: String) -> RecordedConfig {
        let pin = pin(digest)
        guard pinRoot.exists(pin) else {
            return .unavailable("its recorded config is missing (no pin \(pin))")
        }
        do {
            let map = try BPFMap(pinnedAt: pin)
            let values = try map.readAll(chunk: max(1, map.info.maxEntries)).values
            guard values.count >= 4 else { return .unavailable("its recorded config at \(pin) is empty") }
            let length = Int(values.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }.littleEndian)
            guard length <= values.count - 4 else {
                return .unavailable("its recorded config at \(pin) is cut short")
            }
            let json = Array(values[4..<4 + length])
            guard ConfigDocument.digest(of: json) == digest else {
                return .unavailable("its recorded config at \(pin) does not match its digest (changed outside tailor)")
            }
            return .json(json)
        } catch {
            return .unavailable("its recorded config at \(pin) cannot be read: \(error)")
        }
    }
}

/// A cube's recorded config as observe found it.
public enum RecordedConfig: Sendable, Equatable {
    /// The canonical JSON, checked against the digest in the cube's record.
    case json([UInt8])
    /// Why there is none to compare with: the plan then shows the cube-level change.
    case unavailable(String)
}
