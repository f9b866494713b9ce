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

    /// A plain scalar with no text: what an empty document is.
    var isEmptyScalar: Bool {
        if case .scalar(let text) = value, !isQuoted { return text.isEmpty }
        return false
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

extension YAMLNode {
    /// What a plain scalar means to YAML readers that do not read it as text: YAML
    /// 1.2's core schema, and YAML 1.1 (PyYAML and many tools), which also takes
    /// `yes`/`no`/`on`/`off` as booleans, `010` as the octal number 8 and `1:20` as
    /// the sexagesimal 80. Nil for text everyone reads as text. A spec meant for
    /// review must not mean one thing to tailor and another to the reviewer's tools.
    var nonTextReading: String? {
        guard case .scalar(let text) = value, !isQuoted else { return nil }
        if isNull { return "null (nothing)" }
        if ["true", "True", "TRUE", "false", "False", "FALSE"].contains(text) {
            return "the boolean \(text.lowercased())"
        }
        if ["y", "Y", "yes", "Yes", "YES", "on", "On", "ON"].contains(text) {
            return "the boolean true (YAML 1.1)"
        }
        if ["n", "N", "no", "No", "NO", "off", "Off", "OFF"].contains(text) {
            return "the boolean false (YAML 1.1)"
        }
        if let octal = text.wholeMatch(of: /[-+]?0([0-7_]+)/) {
            let value = Int(octal.1.filter { $0 != "_" }, radix: 8).map { " \($0)" } ?? ""
            return "the octal number\(value) (YAML 1.1)"
        }
        if text.wholeMatch(of: /[-+]?(0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0o[0-7]+|0b[01_]+/) != nil {
            return "the number \(text)"
        }
        if text.wholeMatch(of: /[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?/) != nil {
            return "a sexagesimal number (YAML 1.1)"
        }
        if text.wholeMatch(of: /[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)/)
            != nil {
            return "the number \(text)"
        }
        return nil
    }

    /// A plain number written with a leading zero (`010`): tailor would read 10, YAML
    /// 1.1 readers the octal 8. Nil when the scalar is not one.
    var leadingZeroProblem: String? {
        guard case .scalar(let text) = value, !isQuoted,
              text.wholeMatch(of: /[-+]?0[0-9]+/) != nil else { return nil }
        let digits = text.drop { $0 == "-" || $0 == "+" }.drop { $0 == "0" }
        return "'\(text)' has a leading zero, which YAML 1.1 readers (PyYAML and many tools) take as an octal "
            + "number: write \(text.hasPrefix("-") ? "-" : "")\(digits.isEmpty ? "0" : String(digits)) "
            + "(or quote it if you mean the text)"
    }
}
