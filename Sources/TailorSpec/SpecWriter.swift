import CYAML

/// Writes chains back as YAML in one canonical form: defaults filled in, every
/// cube's successors explicit, values in canonical spelling (prefixes as their
/// network, protocols by name), keys in a fixed order. `tailor validate
/// --normalized` prints it so an operator sees what tailor understood; loading the
/// text gives the same chains again (the spec tests and the fuzz target hold it
/// to that). libyaml's emitter does the quoting, so any string survives the trip.
public struct SpecWriter: Sendable {
    let cubeTypes: [String: CubeTypeSchema]

    public init(cubeTypes: [CubeTypeSchema]) {
        self.cubeTypes = Dictionary(uniqueKeysWithValues: cubeTypes.map { ($0.name, $0) })
    }

    /// One document per chain, in the order given.
    public func yaml(_ chains: [ChainSpec]) throws(SpecWriterError) -> String {
        let emitter = Emitter()
        try emitter.emit(chains.map(document))
        return emitter.text
    }

    /// What the writer emits: strings and plain scalars it built, or YAML nodes kept
    /// from the spec (`type: object` tables), re-emitted as they were.
    indirect enum Value {
        /// A number, boolean or canonical word, written unquoted.
        case plain(String)
        /// Text from the operator, quoted when it would otherwise read as something else.
        case string(String)
        case list([Value])
        case mapping([(String, Value)])
        case node(YAMLNode)
    }

