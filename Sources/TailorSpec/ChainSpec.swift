import Foundation

/// A chain as the operator declared it, validated.
public struct ChainSpec: Sendable {
    /// Where the chain's root program runs; the raw values are the spec's words.
    public enum Hook: String, Sendable, CaseIterable { case xdp, tcIngress = "tc-ingress", tcEgress = "tc-egress" }
    /// How an XDP root attaches; chosen by the operator because the kernel never
    /// falls back from one to the other without saying so, and neither do we.
    public enum XDPMode: String, Sendable, CaseIterable { case native, generic }
    /// What a packet gets at the end of a path.
    public enum Verdict: String, Sendable, CaseIterable { case pass, drop }
    /// What a packet gets when it reaches an empty slot (a cube being replaced or lost).
    public enum MissingCube: String, Sendable, CaseIterable { case failClosed = "fail-closed", failOpen = "fail-open" }
    /// What happens to a state map's entries when its cube is replaced with a new layout.
    public enum Migration: String, Sendable, CaseIterable { case migrate, reset }

    /// The hook a chain owns: one chain per (namespace, interface, hook).
    public struct Attach: Sendable {
        public var interface: String
        /// The `ip netns` name; nil for the controller's own namespace.
        public var namespace: String?
        public var hook: Hook
        /// XDP only; no silent fallback from native to generic.
        public var mode: XDPMode
    }

    public var name: String
    public var labels: [String: String]
    public var attach: Attach
    public var defaultVerdict: Verdict
    public var onMissingCube: MissingCube
    public var suspend: Bool
    /// Whether drift found in the kernel is put back (true) or only reported.
    public var repairDrift: Bool
    public var cubes: [CubeSpec]
    public var location: SourceLocation
    /// The spec directory the chain was loaded from: files a cube names (objects)
    /// must lie inside it.
    public var specRoot: String

    /// The entry cube: the first in the list.
    public var entry: String? { cubes.first?.name }
}

/// One cube of a chain, validated, with its successors resolved.
public struct CubeSpec: Sendable {
    public var name: String
    public var type: String
    public var config: ConfigValue
    /// Per output, the next cube's name, or nil where the path ends.
    public var next: [String?]
    /// Per output, its name for cubes that name their outputs, and where its next cube
    /// is written (the cube's place when it is the default): what a cycle is blamed on.
    public var edges: [(output: String?, location: SourceLocation)]
    /// Per state map, what to do with its entries when the cube is replaced and the
    /// layout changed.
    public var migration: [String: ChainSpec.Migration]
    public var location: SourceLocation
    /// The config as written (nil when the cube has none): where a problem its cube
    /// type finds in the values (`ConfigPath`) is in the file.
    public var configNode: YAMLNode?

    /// The line and column of `path` in the config, or the cube's when it is not
    /// written there (a default, or no path).
    public func location(of path: ConfigPath?) -> SourceLocation {
        guard let path, let configNode else { return location }
        return configNode.location(of: path)
    }
}

/// The desired state: every chain the spec directory declares.
public struct DesiredState: Sendable {
    public var chains: [ChainSpec]
}

/// Names that become pin directories: letters, digits, '-', '_', starting with a letter or digit.
func isValidName(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, name.count <= 63,
          CharacterClass.alphanumeric(first) else { return false }
    return name.unicodeScalars.allSatisfy { CharacterClass.alphanumeric($0) || $0 == "-" || $0 == "_" }
}

/// What the kernel accepts as a network interface name (dev_valid_name): 1-15 bytes,
/// not "." or "..", no '/', ':' or white space.
func isValidInterfaceName(_ name: String) -> Bool {
    (1...15).contains(name.utf8.count) && name != "." && name != ".."
        && !name.utf8.contains { "/:".utf8.contains($0) || $0 == 32 || (9...13).contains($0) }
}

enum CharacterClass {
    static func alphanumeric(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)
    }
}

