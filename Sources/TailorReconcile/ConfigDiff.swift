import TailorDatapath

/// One attribute of a cube's config that a plan changes, by path, terraform-style:
/// `rules[4999].match.dport: 8080 -> 8081`, `+ rules[12]`, `- drop["10.0.0.0/8"]`.
public struct AttributeChange: Sendable, Equatable, Codable {
    public enum Action: String, Sendable, Codable {
        case add, remove, change
    }
    /// Fields after a dot, list items by index (in the new list; in the old one for
    /// an item removed), map entries and set members by key in quotes.
    public var path: String
    public var action: Action
    /// The value in the live instance's recorded config (nil for an add).
    public var before: ConfigDocument?
    /// The value in the spec (nil for a removal).
    public var after: ConfigDocument?
    /// Whether this change is what makes the cube's instance be replaced (the
    /// others are made in place, or ride along).
    public var forcesReplacement = false
    /// The item's path in the old list, when items inserted or removed ahead of
    /// it moved it.
    public var formerPath: String?

    public init(path: String, action: Action, before: ConfigDocument? = nil, after: ConfigDocument? = nil,
                forcesReplacement: Bool = false, formerPath: String? = nil) {
        (self.path, self.action, self.before, self.after) = (path, action, before, after)
        self.forcesReplacement = forcesReplacement
        self.formerPath = formerPath
    }
}

/// The differences between a cube's recorded config and the desired one, found by
/// walking both: fields and map entries by name, set members by value, and lists
/// as sequences, with a Myers diff on their items, so an insert in the middle of
/// 10,000 rules is one `+ rules[N]` and not 5,000 changes. The desired document
/// says what kind each container is (the recorded JSON does not).
struct ConfigDiff {
    /// A place in a document: the names on the way (for `CubeWords.inPlace`) and its text.
    struct Path {
        var names: [String] = []
        var text = ""

        func field(_ name: String) -> Path {
            Path(names: names + [name], text: text.isEmpty ? name : text + "." + name)
        }

        func key(_ key: String) -> Path {
            Path(names: names + [key], text: text + "[" + ConfigDocument.quoted(key) + "]")
        }

        func index(_ index: Int) -> Path { Path(names: names, text: text + "[\(index)]") }
    }

    /// Lists of scalars this short or shorter change as one value (`[a, b] -> [a]`).
    static let atomicListLimit = 8
    /// Beyond this many inserts and deletes between two lists, items are compared
    /// position by position instead (the Myers diff costs O((N+M)·D)).
    static let maxEdits = 1_000

    var changes: [AttributeChange] = []
    /// Per list, set or map path with changes: how many of its items stayed the same.
    var unchanged: [String: Int] = [:]
    /// Whether a change at a path forces the instance's replacement.
    let forces: ([String]) -> Bool

    /// The changes from `old` (recorded) to `new` (desired).
    static func between(_ old: ConfigDocument, _ new: ConfigDocument, forces: @escaping ([String]) -> Bool)
        -> ConfigDiff {
        var diff = ConfigDiff(forces: forces)
        diff.compare(old, new, old: Path(), new: Path())
        return diff
    }

    /// `new`'s attributes as added: what a created cube's plan shows.
    static func created(_ new: ConfigDocument) -> [AttributeChange] {
        (new.members ?? []).map { AttributeChange(path: Path().field($0.name).text, action: .add, after: $0.value) }
    }

    /// A change at `path` (in the new document) of something at `former` in the old one.
    mutating func record(_ action: AttributeChange.Action, _ before: ConfigDocument?, _ after: ConfigDocument?,
                         at path: Path, former: Path) {
        changes.append(AttributeChange(path: path.text, action: action, before: before, after: after,
                                       forcesReplacement: forces(path.names),
                                       formerPath: former.text == path.text ? nil : former.text))
    }

