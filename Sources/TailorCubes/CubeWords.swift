import TailorDatapath
import TailorSpec

/// How a cube type's config and tables read in a plan: which config attributes the
/// live instance takes in place (the others force a replacement), and a table
/// entry in the config's words ("10.0.0.0/8", "rules[4]") for drift. The planner
/// knows no cube type; it asks this.
public struct CubeWords: Sendable {
    /// Whether a change of the attribute at `path` (its field and key names from
    /// the top, list indices left out) is made on the live instance, given the
    /// instance's tables that change in place (`ChainRecord.inPlaceTables`).
    public var inPlace: @Sendable (_ path: [String], _ inPlaceTables: Set<String>) -> Bool
    /// An entry of table `map` in the config's words, given the cube's desired
    /// config; nil where the type cannot say (the plan shows hex).
    public var entry: @Sendable (_ map: String, _ change: TableEntryChange, _ config: ConfigDocument?) -> EntryWords?

    public init(inPlace: @escaping @Sendable ([String], Set<String>) -> Bool = { _, _ in false },
                entry: @escaping @Sendable (String, TableEntryChange, ConfigDocument?) -> EntryWords? = { _, _, _ in nil }) {
        self.inPlace = inPlace
        self.entry = entry
    }

    /// Cube types whose config changes only ever replace the instance and whose
    /// tables the plan shows in hex.
    public static let none = CubeWords()
}

/// One entry of a table that differs between two versions: its key, and its value
/// before and after (nil where the entry is absent).
public struct TableEntryChange: Sendable, Equatable {
    public var key: [UInt8]
    public var before: [UInt8]?
    public var after: [UInt8]?

    public init(key: [UInt8], before: [UInt8]?, after: [UInt8]?) {
        (self.key, self.before, self.after) = (key, before, after)
    }
}

/// A table entry as a cube type words it.
public struct EntryWords: Sendable, Equatable {
    /// What the entry is: `10.0.0.0/8`, `rules[4]`, `port 8080`.
    public var key: String
    /// What it held and holds; nil where the value says nothing the key does not
    /// (a drop list's 1), or the entry is absent.
    public var before: String?
    public var after: String?
    /// Replaces `before -> after` where the values are too big to show (the
    /// firewall's rule bit vectors: which rules they change).
    public var summary: String?

    public init(key: String, before: String? = nil, after: String? = nil, summary: String? = nil) {
        (self.key, self.before, self.after, self.summary) = (key, before, after, summary)
    }
}

extension IPPrefix {
    /// The prefix of an LPM trie key (`lpmKey`): a little-endian length, then the address.
    init?(lpmKey key: [UInt8]) {
        guard key.count == 8 || key.count == 20 else { return nil }
        let length = Int(key[0]) | Int(key[1]) << 8 | Int(key[2]) << 16 | Int(key[3]) << 24
        guard length <= (key.count - 4) * 8 else { return nil }
        self.init(address: Array(key[4...]), length: length)
    }
}

/// Little-endian integer from bytes, as BPF on the host writes it; nil when there are too few.
func littleEndianValue<T: FixedWidthInteger>(_ bytes: [UInt8], as: T.Type = T.self) -> T? {
    guard bytes.count >= MemoryLayout<T>.size else { return nil }
    return bytes.prefix(MemoryLayout<T>.size).reversed().reduce(T(0)) { $0 << 8 | T($1) }
}
