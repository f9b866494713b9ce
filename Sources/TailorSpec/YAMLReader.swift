import CYAML

/// Limits that keep hostile input from costing more than a bad file should.
public struct SpecLimits: Sendable {
    /// Largest spec file read.
    public var fileBytes = 4 << 20
    /// Deepest nesting of lists and mappings.
    public var depth = 64
    /// Aliases (`*name`) allowed in one file.
    public var aliases = 64
    /// Nodes in one document once aliases are expanded (alias bombs). A firewall of
    /// 10,240 rules written one rule a line takes about 120,000.
    public var expandedNodes = 250_000
    /// Documents in one file.
    public var documents = 1000
    /// Errors reported for one file before giving up on it, as compilers do.
    public var errorsPerFile = 100
    /// Cubes in one chain: half of the chain's 256 prog_array slots, so a change that
    /// copies every cube of the path still finds free slots for the copies.
    public var cubesPerChain = 128

    public init() {}

    /// What a spec file of `bytes` over `fileBytes` is told.
    func tooLarge(_ bytes: Int) -> String { "file is \(bytes) bytes; spec files may be at most \(fileBytes)" }
}

/// Parses YAML text with libyaml into positioned node trees, one per document.
/// Rejects what a chain spec never needs and an attacker would use: tags,
/// anchors shared across documents, alias bombs, deep nesting, NUL bytes and
/// text that is not UTF-8.
public enum YAMLReader {
    public static func documents(
        _ bytes: [UInt8], file: String, limits: SpecLimits = SpecLimits(), diagnostics: inout Diagnostics
    ) -> [YAMLNode] {
        let start = SourceLocation(file: file, line: 1, column: 1)
        guard bytes.count <= limits.fileBytes else {
            diagnostics.error(limits.tooLarge(bytes.count), at: start)
            return []
        }
        if let nul = bytes.firstIndex(of: 0) {
            diagnostics.error("file contains a NUL byte", at: location(of: nul, in: bytes, file: file))
            return []
        }
        if let bad = firstInvalidUTF8(bytes) {
            diagnostics.error("file is not valid UTF-8 (byte 0x\(String(bytes[bad], radix: 16, uppercase: true)))",
                              at: location(of: bad, in: bytes, file: file))
            return []
        }
        if let (index, scalar) = firstInvisibleBreak(bytes) {
            let code = String(scalar.value, radix: 16, uppercase: true)
            let what = Self.invisibleBreaks[scalar.value] ?? "character"
            diagnostics.error("\(what) (U+\(String(repeating: "0", count: max(0, 4 - code.count)) + code)) is not allowed "
                              + "in a spec: editors and reviewers do not show it for what YAML makes of it",
                              at: location(of: index, in: bytes, file: file))
            return []
        }
        var builder = TreeBuilder(file: file, limits: limits)
        // libyaml keeps a pointer to the parser inside the parser (the string read
        // handler's data): it needs an address that never moves, not a Swift var.
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        parser.initialize(to: yaml_parser_t())
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) == 1 else {
            diagnostics.error("cannot start the YAML parser (out of memory)", at: start)
            return []
        }
        defer { yaml_parser_delete(parser) }
        bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(parser, buffer.baseAddress, buffer.count)
            var event = yaml_event_t()
            while builder.failure == nil {
                guard yaml_parser_parse(parser, &event) == 1 else {
                    let problem = parser.pointee.problem.map { String(cString: $0) } ?? "invalid YAML"
                    guard parser.pointee.error != YAML_READER_ERROR else {
                        // The reader (control characters, encoding) reports a byte offset, not a mark.
                        let value = parser.pointee.problem_value
                        let hex = String(value, radix: 16, uppercase: true)
                        let code = String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                        builder.failure = (problem + (value >= 0 ? " (U+\(code))" : ""),
                                           location(of: min(parser.pointee.problem_offset, bytes.count), in: bytes,
                                                    file: file))
                        break
                    }
                    let context = parser.pointee.context.map { String(cString: $0) + ": " } ?? ""
                    builder.fail(context + problem, at: parser.pointee.problem_mark)
                    break
                }
                let done = event.type == YAML_STREAM_END_EVENT
                builder.handle(event)
                yaml_event_delete(&event)
                if done { break }
            }
        }
        if let (message, location) = builder.failure {
            diagnostics.error(message, at: location)
            return []
        }
        return builder.documents
    }

    /// The line and column of byte `index`, the column counted in characters as
    /// editors count them (UTF-8 continuation bytes are not characters).
    static func location(of index: Int, in bytes: [UInt8], file: String) -> SourceLocation {
        let before = bytes[..<index]
        let line = before.filter { $0 == 10 }.count + 1
        let lineStart = before.lastIndex(of: 10).map { $0 + 1 } ?? 0
        let column = bytes[lineStart..<index].filter { $0 & 0xC0 != 0x80 }.count + 1
        return SourceLocation(file: file, line: line, column: column)
    }

    /// The offset of the first byte that does not start or continue a valid UTF-8 sequence.
    static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded): offset += encoded.count
            case .error: return offset
            case .emptyInput: return nil
            }
        }
    }

    /// Characters YAML 1.1 (libyaml) takes as line breaks while YAML 1.2 tools and
    /// editors do not, so text after one inside a comment would be configuration
    /// the reviewer sees as comment; and the bidirectional controls that reorder
    /// what an editor shows (Trojan Source).
    static let invisibleBreaks: [UInt32: String] = [
        0x85: "next line", 0x2028: "line separator", 0x2029: "paragraph separator",
        0x202A: "left-to-right embedding", 0x202B: "right-to-left embedding", 0x202C: "pop directional formatting",
        0x202D: "left-to-right override", 0x202E: "right-to-left override", 0x2066: "left-to-right isolate",
        0x2067: "right-to-left isolate", 0x2068: "first strong isolate", 0x2069: "pop directional isolate",
    ]

    /// The byte offset and scalar of the first of `invisibleBreaks` in valid UTF-8
    /// `bytes`, found by their encodings (C2 85, E2 80 A8-AE, E2 81 A6-A9) without
    /// decoding the file.
    static func firstInvisibleBreak(_ bytes: [UInt8]) -> (Int, Unicode.Scalar)? {
        var index = 0
        while index + 1 < bytes.count {
            switch (bytes[index], bytes[index + 1]) {
            case (0xC2, 0x85):
                return (index, "\u{85}")
            case (0xE2, 0x80), (0xE2, 0x81):
                guard index + 2 < bytes.count else { return nil }
                let value = 0x2000 | (UInt32(bytes[index + 1] & 0x3F) << 6) | UInt32(bytes[index + 2] & 0x3F)
                if invisibleBreaks[value] != nil, let scalar = Unicode.Scalar(value) { return (index, scalar) }
            default:
                break
            }
            index += 1
        }
        return nil
    }
}