    mutating func compare(_ old: ConfigDocument?, _ new: ConfigDocument?, old oldPath: Path, new newPath: Path) {
        guard let new else {
            if let old { record(.remove, old, nil, at: newPath, former: oldPath) }
            return
        }
        guard let old else { return record(.add, nil, new, at: newPath, former: oldPath) }
        // Containers are walked rather than encoded whole to compare: a firewall's
        // rules would be encoded once per level. What changed inside says whether
        // the unchanged count of a list is worth showing.
        let changesBefore = changes.count
        defer { if changes.count == changesBefore { unchanged[newPath.text] = nil } }
        switch new {
        case .fields(let fields) where old.members != nil:
            let names = Set(fields.map(\.name))
            for field in fields {
                compare(old[field.name], field.value, old: oldPath.field(field.name), new: newPath.field(field.name))
            }
            for member in old.members ?? [] where !names.contains(member.name) {
                record(.remove, member.value, nil, at: newPath.field(member.name), former: oldPath.field(member.name))
            }
        case .map(let entries) where old.members != nil:
            let before = Dictionary((old.members ?? []).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            var same = 0
            for key in Set(before.keys).union(entries.keys).sorted() {
                if before[key] != nil, let value = entries[key], before[key]?.canonicalJSON == value.canonicalJSON {
                    same += 1
                } else {
                    compare(before[key], entries[key], old: oldPath.key(key), new: newPath.key(key))
                }
            }
            if same > 0 { unchanged[newPath.text] = same }
        case .set(let items) where old.items != nil:
            let before = Dictionary((old.items ?? []).map { ($0.canonicalJSON, $0) }, uniquingKeysWith: { a, _ in a })
            let after = Dictionary(items.map { ($0.canonicalJSON, $0) }, uniquingKeysWith: { a, _ in a })
            let ordered = { (members: [[UInt8]: ConfigDocument]) in
                members.sorted { $0.key.lexicographicallyPrecedes($1.key) }
            }
            for (key, item) in ordered(before) where after[key] == nil {
                record(.remove, item, nil, at: newPath.key(item.flow), former: oldPath.key(item.flow))
            }
            for (key, item) in ordered(after) where before[key] == nil {
                record(.add, nil, item, at: newPath.key(item.flow), former: oldPath.key(item.flow))
            }
            let same = after.keys.filter { before[$0] != nil }.count
            if same > 0 { unchanged[newPath.text] = same }
        case .list(let items) where old.items != nil:
            let previous = old.items ?? []
            let scalars = (previous + items).allSatisfy { !$0.isContainer }
            if scalars && max(previous.count, items.count) <= Self.atomicListLimit {
                if previous != items { record(.change, old, new, at: newPath, former: oldPath) }
            } else {
                compareSequences(previous, items, old: oldPath, new: newPath)
            }
        default:
            if !Self.same(old, new) { record(.change, old, new, at: newPath, former: oldPath) }
        }
    }

    /// Whether recorded `old` holds the value of desired `new`: compared in place
    /// where the kinds match, through their canonical JSON where they cannot (sets,
    /// maps, fields in another order).
    static func same(_ old: ConfigDocument, _ new: ConfigDocument) -> Bool {
        switch (old, new) {
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.string(let a), .string(let b)): a == b
        case (.list(let a), .list(let b)): a.count == b.count && zip(a, b).allSatisfy { same($0, $1) }
        case (.fields(let a), .fields(let b)) where a.map(\.name) == b.map(\.name):
            zip(a, b).allSatisfy { same($0.value, $1.value) }
        default: old.canonicalJSON == new.canonicalJSON
        }
    }

    /// Two lists item by item: equal items (the longest common subsequence) stay,
    /// and within each run of removed and inserted items, items are paired in order
    /// as changes (compared inside), the rest removed or added.
    mutating func compareSequences(_ old: [ConfigDocument], _ new: [ConfigDocument], old oldPath: Path, new newPath: Path) {
        // The common ends compared in place; only the items between are encoded for the edit script.
        var prefix = 0
        while prefix < old.count && prefix < new.count && Self.same(old[prefix], new[prefix]) { prefix += 1 }
        var suffix = 0
        while suffix < old.count - prefix && suffix < new.count - prefix
            && Self.same(old[old.count - 1 - suffix], new[new.count - 1 - suffix]) { suffix += 1 }
        // Items as small integers, equal for equal canonical JSON.
        var ids: [[UInt8]: Int] = [:]
        let id = { (item: ConfigDocument) -> Int in
            let json = item.canonicalJSON
            if let known = ids[json] { return known }
            ids[json] = ids.count
            return ids.count - 1
        }
        let a = [Int](repeating: -1, count: prefix) + old[prefix..<old.count - suffix].map(id)
            + [Int](repeating: -2, count: suffix)
        let b = [Int](repeating: -1, count: prefix) + new[prefix..<new.count - suffix].map(id)
            + [Int](repeating: -2, count: suffix)
        var same = 0
        var hunk: (removed: [Int], inserted: [Int]) = ([], [])
        let flush = { (diff: inout ConfigDiff, hunk: inout (removed: [Int], inserted: [Int])) in
            for (i, j) in zip(hunk.removed, hunk.inserted) {
                diff.compare(old[i], new[j], old: oldPath.index(i), new: newPath.index(j))
            }
            // An item that goes is named where it was; one that comes, where it will be.
            for i in hunk.removed.dropFirst(hunk.inserted.count) {
                diff.record(.remove, old[i], nil, at: oldPath.index(i), former: oldPath.index(i))
            }
            for j in hunk.inserted.dropFirst(hunk.removed.count) {
                diff.record(.add, nil, new[j], at: newPath.index(j), former: newPath.index(j))
            }
            hunk = ([], [])
        }
        for edit in Self.edits(a, b) {
            switch edit {
            case .keep:
                same += 1
                flush(&self, &hunk)
            case .remove(let i): hunk.removed.append(i)
            case .insert(let j): hunk.inserted.append(j)
            }
        }
        flush(&self, &hunk)
        if same > 0 { unchanged[newPath.text] = same }
    }