    func document(_ chain: ChainSpec) -> Value {
        var metadata: [(String, Value)] = [("name", .string(chain.name))]
        if !chain.labels.isEmpty {
            metadata.append(("labels", .mapping(chain.labels.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        var attach: [(String, Value)] = [("interface", .string(chain.attach.interface))]
        if let namespace = chain.attach.namespace { attach.append(("namespace", .string(namespace))) }
        attach.append(("hook", .plain(chain.attach.hook.rawValue)))
        if chain.attach.hook == .xdp { attach.append(("mode", .plain(chain.attach.mode.rawValue))) }
        return .mapping([
            ("apiVersion", .plain("tailor/v1")),
            ("kind", .plain("Chain")),
            ("metadata", .mapping(metadata)),
            ("spec", .mapping([
                ("attach", .mapping(attach)),
                ("defaultVerdict", .plain(chain.defaultVerdict.rawValue)),
                ("onMissingCube", .plain(chain.onMissingCube.rawValue)),
                ("suspend", .plain(chain.suspend ? "true" : "false")),
                ("repairDrift", .plain(chain.repairDrift ? "true" : "false")),
                ("cubes", .list(chain.cubes.map(cube))),
            ])),
        ])
    }

    func cube(_ cube: CubeSpec) -> Value {
        var fields: [(String, Value)] = [("name", .string(cube.name)), ("type", .plain(cube.type))]
        if cube.config != .object([:]) { fields.append(("config", value(cube.config))) }
        let targets = cube.next.map { Value.string($0 ?? "end") }
        if let outputs = cubeTypes[cube.type]?.outputNames(cube.config), outputs.count == targets.count {
            fields.append(("outputs", .mapping(Array(zip(outputs, targets)))))
        } else if let next = targets.first {
            fields.append(("next", next))
        }
        if !cube.migration.isEmpty {
            fields.append(("migration", .mapping(cube.migration.sorted { $0.key < $1.key }
                .map { ($0.key, .plain($0.value.rawValue)) })))
        }
        return .mapping(fields)
    }

    func value(_ config: ConfigValue) -> Value {
        switch config {
        case .integer(let v): .plain(String(v))
        case .boolean(let v): .plain(v ? "true" : "false")
        case .string(let v): .string(v)
        case .prefix(let v): .string(v.description)
        case .address(let v): .string(v.count == 6 ? MACAddress.format(v) : IPAddress.format(v))
        case .ports(let v): .plain(v.lowerBound == v.upperBound ? "\(v.lowerBound)" : "\(v.lowerBound)-\(v.upperBound)")
        case .ipProtocol(let v): .plain(IPProtocolNames.name(v) ?? String(v))
        case .list(let items): .list(items.map(value))
        case .object(let fields): .mapping(fields.sorted { $0.key < $1.key }.map { ($0.key, value($0.value)) })
        case .node(let node): .node(node)
        }
    }
}

/// libyaml refused an event: a bug in the writer, reported rather than trapped.
public struct SpecWriterError: Error, CustomStringConvertible {
    public var description: String
}

/// libyaml's emitter, collecting its output in memory.
private struct Emitter {
    /// The write handler's destination, reached through libyaml's context pointer.
    final class Sink {
        var bytes: [UInt8] = []
    }

    let sink = Sink()
    /// What was written, with the characters the reader refuses raw (line breaks
    /// YAML 1.1 alone knows, bidirectional controls) as escapes: libyaml writes the
    /// bidirectional ones raw, and they only occur inside double-quoted scalars,
    /// where `\uXXXX` means the same.
    var text: String {
        var out = ""
        for scalar in String(decoding: sink.bytes, as: UTF8.self).unicodeScalars {
            if YAMLReader.invisibleBreaks[scalar.value] != nil {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Words a YAML reader (ours, or PyYAML's 1.1 rules in editors) would not read
    /// back as the same string when unquoted.
    static let reserved: Set<String> = ["", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False",
                                        "FALSE", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off",
                                        "Off", "OFF", "y", "Y", "n", "N"]

    func emit(_ documents: [SpecWriter.Value]) throws(SpecWriterError) {
        var emitter = yaml_emitter_t()
        guard yaml_emitter_initialize(&emitter) == 1 else { throw SpecWriterError(description: "out of memory") }
        defer { yaml_emitter_delete(&emitter) }
        yaml_emitter_set_output(&emitter, { data, buffer, size in
            guard let data, let buffer else { return 0 }
            Unmanaged<Sink>.fromOpaque(data).takeUnretainedValue().bytes
                .append(contentsOf: UnsafeBufferPointer(start: buffer, count: size))
            return 1
        }, Unmanaged.passUnretained(sink).toOpaque())
        yaml_emitter_set_unicode(&emitter, 1)
        yaml_emitter_set_width(&emitter, -1)
        var event = yaml_event_t()
        yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING)
        try send(&emitter, &event)
        for document in documents {
            yaml_document_start_event_initialize(&event, nil, nil, nil, 0)
            try send(&emitter, &event)
            try emit(document, &emitter)
            yaml_document_end_event_initialize(&event, 1)
            try send(&emitter, &event)
        }
        yaml_stream_end_event_initialize(&event)
        try send(&emitter, &event)
    }

    private func emit(_ value: SpecWriter.Value, _ emitter: inout yaml_emitter_t) throws(SpecWriterError) {
        var event = yaml_event_t()
        switch value {
        case .plain(let text):
            try scalar(text, style: YAML_PLAIN_SCALAR_STYLE, &emitter)
        case .string(let text):
            let looksLikeNumber = text.first.map { $0.isNumber || "+-.".contains($0) } ?? false
            let style = Self.reserved.contains(text) || looksLikeNumber ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE
            try scalar(text, style: style, &emitter)
        case .list(let items):
            yaml_sequence_start_event_initialize(&event, nil, nil, 1, YAML_BLOCK_SEQUENCE_STYLE)
            try send(&emitter, &event)
            for item in items { try emit(item, &emitter) }
            yaml_sequence_end_event_initialize(&event)
            try send(&emitter, &event)
        case .mapping(let pairs):
            yaml_mapping_start_event_initialize(&event, nil, nil, 1, YAML_BLOCK_MAPPING_STYLE)
            try send(&emitter, &event)
            for (key, item) in pairs {
                try emit(.string(key), &emitter)
                try emit(item, &emitter)
            }
            yaml_mapping_end_event_initialize(&event)
            try send(&emitter, &event)
        case .node(let node):
            switch node.value {
            case .scalar(let text):
                // Quoting is meaning here: a quoted "80" is a string, a plain 80 a number.
                try scalar(text, style: node.isQuoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE,
                           &emitter)
            case .sequence(let items):
                try emit(.list(items.map(SpecWriter.Value.node)), &emitter)
            case .mapping(let pairs):
                yaml_mapping_start_event_initialize(&event, nil, nil, 1, YAML_BLOCK_MAPPING_STYLE)
                try send(&emitter, &event)
                for (key, item) in pairs {
                    try emit(.node(key), &emitter)
                    try emit(.node(item), &emitter)
                }
                yaml_mapping_end_event_initialize(&event)
                try send(&emitter, &event)
            }
        }
    }

    private func scalar(_ text: String, style: yaml_scalar_style_t, _ emitter: inout yaml_emitter_t)
        throws(SpecWriterError) {
        var event = yaml_event_t()
        // A terminating NUL keeps the pointer valid for the empty string; libyaml
        // copies `count` bytes. Plain and quoted both read back without a tag.
        // Characters that are escaped on the way out (`text`) need a double-quoted scalar.
        let style = text.unicodeScalars.contains { YAMLReader.invisibleBreaks[$0.value] != nil }
            ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : style
        let bytes = Array(text.utf8) + [0]
        let made = bytes.withUnsafeBufferPointer { buffer in
            yaml_scalar_event_initialize(&event, nil, nil, buffer.baseAddress, Int32(buffer.count - 1), 1, 1, style)
        }
        guard made == 1 else { throw SpecWriterError(description: "cannot write the scalar '\(excerpt(text))'") }
        try send(&emitter, &event)
    }

    /// Hands an event to the emitter, which owns (and frees) it from then on.
    private func send(_ emitter: inout yaml_emitter_t, _ event: inout yaml_event_t) throws(SpecWriterError) {
        guard yaml_emitter_emit(&emitter, &event) == 1 else {
            let problem = emitter.problem.map { String(cString: $0) } ?? "unknown problem"
            throw SpecWriterError(description: "cannot write YAML: \(problem)")
        }
    }
}
