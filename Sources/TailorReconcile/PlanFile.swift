import Crypto
import Foundation
import TailorDatapath

/// A saved plan (`tailor plan --out FILE`): what was planned, from which specs, and
/// a fingerprint of the kernel state it was planned against. `tailor apply FILE`
/// re-reads the same specs and the kernel; if either changed it refuses, else it
/// applies exactly this plan (the planner is a pure function of the two).
public struct PlanFile: Codable, Sendable {
    public static let kind = "tailor-plan"
    public var kind = PlanFile.kind
    public var formatVersion = Plan.formatVersion
    /// Spec paths, absolute.
    public var paths: [String]
    /// Saved as `prune` and `allowEmpty` (booleans), so files written before
    /// `allowEmpty` existed still read, as plain `prune`, which keeps the refusal of
    /// empty specs.
    public var prune: Prune
    /// Whether the plan was made from a deep observe (every table entry read);
    /// false in files written before it existed.
    public var deep: Bool
    /// Desired chain -> digest.
    public var desired: [String: String]
    /// `Fingerprint.of(observed)` when the plan was made.
    public var observed: String
    public var plan: Plan

    public init(paths: [String], prune: Prune, deep: Bool = false, desired: [DesiredChain], observed: [ObservedChain],
                plan: Plan) {
        self.paths = paths.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        self.prune = prune
        self.deep = deep
        self.desired = Dictionary(desired.map { ($0.settings.name, $0.digest) }, uniquingKeysWith: { a, _ in a })
        self.observed = Fingerprint.of(observed)
        self.plan = plan
    }

    enum CodingKeys: String, CodingKey {
        case kind, formatVersion, paths, prune, allowEmpty, deep, desired, observed, plan
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        kind = try container.decode(String.self, forKey: .kind)
        formatVersion = try container.decode(Int.self, forKey: .formatVersion)
        paths = try container.decode([String].self, forKey: .paths)
        let prunes = try container.decode(Bool.self, forKey: .prune)
        let allowEmpty = try container.decodeIfPresent(Bool.self, forKey: .allowEmpty) ?? false
        prune = !prunes ? .keep : allowEmpty ? .pruneAllowingEmpty : .prune
        deep = try container.decodeIfPresent(Bool.self, forKey: .deep) ?? false
        desired = try container.decode([String: String].self, forKey: .desired)
        observed = try container.decode(String.self, forKey: .observed)
        plan = try container.decode(Plan.self, forKey: .plan)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        try container.encode(formatVersion, forKey: .formatVersion)
        try container.encode(paths, forKey: .paths)
        try container.encode(prune != .keep, forKey: .prune)
        try container.encode(prune == .pruneAllowingEmpty, forKey: .allowEmpty)
        try container.encode(deep, forKey: .deep)
        try container.encode(desired, forKey: .desired)
        try container.encode(observed, forKey: .observed)
        try container.encode(plan, forKey: .plan)
    }

    /// Why this saved plan cannot be applied to `desired` and `observed` now, or nil.
    public func staleness(desired now: [DesiredChain], observed live: [ObservedChain]) -> String? {
        let digests = Dictionary(now.map { ($0.settings.name, $0.digest) }, uniquingKeysWith: { a, _ in a })
        if digests != desired {
            let changed = Set(digests.keys).union(desired.keys).filter { digests[$0] != desired[$0] }.sorted()
            return "the specs changed since the plan was made (chains: \(changed.joined(separator: ", "))); plan again"
        }
        if Fingerprint.of(live) != observed {
            return "the live state changed since the plan was made; plan again"
        }
        return nil
    }
}

/// A digest of the observed state: records, slots, drift and table contents.
public enum Fingerprint {
    public static func of(_ chains: [ObservedChain]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var hasher = SHA256()
        for chain in chains.sorted(by: { $0.name < $1.name }) {
            hasher.update(data: Array("chain \(chain.name)\n".utf8))
            if let record = chain.record, let json = try? encoder.encode(record) { hasher.update(data: json) }
            for (slot, program) in chain.slots.sorted(by: { $0.key < $1.key }) {
                hasher.update(data: Array("slot \(slot)=\(program.rawValue)\n".utf8))
            }
            for drift in chain.drift { hasher.update(data: Array("drift \(drift)\n".utf8)) }
            for (cube, maps) in chain.tables.sorted(by: { $0.key < $1.key }) {
                for (map, entries) in maps.sorted(by: { $0.key < $1.key }) {
                    hasher.update(data: Array("table \(cube)/\(map)\n".utf8))
                    for entry in entries.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                        hasher.update(data: entry.key)
                        hasher.update(data: entry.value)
                    }
                }
            }
        }
        return hexDigest(hasher.finalize())
    }
}
