/// Reads a YAML mapping strictly: each key once, only known keys, every problem
/// reported with its position and, for a misspelt key, the key that was meant.
struct MappingReader {
    let node: YAMLNode
    let context: String
    /// Keys and values in file order; mappings in specs are small, so a linear
    /// search beats hashing every key.
    private var order: [(String, YAMLNode)] = []

    /// Nil (with an error) when `node` is not a mapping. `allowed` nil takes any key
    /// (labels, per-map policies): such mappings can be as long as the file, so their
    /// duplicates are found by hashing, not by the linear search of the fixed key sets.
    init?(_ node: YAMLNode, context: String, allowed: [String]?, diagnostics: inout Diagnostics) {
        guard case .mapping(let pairs) = node.value else {
            diagnostics.error("expected a mapping for \(context), found \(node.kindName)", at: node.location)
            return nil
        }
        self.node = node
        self.context = context
        order.reserveCapacity(pairs.count)
        var firstLines: [String: Int] = [:]
        for (key, value) in pairs where !diagnostics.isFull {
            guard case .scalar(let name) = key.value else {
                diagnostics.error("keys in \(context) must be plain names, found \(key.kindName)", at: key.location)
                continue
            }
            if name == "<<" && !key.isQuoted {
                diagnostics.error("YAML merge keys ('<<') are not supported in specs; write the fields out",
                                  at: key.location)
                continue
            }
            let firstLine = allowed == nil ? firstLines[name] : self[name]?.location.line
            if let firstLine {
                diagnostics.error("duplicate key '\(excerpt(name))' in \(context) (first at line \(firstLine))",
                                  at: key.location)
                continue
            }
            if let allowed {
                guard allowed.contains(name) else {
                    let hint = suggestion(for: name, among: allowed).map { " (did you mean '\($0)'?)" } ?? ""
                    diagnostics.error("unknown field '\(excerpt(name))' in \(context)\(hint)", at: key.location)
                    continue
                }
            } else {
                firstLines[name] = key.location.line
            }
            order.append((name, value))
        }
    }

    subscript(_ key: String) -> YAMLNode? { order.first { $0.0 == key }?.1 }

    /// The value of a key that must be there.
    func required(_ key: String, diagnostics: inout Diagnostics) -> YAMLNode? {
        guard let value = self[key] else {
            diagnostics.error("missing required field '\(key)' in \(context)", at: node.location)
            return nil
        }
        return value
    }

    /// Keys and values in file order.
    var entries: [(String, YAMLNode)] { order }
}

extension YAMLNode {
    /// The scalar's text, or nil (with an error) for anything else, a plain scalar
    /// that YAML reads as a number, boolean or null included (`name: 123`,
    /// `interface: yes`): the JSON Schema rejects those too, and a reviewer's YAML
    /// tools would not show them as the text tailor would use.
    func string(_ what: String, diagnostics: inout Diagnostics) -> String? {
        guard case .scalar(let text) = value, !isNull else {
            diagnostics.error("expected a string for \(what), found \(isNull ? "nothing" : kindName)", at: location)
            return nil
        }
        if let reading = nonTextReading {
            diagnostics.error("expected a string for \(what), found '\(excerpt(text))', which YAML reads as "
                              + "\(reading): quote it ('\(excerpt(text))') if you mean the text", at: location)
            return nil
        }
        return text
    }

    /// An integer in `range` (decimal, or 0x hex), or nil with an error.
    func integer(_ what: String, in range: ClosedRange<Int>, diagnostics: inout Diagnostics) -> Int? {
        guard case .scalar(let text) = value, !isQuoted else {
            diagnostics.error("expected an integer for \(what), found \(kindName)", at: location)
            return nil
        }
        if let problem = leadingZeroProblem {
            diagnostics.error("\(what): \(problem)", at: location)
            return nil
        }
        let hex = text.dropFirst(2)
        let parsed = text.hasPrefix("0x") ? (hex.allSatisfy(\.isHexDigit) ? Int(hex, radix: 16) : nil) : Int(text)
        guard let parsed else {
            diagnostics.error("expected an integer for \(what), found \(kindName)", at: location)
            return nil
        }
        guard range.contains(parsed) else {
            diagnostics.error("\(what) must be between \(range.lowerBound) and \(range.upperBound), not \(parsed)",
                              at: location)
            return nil
        }
        return parsed
    }

    /// true/false, or nil with an error.
    func boolean(_ what: String, diagnostics: inout Diagnostics) -> Bool? {
        if case .scalar(let text) = value, !isQuoted {
            if text == "true" { return true }
            if text == "false" { return false }
        }
        diagnostics.error("expected true or false for \(what), found \(kindName)", at: location)
        return nil
    }

    /// One of `choices`, with a did-you-mean when close to one.
    func choice(_ what: String, _ choices: [String], diagnostics: inout Diagnostics) -> String? {
        guard let text = string(what, diagnostics: &diagnostics) else { return nil }
        guard choices.contains(text) else {
            let hint = suggestion(for: text, among: choices).map { " (did you mean '\($0)'?)" } ?? ""
            diagnostics.error("\(what) must be one of \(choices.joined(separator: ", ")), not '\(excerpt(text))'\(hint)",
                              at: location)
            return nil
        }
        return text
    }

    /// The items of a list, or nil with an error.
    func list(_ what: String, diagnostics: inout Diagnostics) -> [YAMLNode]? {
        guard case .sequence(let items) = value else {
            diagnostics.error("expected a list for \(what), found \(kindName)", at: location)
            return nil
        }
        return items
    }
}