    enum Edit: Equatable {
        case keep, remove(Int), insert(Int)
    }

    /// A shortest edit script from `a` to `b` (Myers' O(ND) algorithm) after the
    /// common prefix and suffix; past `maxEdits` the middle is paired position by
    /// position instead. Removals come before insertions within a run.
    static func edits(_ a: [Int], _ b: [Int]) -> [Edit] {
        var prefix = 0
        while prefix < a.count && prefix < b.count && a[prefix] == b[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < a.count - prefix && suffix < b.count - prefix
            && a[a.count - 1 - suffix] == b[b.count - 1 - suffix] { suffix += 1 }
        let middleA = Array(a[prefix..<a.count - suffix]), middleB = Array(b[prefix..<b.count - suffix])
        let middle = myers(middleA, middleB, limit: maxEdits) ?? positional(middleA.count, middleB.count)
        return Array(repeating: .keep, count: prefix)
            + middle.map { edit in
                switch edit {
                case .keep: .keep
                case .remove(let i): .remove(i + prefix)
                case .insert(let j): .insert(j + prefix)
                }
            }
            + Array(repeating: .keep, count: suffix)
    }

    /// Every item of the shorter list paired with the one at its position.
    static func positional(_ n: Int, _ m: Int) -> [Edit] {
        (0..<n).map(Edit.remove) + (0..<m).map(Edit.insert)
    }

    /// Myers' greedy algorithm, keeping for each edit count d only the diagonals it
    /// reached (O(D²) memory); nil when more than `limit` edits are needed.
    static func myers(_ a: [Int], _ b: [Int], limit: Int) -> [Edit]? {
        let n = a.count, m = b.count
        guard n > 0 || m > 0 else { return [] }
        guard n > 0, m > 0 else { return (0..<n).map(Edit.remove) + (0..<m).map(Edit.insert) }
        let offset = n + m + 1
        var v = [Int](repeating: 0, count: 2 * offset + 1)
        // trace[d]: v over diagonals -(d-1)...(d-1) as it was before step d.
        var trace: [[Int]] = []
        var found: Int?
        search: for d in 0...min(n + m, limit) {
            trace.append(d == 0 ? [] : Array(v[(offset - d + 1)...(offset + d - 1)]))
            for k in stride(from: -d, through: d, by: 2) {
                var x = k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1]) ? v[offset + k + 1]
                    : v[offset + k - 1] + 1
                var y = x - k
                while x < n && y < m && a[x] == b[y] { (x, y) = (x + 1, y + 1) }
                v[offset + k] = x
                if x >= n && y >= m {
                    found = d
                    break search
                }
            }
        }
        guard let found else { return nil }
        var edits: [Edit] = []
        var (x, y) = (n, m)
        for d in stride(from: found, to: 0, by: -1) {
            let previous = trace[d]
            let at = { (k: Int) in previous[k + d - 1] }
            let k = x - y
            let down = k == -d || (k != d && at(k - 1) < at(k + 1))
            let previousK = down ? k + 1 : k - 1
            let previousX = at(previousK), previousY = previousX - previousK
            while x > previousX && y > previousY {
                edits.append(.keep)
                (x, y) = (x - 1, y - 1)
            }
            edits.append(down ? .insert(previousY) : .remove(previousX))
            (x, y) = (previousX, previousY)
        }
        edits += Array(repeating: .keep, count: x)
        // Back to front as found; runs of removals before their insertions.
        var forward: [Edit] = []
        var run: [Edit] = []
        for edit in edits.reversed() {
            if edit == .keep {
                forward += run.filter { if case .remove = $0 { true } else { false } }
                    + run.filter { if case .insert = $0 { true } else { false } }
                run = []
                forward.append(edit)
            } else {
                run.append(edit)
            }
        }
        return forward + run.filter { if case .remove = $0 { true } else { false } }
            + run.filter { if case .insert = $0 { true } else { false } }
    }
}
