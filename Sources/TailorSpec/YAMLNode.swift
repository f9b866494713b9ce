/// A YAML node with the place it came from: what the decoder works on, so every
/// error can point at `file:line:col`.
public struct YAMLNode: Sendable, Hashable {
    /// The three YAML node kinds; mapping pairs stay in file order, keys as nodes
    /// so a bad key has a position too.
    public enum Value: Sendable {
        case scalar(String)
        case sequence([YAMLNode])
        case mapping([(key: YAMLNode, value: YAMLNode)])
    }

    public var value: Value
    public var location: SourceLocation
    /// Whether a scalar was quoted: a quoted "80" is a string, a plain 80 a number.
    public var isQuoted: Bool
    /// Nodes in this subtree, aliases expanded: what walking it costs.
    public var size: Int

    /// What the node is, for "expected X, found Y" messages.
    public var kindName: String {
        switch value {
        case .scalar(let text): isQuoted ? "the string \"\(excerpt(text))\"" : "'\(excerpt(text))'"
        case .sequence: "a list"
        case .mapping: "a mapping"
        }
    }

    /// A plain `null`, `~` or empty scalar.
    public var isNull: Bool {
        if case .scalar(let text) = value, !isQuoted { return ["", "~", "null", "Null", "NULL"].contains(text) }
        return false
    }
}

extension YAMLNode {
    public static func == (a: YAMLNode, b: YAMLNode) -> Bool {
        guard a.location == b.location, a.isQuoted == b.isQuoted else { return false }
        switch (a.value, b.value) {
        case (.scalar(let x), .scalar(let y)): return x == y
        case (.sequence(let x), .sequence(let y)): return x == y
        case (.mapping(let x), .mapping(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(location)
        hasher.combine(size)
    }
}