/// Decodes Chain documents.
struct ChainDecoder {
    let cubeTypes: [String: CubeTypeSchema]
    let maxCubes: Int

    static let documentKeys = ["apiVersion", "kind", "metadata", "spec"]
    static let specKeys = ["attach", "defaultVerdict", "onMissingCube", "suspend", "repairDrift", "cubes"]
    static let cubeKeys = ["name", "type", "config", "next", "outputs", "migration"]

    func decode(_ document: YAMLNode, diagnostics d: inout Diagnostics) -> ChainSpec? {
        guard let top = MappingReader(document, context: "document", allowed: Self.documentKeys, diagnostics: &d)
        else { return nil }
        if let version = top.required("apiVersion", diagnostics: &d) {
            _ = version.choice("apiVersion", ["tailor/v1"], diagnostics: &d)
        }
        if let kind = top.required("kind", diagnostics: &d) { _ = kind.choice("kind", ["Chain"], diagnostics: &d) }
        var name: String?
        var labels: [String: String] = [:]
        if let metadata = top.required("metadata", diagnostics: &d),
           let meta = MappingReader(metadata, context: "metadata", allowed: ["name", "labels"], diagnostics: &d) {
            if let node = meta.required("name", diagnostics: &d), let text = node.string("metadata.name", diagnostics: &d) {
                if isValidName(text) { name = text } else {
                    d.error("chain name '\(excerpt(text))' must be 1-63 letters, digits, '-' or '_', starting with a letter "
                            + "or digit (it names a bpffs directory)", at: node.location)
                }
            }
            if let node = meta["labels"],
               let reader = MappingReader(node, context: "metadata.labels", allowed: nil, diagnostics: &d) {
                for (key, value) in reader.entries {
                    if let text = value.string("label \(excerpt(key))", diagnostics: &d) { labels[key] = text }
                }
            }
        }
        guard let specNode = top.required("spec", diagnostics: &d),
              let spec = MappingReader(specNode, context: "spec", allowed: Self.specKeys, diagnostics: &d)
        else { return nil }
        let attach = spec.required("attach", diagnostics: &d).flatMap { decodeAttach($0, &d) }
        let verdict = spec["defaultVerdict"].map {
            $0.choice("defaultVerdict", ChainSpec.Verdict.allCases.map(\.rawValue), diagnostics: &d)
                .flatMap(ChainSpec.Verdict.init(rawValue:))
        } ?? .pass
        let missing = spec["onMissingCube"].map {
            $0.choice("onMissingCube", ChainSpec.MissingCube.allCases.map(\.rawValue), diagnostics: &d)
                .flatMap(ChainSpec.MissingCube.init(rawValue:))
        } ?? .failClosed
        let suspend = spec["suspend"].map { $0.boolean("suspend", diagnostics: &d) } ?? false
        let repairDrift = spec["repairDrift"].map { $0.boolean("repairDrift", diagnostics: &d) } ?? true
        let cubes = spec.required("cubes", diagnostics: &d).flatMap { decodeCubes($0, &d) }
        guard let name, let attach, let verdict, let missing, let suspend, let repairDrift, let cubes else { return nil }
        return ChainSpec(name: name, labels: labels, attach: attach, defaultVerdict: verdict, onMissingCube: missing,
                         suspend: suspend, repairDrift: repairDrift, cubes: cubes, location: document.location,
                         specRoot: (document.location.file as NSString).deletingLastPathComponent)
    }

