/// A place in a spec file, 1-based, as compilers print it.
public struct SourceLocation: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: Self, b: Self) -> Bool { (a.file, a.line, a.column) < (b.file, b.line, b.column) }
}

/// One finding about the specs: an error makes them invalid, a warning does not.
public struct Diagnostic: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Errors make the specs invalid (exit 1, nothing applied); warnings are reported and allowed.
    public enum Severity: String, Sendable, Hashable, Codable { case error, warning }

    public var severity: Severity
    public var location: SourceLocation
    public var message: String

    public init(_ severity: Severity, _ message: String, at location: SourceLocation) {
        self.severity = severity
        self.location = location
        self.message = message
    }

    /// `file:line:col: error: message`, as compilers print it.
    public var description: String { "\(location): \(severity.rawValue): \(message)" }
}

/// Diagnostics collected over a whole run: every error is reported, not only the first.
public struct Diagnostics: Sendable {
    public private(set) var all: [Diagnostic] = []
    /// Errors (and, separately, warnings) kept before the rest are dropped, as
    /// compilers stop after a number of errors per file: a file of 50,000 unknown
    /// keys must not print 50,000 lines. Warnings never count toward the errors: a
    /// valid spec with many warnings stays valid.
    private let limit: Int
    private var errors = 0, warnings = 0
    /// Whether the error limit was reached (the last error says so): stop reading.
    public private(set) var isFull = false

    public init(limit: Int = .max) {
        self.limit = limit
    }

    public mutating func error(_ message: String, at location: SourceLocation) {
        add(Diagnostic(.error, message, at: location))
    }

    public mutating func warning(_ message: String, at location: SourceLocation) {
        add(Diagnostic(.warning, message, at: location))
    }

    private mutating func add(_ diagnostic: Diagnostic) {
        guard !isFull else { return }
        switch diagnostic.severity {
        case .error:
            guard errors < limit else {
                all.append(Diagnostic(.error, "too many errors in this file; stopped after \(limit)",
                                      at: diagnostic.location))
                isFull = true
                return
            }
            errors += 1
        case .warning:
            warnings += 1
            guard warnings <= limit else {
                if warnings == limit + 1 {
                    all.append(Diagnostic(.warning, "too many warnings in this file; the rest are not shown",
                                          at: diagnostic.location))
                }
                return
            }
        }
        all.append(diagnostic)
    }

    public mutating func append(contentsOf other: Diagnostics) {
        for diagnostic in other.all { add(diagnostic) }
    }

    public var hasErrors: Bool { all.contains { $0.severity == .error } }

    /// Sorted by file and position, as the run reports them.
    public var sorted: [Diagnostic] { all.sorted { ($0.location, $0.message) < ($1.location, $1.message) } }
}

/// The candidate closest to `word` by edit distance (a swap of two neighbouring
/// letters counts as one edit), if close enough to be a likely typo; ties go to the
/// candidate sharing the longest prefix with `word`.
public func suggestion(for word: String, among candidates: [String]) -> String? {
    // A long word is no typo of a short name, and its edit distance would cost
    // length x length: hostile input gets no suggestion.
    guard word.utf8.count <= 64 else { return nil }
    let target = word.lowercased()
    let scored = candidates.map { candidate -> (String, Int, Int) in
        let lower = candidate.lowercased()
        let prefix = zip(target, lower).prefix { $0 == $1 }.count
        return (candidate, editDistance(target, lower), -prefix)
    }
    guard let best = scored.min(by: { ($0.1, $0.2) < ($1.1, $1.2) }), best.1 <= max(2, word.count / 3),
          best.1 < word.count
    else { return nil }
    return best.0
}

/// Spec text quoted in a message, cut to a readable length: a 1 MiB value must
/// not become a 1 MiB error line.
/// Control characters (and the bidirectional controls) are escaped, so a message
/// cannot move a terminal's cursor or reorder what it shows.
func excerpt(_ text: String) -> String {
    let escaped = { (text: Substring) -> String in
        guard text.unicodeScalars.contains(where: needsEscape) else { return String(text) }
        return text.unicodeScalars.map { needsEscape($0) ? $0.escaped(asASCII: true) : String($0) }.joined()
    }
    guard text.utf8.count > 64 else { return escaped(text[...]) }
    return escaped(text.prefix(48)) + "... (\(text.utf8.count) bytes)"
}

/// C0 and C1 controls, DEL, and the bidirectional formatting characters.
private func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
    scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || (0x202A...0x202E).contains(scalar.value)
        || (0x2066...0x2069).contains(scalar.value)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// transpositions of adjacent characters each cost one.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
    var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { d[i][0] = i }
    for j in 0...b.count { d[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
        }
    }
    return d[a.count][b.count]
}
