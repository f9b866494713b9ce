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
        // A file named twice (`specs specs/edge.yaml`) is read once, not reported as duplicate chains.
        var read: Set<String> = []
        for path in paths {
            var isDirectory: ObjCBool = false
            let root = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
                ? path : (path as NSString).deletingLastPathComponent
            for file in specFiles(path, &diagnostics) where read.insert(Self.resolved(file)).inserted {
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
        let decoder = ChainDecoder(cubeTypes: cubeTypes, maxCubes: limits.cubesPerChain)
        var fileDiagnostics = Diagnostics(limit: limits.errorsPerFile)
        var chains: [ChainSpec] = []
        for document in YAMLReader.documents(bytes, file: file, limits: limits, diagnostics: &fileDiagnostics) {
            if let chain = decoder.decode(document, diagnostics: &fileDiagnostics) { chains.append(chain) }
            if fileDiagnostics.isFull { break }
        }
        diagnostics.append(contentsOf: fileDiagnostics)
        return chains
    }

    private func load(file: String, _ diagnostics: inout Diagnostics) -> [ChainSpec] {
        let start = SourceLocation(file: file, line: 1, column: 1)
        do {
            let bytes = try BoundedFile.read(file, limit: limits.fileBytes)
            return decode(bytes, file: file, diagnostics: &diagnostics)
        } catch {
            switch error {
            case .cannotOpen(let reason), .cannotRead(let reason):
                diagnostics.error("cannot read the file: \(reason)", at: start)
            case .notRegular:
                diagnostics.error("not a regular file; specs are read from regular files only", at: start)
            case .tooLarge(let bytes):
                diagnostics.error(limits.tooLarge(bytes), at: start)
            }
            return []
        }
    }

    /// The spec files under `path`, refusing links and `..` that lead outside it or
    /// back into a directory already read (two such links would make the walk
    /// exponential), and warning about anything in the tree others may write.
    private func specFiles(_ path: String, _ diagnostics: inout Diagnostics) -> [String] {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else {
            diagnostics.error("no such file or directory", at: SourceLocation(file: path, line: 1, column: 1))
            return []
        }
        guard isDirectory.boolValue else {
            warnIfWorldWritable(path, &diagnostics)
            return [path]
        }
        let root = Self.resolved(path)
        var files: [String] = []
        var walked: Set<String> = [root]
        var pending = [path]
        // Linked directories are walked after every real one, so a link back into the
        // tree is what gets reported, not the directory it points at.
        var links: [String] = []
        while true {
            let directory: String
            if let next = pending.popLast() {
                directory = next
            } else if let link = links.popLast() {
                guard walked.insert(Self.resolved(link)).inserted else {
                    diagnostics.error("leads back to \(Self.resolved(link)), which is already read; remove the link",
                                      at: SourceLocation(file: link, line: 1, column: 1))
                    continue
                }
                directory = link
            } else {
                break
            }
            warnIfWorldWritable(directory, &diagnostics)
            guard let names = try? manager.contentsOfDirectory(atPath: directory) else {
                diagnostics.error("cannot list the directory", at: SourceLocation(file: directory, line: 1, column: 1))
                continue
            }
            for name in names.sorted() where !name.hasPrefix(".") {
                let child = (directory as NSString).appendingPathComponent(name)
                let at = SourceLocation(file: child, line: 1, column: 1)
                let target = Self.resolved(child)
                guard target == root || target.hasPrefix(root + "/") else {
                    diagnostics.error("leads outside the spec directory (to \(target)); specs must live inside it", at: at)
                    continue
                }
                var childIsDirectory: ObjCBool = false
                if manager.fileExists(atPath: child, isDirectory: &childIsDirectory), childIsDirectory.boolValue {
                    if Self.isLink(child) {
                        links.insert(child, at: 0)
                        continue
                    }
                    guard walked.insert(target).inserted else {
                        diagnostics.error("leads back to \(target), which is already read; remove the link", at: at)
                        continue
                    }
                    pending.append(child)
                } else if name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
                    warnIfWorldWritable(child, &diagnostics)
                    files.append(child)
                }
            }
        }
        return files.sorted()
    }

    private static func resolved(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
    }

    /// Specs program the datapath: a spec file or directory anyone on the host may
    /// write is as good as root for them. A warning, not an error, so a checkout
    /// with a loose umask can still be validated; docs/spec.md says why.
    /// Warns when others can change what `path` holds: the file or directory it
    /// resolves to is world-writable (a link's own mode is always 0777 and means
    /// nothing), or, for a link, the directory its target is in is (others could
    /// replace the target). A sticky directory (/tmp) lets no one replace what is not theirs.
    private func warnIfWorldWritable(_ path: String, _ diagnostics: inout Diagnostics) {
        let writable = { (path: String) -> Bool in
            var status = stat()
            guard stat(path, &status) == 0 else { return false }
            return status.st_mode & S_IWOTH != 0 && status.st_mode & S_ISVTX == 0
        }
        let at = SourceLocation(file: path, line: 1, column: 1)
        if writable(path) {
            diagnostics.warning("world-writable: anyone on this host can change the datapath; chmod o-w it", at: at)
        } else if Self.isLink(path) {
            let directory = (Self.resolved(path) as NSString).deletingLastPathComponent
            if writable(directory) {
                diagnostics.warning("links into \(directory), which is world-writable: anyone on this host can "
                                    + "replace what it points at; chmod o-w it", at: at)
            }
        }
    }

    private static func isLink(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFLNK
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
        // Recursion is as deep as the longest path, which limits.cubesPerChain bounds.
        var depth: [String: Int] = [:]      // longest path starting at a cube, in cubes
        var path: [String] = []             // the cubes being walked, in order
        var reported = false
        func longest(_ name: String) -> Int {
            if let known = depth[name] { return known }
            guard let cube = cubes[name] else { return 0 }
            if let start = path.firstIndex(of: name) {
                // The last cube on the path is the one whose next closes the cycle: blame
                // that next (or output), where it is written.
                if !reported, let closing = path.last.flatMap({ cubes[$0] }) {
                    let cycle = (path[start...] + [name]).joined(separator: " -> ")
                    let edge = closing.next.firstIndex(of: name).map { closing.edges[$0] }
                    let from = edge?.output.map { "output '\($0)' of cube '\(closing.name)'" } ?? "cube '\(closing.name)'"
                    d.error("\(from) leads back to '\(name)', closing a cycle in chain '\(chain.name)': \(cycle)",
                            at: edge?.location ?? closing.location)
                    reported = true
                }
                return 0
            }
            path.append(name)
            let result = 1 + (cube.next.compactMap { $0 }.map(longest).max() ?? 0)
            path.removeLast()
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
