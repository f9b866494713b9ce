import Foundation

/// Loads a spec directory (or single files) into the desired state, with every
/// problem found reported as a positioned diagnostic. Pure apart from reading
/// the files: no kernel, no root.
public struct SpecLoader: Sendable {
    public var cubeTypes: [String: CubeTypeSchema]
    public var limits: SpecLimits

    /// The longest path of cubes a packet may take: the kernel allows 33 tail calls.
    public static let maxPathLength = 32

    public init(cubeTypes: [CubeTypeSchema], limits: SpecLimits = SpecLimits()) {
        self.cubeTypes = Dictionary(uniqueKeysWithValues: cubeTypes.map { ($0.name, $0) })
        self.limits = limits
    }

    /// Loads every `*.yaml`/`*.yml` file under each path (hidden files and
    /// directories skipped). Returns the state only when there are no errors.
    public func load(_ paths: [String]) -> (DesiredState?, Diagnostics) {
        var diagnostics = Diagnostics()
        var chains: [ChainSpec] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            let root = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
                ? path : (path as NSString).deletingLastPathComponent
            for file in specFiles(path, &diagnostics) {
                chains += load(file: file, &diagnostics).map { chain in
                    var chain = chain
                    chain.specRoot = root.isEmpty ? "." : root
                    return chain
                }
            }
        }
        check(chains, &diagnostics)
        return (diagnostics.hasErrors ? nil : DesiredState(chains: chains), diagnostics)
    }

    /// Decodes one file's documents (the bytes given, for tests and fuzzing).
    public func decode(_ bytes: [UInt8], file: String, diagnostics: inout Diagnostics) -> [ChainSpec] {
        let decoder = ChainDecoder(cubeTypes: cubeTypes)
        var fileDiagnostics = Diagnostics()
        var chains: [ChainSpec] = []
        for document in YAMLReader.documents(bytes, file: file, limits: limits, diagnostics: &fileDiagnostics) {
            if let chain = decoder.decode(document, diagnostics: &fileDiagnostics) { chains.append(chain) }
            if fileDiagnostics.all.count >= limits.errorsPerFile {
                fileDiagnostics.error("too many errors in this file; stopped after \(limits.errorsPerFile)",
                                      at: document.location)
                break
            }
        }
        diagnostics.append(contentsOf: fileDiagnostics)
        return chains
    }

    private func load(file: String, _ diagnostics: inout Diagnostics) -> [ChainSpec] {
        let start = SourceLocation(file: file, line: 1, column: 1)
        guard let handle = FileHandle(forReadingAtPath: file) else {
            diagnostics.error("cannot read the file", at: start)
            return []
        }
        defer { try? handle.close() }
        // Read one byte past the limit, so an oversized file is seen without reading it all.
        let data = (try? handle.read(upToCount: limits.fileBytes + 1)) ?? Data()
        return decode([UInt8](data), file: file, diagnostics: &diagnostics)
    }

    /// The spec files under `path`, refusing links and `..` that lead outside it.
    private func specFiles(_ path: String, _ diagnostics: inout Diagnostics) -> [String] {
        let manager = FileManager.default
        let location = SourceLocation(file: path, line: 1, column: 1)
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else {
            diagnostics.error("no such file or directory", at: location)
            return []
        }
        guard isDirectory.boolValue else { return [path] }
        let root = URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
        if let attributes = try? manager.attributesOfItem(atPath: path),
           let mode = attributes[.posixPermissions] as? Int, mode & 0o002 != 0 {
            diagnostics.warning("the spec directory is world-writable: anyone on this host can change the "
                                + "datapath; chmod o-w it", at: location)
        }
        var files: [String] = []
        var pending = [path]
        while let directory = pending.popLast() {
            guard let names = try? manager.contentsOfDirectory(atPath: directory) else {
                diagnostics.error("cannot list the directory", at: SourceLocation(file: directory, line: 1, column: 1))
                continue
            }
            for name in names.sorted() where !name.hasPrefix(".") {
                let child = (directory as NSString).appendingPathComponent(name)
                let resolved = URL(fileURLWithPath: child).resolvingSymlinksInPath().standardizedFileURL.path
                guard resolved == root || resolved.hasPrefix(root + "/") else {
                    diagnostics.error("leads outside the spec directory (to \(resolved)); specs must live inside it",
                                      at: SourceLocation(file: child, line: 1, column: 1))
                    continue
                }
                var childIsDirectory: ObjCBool = false
                manager.fileExists(atPath: child, isDirectory: &childIsDirectory)
                if childIsDirectory.boolValue {
                    pending.append(child)
                } else if name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
                    files.append(child)
                }
            }
        }
        return files.sorted()
    }

    /// Checks across documents and files: names, hooks, and each chain's graph.
    private func check(_ chains: [ChainSpec], _ d: inout Diagnostics) {
        var names: [String: SourceLocation] = [:]
        var hooks: [String: (String, SourceLocation)] = [:]
        for chain in chains {
            if let first = names[chain.name] {
                d.error("duplicate chain name '\(chain.name)' (first at \(first))", at: chain.location)
            }
            names[chain.name] = names[chain.name] ?? chain.location
            let hook = "\(chain.attach.namespace ?? "-")/\(chain.attach.interface)/\(chain.attach.hook.rawValue)"
            if let (other, first) = hooks[hook] {
                d.error("chain '\(chain.name)' attaches to \(chain.attach.hook.rawValue) on \(chain.attach.interface)"
                        + (chain.attach.namespace.map { " in \($0)" } ?? "")
                        + ", which chain '\(other)' already uses (at \(first)); one chain per hook",
                        at: chain.location)
            } else {
                hooks[hook] = (chain.name, chain.location)
            }
            checkGraph(chain, &d)
        }
    }

    /// No cycles, no path longer than the tail-call limit, every cube reachable.
    private func checkGraph(_ chain: ChainSpec, _ d: inout Diagnostics) {
        let cubes = Dictionary(uniqueKeysWithValues: chain.cubes.map { ($0.name, $0) })
        var depth: [String: Int] = [:]      // longest path starting at a cube, in cubes
        var visiting: Set<String> = []
        var reported = false
        func longest(_ name: String) -> Int {
            if let known = depth[name] { return known }
            guard let cube = cubes[name], !visiting.contains(name) else {
                if !reported, let cube = cubes[name] {
                    d.error("cubes of chain '\(chain.name)' form a cycle through '\(name)'", at: cube.location)
                    reported = true
                }
                return 0
            }
            visiting.insert(name)
            let result = 1 + (cube.next.compactMap { $0 }.map(longest).max() ?? 0)
            visiting.remove(name)
            depth[name] = result
            return result
        }
        guard let entry = chain.entry else { return }
        let length = longest(entry)
        if !reported && length > Self.maxPathLength {
            d.error("chain '\(chain.name)' has a path of \(length) cubes; the kernel allows at most "
                    + "\(Self.maxPathLength) (tail-call limit)", at: chain.location)
        }
        var reachable: Set<String> = []
        var stack = [entry]
        while let name = stack.popLast() {
            guard reachable.insert(name).inserted else { continue }
            stack += cubes[name]?.next.compactMap { $0 } ?? []
        }
        for cube in chain.cubes where !reachable.contains(cube.name) {
            d.warning("cube '\(cube.name)' is never reached from the chain's first cube", at: cube.location)
        }
    }
}