/// Turns libyaml's event stream into node trees.
private struct TreeBuilder {
    enum Open {
        case sequence([YAMLNode], SourceLocation, anchor: String?)
        case mapping([YAMLNode], SourceLocation, anchor: String?)
    }

    let file: String
    let limits: SpecLimits
    var documents: [YAMLNode] = []
    var stack: [Open] = []
    var anchors: [String: YAMLNode] = [:]
    var aliases = 0
    /// Nodes of the current document so far, aliases expanded, counted as they are
    /// read: a huge flow list is refused at the limit, not after it is all built.
    var nodes = 0
    var root: YAMLNode?
    var failure: (String, SourceLocation)?

    init(file: String, limits: SpecLimits) {
        self.file = file
        self.limits = limits
    }

    func location(_ mark: yaml_mark_t) -> SourceLocation {
        SourceLocation(file: file, line: mark.line + 1, column: mark.column + 1)
    }

    mutating func fail(_ message: String, at mark: yaml_mark_t) {
        if failure == nil { failure = (message, location(mark)) }
    }

    static func text(_ pointer: UnsafeMutablePointer<yaml_char_t>?, length: Int? = nil) -> String? {
        guard let pointer else { return nil }
        let count = length ?? strlen(UnsafeRawPointer(pointer).assumingMemoryBound(to: CChar.self))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    /// Explicit tags (`!foo`, `!!binary`) have no meaning in a chain spec.
    mutating func checkTag(_ tag: UnsafeMutablePointer<yaml_char_t>?, at mark: yaml_mark_t) -> Bool {
        guard let tag = Self.text(tag) else { return true }
        fail("YAML tag '\(tag)' is not allowed in a spec; write plain values", at: mark)
        return false
    }

    mutating func handle(_ event: yaml_event_t) {
        let mark = event.start_mark
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            guard documents.count < limits.documents else {
                return fail("more than \(limits.documents) documents in one file", at: mark)
            }
            // Anchors do not reach across documents.
            anchors = [:]
            root = nil
            nodes = 0
        case YAML_DOCUMENT_END_EVENT:
            // An empty document (a trailing `---`, or one between two) is skipped, as kubectl does.
            if let root, !root.isEmptyScalar { documents.append(root) }
        case YAML_SCALAR_EVENT:
            let scalar = event.data.scalar
            guard checkTag(scalar.tag, at: mark) else { return }
            guard count(1, at: mark) else { return }
            let style = scalar.style
            let node = YAMLNode(
                value: .scalar(Self.text(scalar.value, length: scalar.length) ?? ""), location: location(mark),
                isQuoted: style == YAML_SINGLE_QUOTED_SCALAR_STYLE || style == YAML_DOUBLE_QUOTED_SCALAR_STYLE,
                size: 1)
            add(node, anchor: Self.text(scalar.anchor), at: mark)
        case YAML_ALIAS_EVENT:
            aliases += 1
            guard aliases <= limits.aliases else {
                return fail("more than \(limits.aliases) aliases in one file", at: mark)
            }
            let name = Self.text(event.data.alias.anchor) ?? ""
            guard var node = anchors[name] else {
                return fail("alias *\(excerpt(name)) refers to no anchor in this document", at: mark)
            }
            node.location = location(mark)
            guard count(node.size, at: mark) else { return }
            add(node, anchor: nil, at: mark)
        case YAML_SEQUENCE_START_EVENT:
            guard checkTag(event.data.sequence_start.tag, at: mark) else { return }
            push(.sequence([], location(mark), anchor: Self.text(event.data.sequence_start.anchor)), at: mark)
        case YAML_MAPPING_START_EVENT:
            guard checkTag(event.data.mapping_start.tag, at: mark) else { return }
            push(.mapping([], location(mark), anchor: Self.text(event.data.mapping_start.anchor)), at: mark)
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            guard let open = stack.popLast() else { return }
            switch open {
            case .sequence(let items, let location, let anchor):
                add(YAMLNode(value: .sequence(items), location: location, isQuoted: false,
                             size: items.reduce(1) { $0 + $1.size }), anchor: anchor, at: mark)
            case .mapping(let items, let location, let anchor):
                var pairs: [(key: YAMLNode, value: YAMLNode)] = []
                for index in stride(from: 0, to: items.count - 1, by: 2) { pairs.append((items[index], items[index + 1])) }
                add(YAMLNode(value: .mapping(pairs), location: location, isQuoted: false,
                             size: items.reduce(1) { $0 + $1.size }), anchor: anchor, at: mark)
            }
        default:
            break
        }
    }

    /// Adds `added` nodes to the document's count; false (and failed) past the limit.
    mutating func count(_ added: Int, at mark: yaml_mark_t) -> Bool {
        nodes += added
        guard nodes <= limits.expandedNodes else {
            let hint = aliases > 0 ? " once its \(aliases) aliases are expanded" : ""
            fail("document has more than \(limits.expandedNodes) nodes\(hint); split it into several chains or files",
                 at: mark)
            return false
        }
        return true
    }

    mutating func push(_ open: Open, at mark: yaml_mark_t) {
        guard count(1, at: mark) else { return }
        guard stack.count < limits.depth else {
            return fail("nesting deeper than \(limits.depth) levels", at: mark)
        }
        stack.append(open)
    }

    mutating func add(_ node: YAMLNode, anchor: String?, at mark: yaml_mark_t) {
        if let anchor { anchors[anchor] = node }
        switch stack.popLast() {
        case .sequence(var items, let location, let anchor):
            items.append(node)
            stack.append(.sequence(items, location, anchor: anchor))
        case .mapping(var items, let location, let anchor):
            items.append(node)
            stack.append(.mapping(items, location, anchor: anchor))
        case nil:
            root = node
        }
    }
}
