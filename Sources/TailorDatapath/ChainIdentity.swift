import Foundation
import TailorKernel

/// Who a chain's root program is, baked into the root's own rodata before load
/// (`tailor_chain_identity` in bpf/root/root.c). Rodata is frozen at load, so
/// unlike the pins and the meta record it cannot be removed or changed while the
/// program lives: it is what proves that a program found on a hook is the root of
/// one of tailor's chains when the pins that would say so are gone.
public struct ChainIdentity: Sendable, Equatable, Codable {
    /// Marks the JSON as tailor's; a program whose rodata lacks it is not tailor's.
    static let marker = "tailor-chain"
    static let variable = "tailor_chain_identity"
    static let capacity = 1024

    public var tailor = ChainIdentity.marker
    /// Random, made when the chain is built: two builds of one name differ.
    public var id: String
    /// The pin root the chain was built under.
    public var pinRoot: String
    public var settings: ChainSettings

    init(settings: ChainSettings, pinRoot: PinRoot) {
        self.settings = settings
        self.pinRoot = pinRoot.path
        id = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// The rodata bytes: sorted-key JSON, zero-padded to the variable's size.
    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = [UInt8](try encoder.encode(self))
        guard json.count < Self.capacity else {
            throw DatapathError(.identityTooLarge, chain: settings.name, "its identity takes \(json.count) bytes, "
                + "more than the root's \(Self.capacity - 1); shorten the chain, interface or namespace name")
        }
        return json + [UInt8](repeating: 0, count: Self.capacity - json.count)
    }

    /// Whether this is the root of chain `name` under `pinRoot`.
    public func names(_ name: String, under pinRoot: PinRoot) -> Bool {
        settings.name == name && self.pinRoot == pinRoot.path
    }

    /// The identity `program` carries, or nil when it carries none (not a root of
    /// tailor's). Reads the program's read-only array maps, which are opened by id
    /// (CAP_SYS_ADMIN).
    public static func of(_ program: Program) throws -> ChainIdentity? {
        let info = try program.info()
        guard info.name.hasPrefix("root_") else { return nil }
        for id in info.mapIDs {
            let map = try BPFMap(id: id)
            guard map.info.type == .array, map.info.maxEntries == 1, let value = try map.lookup([0, 0, 0, 0]) else { continue }
            if let identity = find(in: value) { return identity }
        }
        return nil
    }

    /// The identity in a rodata value: the JSON object that starts with tailor's marker.
    static func find(in value: [UInt8]) -> ChainIdentity? {
        let start = Array("{\"id\":".utf8)
        var index = 0
        while index + start.count <= value.count {
            if value[index] == start[0] && Array(value[index..<index + start.count]) == start {
                let end = value[index...].firstIndex(of: 0) ?? value.count
                if let identity = try? JSONDecoder().decode(ChainIdentity.self, from: Data(value[index..<end])),
                   identity.tailor == marker {
                    return identity
                }
            }
            index += 1
        }
        return nil
    }
}