    private func decodeAttach(_ node: YAMLNode, _ d: inout Diagnostics) -> ChainSpec.Attach? {
        guard let reader = MappingReader(node, context: "attach", allowed: ["interface", "namespace", "hook", "mode"],
                                         diagnostics: &d) else { return nil }
        let interface = reader.required("interface", diagnostics: &d).flatMap { node -> String? in
            guard let text = node.string("attach.interface", diagnostics: &d) else { return nil }
            guard isValidInterfaceName(text) else {
                d.error("interface name '\(excerpt(text))' is not valid: 1-15 bytes, not '.' or '..', no '/', ':' "
                        + "or white space (the kernel's rules)", at: node.location)
                return nil
            }
            return text
        }
        let namespace = reader["namespace"].flatMap { node -> String? in
            guard let text = node.string("attach.namespace", diagnostics: &d) else { return nil }
            guard isValidName(text) else {
                d.error("namespace name '\(excerpt(text))' is not valid", at: node.location)
                return nil
            }
            return text
        }
        let hook = reader.required("hook", diagnostics: &d).flatMap {
            $0.choice("attach.hook", ChainSpec.Hook.allCases.map(\.rawValue), diagnostics: &d)
                .flatMap(ChainSpec.Hook.init(rawValue:))
        }
        var mode = ChainSpec.XDPMode.native
        if let node = reader["mode"] {
            if hook != nil && hook != .xdp {
                d.error("attach.mode applies to the xdp hook only", at: node.location)
            } else if let chosen = node.choice("attach.mode", ChainSpec.XDPMode.allCases.map(\.rawValue),
                                               diagnostics: &d).flatMap(ChainSpec.XDPMode.init(rawValue:)) {
                mode = chosen
            }
        }
        guard let interface, let hook else { return nil }
        if reader["namespace"] != nil && namespace == nil { return nil }
        return ChainSpec.Attach(interface: interface, namespace: namespace, hook: hook, mode: mode)
    }

    private struct RawCube {
        var name: String
        var type: String
        var config: ConfigValue
        var outputs: [String]?
        var configNode: YAMLNode?
        var nextNode: YAMLNode?
        var outputsNode: YAMLNode?
        var migration: [String: ChainSpec.Migration]
        var location: SourceLocation
    }

    private func decodeCubes(_ node: YAMLNode, _ d: inout Diagnostics) -> [CubeSpec]? {
        guard let items = node.list("cubes", diagnostics: &d) else { return nil }
        guard !items.isEmpty else {
            d.error("a chain needs at least one cube", at: node.location)
            return nil
        }
        guard items.count <= maxCubes else {
            d.error("a chain may have at most \(maxCubes) cubes, this one has \(items.count); split it into "
                    + "several chains", at: node.location)
            return nil
        }
        var raw: [RawCube] = []
        var names: [String: SourceLocation] = [:]
        var valid = true
        for item in items {
            guard let cube = decodeCube(item, &d) else { valid = false; continue }
            if let first = names[cube.name] {
                d.error("duplicate cube name '\(cube.name)' (first at line \(first.line))", at: cube.location)
                valid = false
                continue
            }
            names[cube.name] = cube.location
            raw.append(cube)
        }
        guard valid else { return nil }
        // Resolve where each output continues.
        var cubes: [CubeSpec] = []
        for (index, cube) in raw.enumerated() {
            let following = index + 1 < raw.count ? raw[index + 1].name : nil
            guard let edges = successors(of: cube, following: following, known: names, &d) else { valid = false; continue }
            cubes.append(CubeSpec(name: cube.name, type: cube.type, config: cube.config, next: edges.map(\.next),
                                  edges: edges.map { ($0.output, $0.location) }, migration: cube.migration, location: cube.location, configNode: cube.configNode))
        }
        return valid ? cubes : nil
    }

