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

/// A place in a cube's config by field names and list positions (`rules`, 2, `match`,
/// `dport`): how a cube type's control plane, which sees validated values and no
/// YAML, says where a problem is. The cube's `location(of:)` finds its line and column.
public struct ConfigPath: Sendable, Hashable, ExpressibleByArrayLiteral {
    public enum Step: Sendable, Hashable, ExpressibleByStringLiteral {
        case field(String)
        case item(Int)

        public init(stringLiteral name: String) { self = .field(name) }
    }

    public var steps: [Step]

    public init(_ steps: [Step]) { self.steps = steps }
    public init(arrayLiteral steps: Step...) { self.init(steps) }
}

extension YAMLNode {
    /// Where `path` leads below this node: the value it names, or the last node on
    /// the way that the YAML has (a field left out has its mapping's place).
    public func location(of path: ConfigPath) -> SourceLocation {
        var node = self
        for step in path.steps {
            switch (step, node.value) {
            case (.field(let name), .mapping(let pairs)):
                guard let pair = pairs.first(where: { pair in
                    if case .scalar(let key) = pair.key.value { key == name } else { false }
                }) else { return node.location }
                node = pair.value
            case (.item(let index), .sequence(let items)) where items.indices.contains(index):
                node = items[index]
            default:
                return node.location
            }
        }
        return node.location
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
        return YAMLNumber.reading(Array(text.utf8), text)
    }

    /// A plain number written with a leading zero (`010`): tailor would read 10, YAML
    /// 1.1 readers the octal 8. Nil when the scalar is not one.
    var leadingZeroProblem: String? {
        guard case .scalar(let text) = value, !isQuoted, YAMLNumber.hasLeadingZero(Array(text.utf8)) else { return nil }
        let digits = text.drop { $0 == "-" || $0 == "+" }.drop { $0 == "0" }
        return "'\(text)' has a leading zero, which YAML 1.1 readers (PyYAML and many tools) take as an octal "
            + "number: write \(text.hasPrefix("-") ? "-" : "")\(digits.isEmpty ? "0" : String(digits)) "
            + "(or quote it if you mean the text)"
    }
}

/// The number forms of YAML 1.1 and 1.2 plain scalars, matched by hand: this runs
/// on every string of a spec (a 10,000-rule firewall has tens of thousands), where
/// regular expressions cost seconds.
enum YAMLNumber {
    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// `[-+]?0[0-9]+`: a decimal written with a leading zero.
    static func hasLeadingZero(_ bytes: [UInt8]) -> Bool {
        let digits = bytes.first == UInt8(ascii: "-") || bytes.first == UInt8(ascii: "+") ? bytes.dropFirst() : bytes[...]
        return digits.count > 1 && digits.first == UInt8(ascii: "0") && digits.allSatisfy(isDigit)
    }

    /// What YAML 1.1 or 1.2 reads `bytes` as when it is a number, or nil.
    static func reading(_ bytes: [UInt8], _ text: String) -> String? {
        var rest = bytes[...]
        if rest.first == UInt8(ascii: "-") || rest.first == UInt8(ascii: "+") { rest = rest.dropFirst() }
        // Every number form starts with a digit or a dot: most text is out here.
        guard let first = rest.first, isDigit(first) || first == UInt8(ascii: ".") else { return nil }
        let body = String(decoding: rest, as: UTF8.self)
        if [".inf", ".Inf", ".INF"].contains(body) || (rest.count == bytes.count && [".nan", ".NaN", ".NAN"].contains(body)) {
            return "the number \(text)"
        }
        let all = { (set: String, from: Int) in
            rest.count > from && rest.dropFirst(from).allSatisfy { set.utf8.contains($0) }
        }
        if rest.count == bytes.count && body.hasPrefix("0x") && all("0123456789abcdefABCDEF_", 2)
            || body.hasPrefix("0o") && all("01234567", 2) || body.hasPrefix("0b") && all("01_", 2) {
            return "the number \(text)"
        }
        if first == UInt8(ascii: "0") && all("01234567_", 1) {
            let value = Int(String(decoding: rest.dropFirst().filter { $0 != UInt8(ascii: "_") }, as: UTF8.self),
                            radix: 8).map { " \($0)" } ?? ""
            return "the octal number\(value) (YAML 1.1)"
        }
        // Digits (and _), then one of: nothing (an integer), `:`-groups (sexagesimal),
        // or a fraction and an exponent (a float).
        var index = rest.startIndex
        let digits = { (allowUnderscore: Bool) -> Int in
            let start = index
            while index < rest.endIndex, isDigit(rest[index]) || (allowUnderscore && rest[index] == UInt8(ascii: "_")) {
                index += 1
            }
            return index - start
        }
        let whole = isDigit(first) ? digits(true) : 0
        if index == rest.endIndex { return whole > 0 ? "the number \(text)" : nil }
        if whole > 0 && rest[index] == UInt8(ascii: ":") {
            while index < rest.endIndex && rest[index] == UInt8(ascii: ":") {
                index += 1
                let group = digits(false)
                guard (1...2).contains(group), rest[index - group] <= UInt8(ascii: "5") || group == 1 else { return nil }
            }
            if index < rest.endIndex && rest[index] == UInt8(ascii: ".") {
                index += 1
                _ = digits(true)
            }
            return index == rest.endIndex ? "a sexagesimal number (YAML 1.1)" : nil
        }
        var fraction = 0
        if rest[index] == UInt8(ascii: ".") {
            index += 1
            fraction = digits(true)
        }
        guard whole + fraction > 0 else { return nil }
        if index < rest.endIndex && (rest[index] == UInt8(ascii: "e") || rest[index] == UInt8(ascii: "E")) {
            index += 1
            if index < rest.endIndex && (rest[index] == UInt8(ascii: "-") || rest[index] == UInt8(ascii: "+")) { index += 1 }
            guard digits(false) > 0 else { return nil }
        }
        return index == rest.endIndex ? "the number \(text)" : nil
    }
}