    private func decodeCube(_ node: YAMLNode, _ d: inout Diagnostics) -> RawCube? {
        guard let reader = MappingReader(node, context: "cube", allowed: Self.cubeKeys, diagnostics: &d) else { return nil }
        let name = reader.required("name", diagnostics: &d).flatMap { node -> String? in
            guard let text = node.string("cube name", diagnostics: &d) else { return nil }
            guard isValidName(text), text != "end" else {
                d.error("cube name '\(excerpt(text))' must be 1-63 letters, digits, '-' or '_' (and not 'end')",
                        at: node.location)
                return nil
            }
            return text
        }
        let typeNode = reader.required("type", diagnostics: &d)
        let schema = typeNode.flatMap { node -> CubeTypeSchema? in
            guard let type = node.choice("cube type", cubeTypes.keys.sorted(), diagnostics: &d) else { return nil }
            return cubeTypes[type]
        }
        var config: ConfigValue?
        if let schema {
            let what = "config of \(schema.name) cube" + (name.map { " '\($0)'" } ?? "")
            if let configNode = reader["config"] {
                config = ConfigValidator.object(configNode, schema.config, what: what, diagnostics: &d)
            } else if let missing = schema.config.first(where: \.required) {
                d.error("\(schema.name) cube needs a config with '\(missing.name)'", at: node.location)
            } else {
                config = .object([:])
            }
        }
        var migration: [String: ChainSpec.Migration] = [:]
        if let migrationNode = reader["migration"] {
            if let policies = MappingReader(migrationNode, context: "migration", allowed: nil, diagnostics: &d) {
                for (map, policy) in policies.entries {
                    if let chosen = policy.choice("migration of \(excerpt(map))", ChainSpec.Migration.allCases.map(\.rawValue),
                                                  diagnostics: &d).flatMap(ChainSpec.Migration.init(rawValue:)) {
                        migration[map] = chosen
                    }
                }
            }
        }
        guard let name, let schema, let config else { return nil }
        return RawCube(name: name, type: schema.name, config: config, outputs: schema.outputNames(config),
                       configNode: reader["config"], nextNode: reader["next"], outputsNode: reader["outputs"], migration: migration,
                       location: node.location)
    }

    /// The cube each output continues to (nil: the end), with the output's name and
    /// where that is written: `next:` for single-output cubes (default: the following
    /// cube, or the end after the last), `outputs:` for cubes that name several outputs.
    private func successors(of cube: RawCube, following: String?, known: [String: SourceLocation],
                            _ d: inout Diagnostics) -> [(next: String?, output: String?, location: SourceLocation)]? {
        func target(_ node: YAMLNode, _ what: String) -> String?? {
            guard let text = node.string(what, diagnostics: &d) else { return nil }
            if text == "end" { return .some(nil) }
            guard known[text] != nil else {
                let hint = suggestion(for: text, among: known.keys.sorted() + ["end"]).map { " (did you mean '\($0)'?)" } ?? ""
                d.error("\(what) is '\(excerpt(text))', which is not a cube of this chain\(hint)", at: node.location)
                return nil
            }
            if text == cube.name {
                d.error("cube '\(cube.name)' cannot continue to itself", at: node.location)
                return nil
            }
            return .some(text)
        }
        guard let outputs = cube.outputs else {
            if let node = cube.outputsNode {
                d.error("\(cube.type) cubes have one output: use 'next', not 'outputs'", at: node.location)
                return nil
            }
            guard let node = cube.nextNode else { return [(following, nil, cube.location)] }
            return target(node, "next of cube '\(cube.name)'").map { [($0, nil, node.location)] }
        }
        if let node = cube.nextNode {
            d.error("\(cube.type) cubes name their outputs: use 'outputs', not 'next'", at: node.location)
            return nil
        }
        guard let node = cube.outputsNode,
              let reader = MappingReader(node, context: "outputs of cube '\(cube.name)'", allowed: outputs,
                                         diagnostics: &d)
        else {
            if cube.outputsNode == nil {
                d.error("cube '\(cube.name)' must map each of its outputs (\(outputs.joined(separator: ", "))) "
                        + "to a cube or 'end' under 'outputs'", at: cube.location)
            }
            return nil
        }
        var result: [(next: String?, output: String?, location: SourceLocation)] = []
        for output in outputs {
            guard let value = reader[output] else {
                d.error("output '\(output)' of cube '\(cube.name)' is not mapped to a cube or 'end'", at: node.location)
                return nil
            }
            guard let resolved = target(value, "output '\(output)' of cube '\(cube.name)'") else { return nil }
            result.append((resolved, output, value.location))
        }
        return result
    }
}
