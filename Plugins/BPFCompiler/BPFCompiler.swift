import Foundation
import PackagePlugin

/// Compiles C sources under `bpf/` with clang's BPF target, then embeds the objects
/// in the target that uses the plugin, so the built `tailor` carries its datapath
/// and needs no search path at run time. `bpf/include/` holds headers only;
/// `bpf/tests/` holds fixtures for the kernel tests, compiled only for targets
/// whose name ends in "TestKit"; every other target gets the rest of `bpf/`.
@main
struct BPFCompiler: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) async throws -> [Command] {
        let bpf = context.package.directoryURL.appending(path: "bpf")
        let include = bpf.appending(path: "include")
        let fixtures = bpf.appending(path: "tests").path + "/"
        let wantsFixtures = target.name.hasSuffix("TestKit")
        let sources = files(under: bpf, withExtension: "c").filter {
            !$0.path.hasPrefix(include.path + "/") && $0.path.hasPrefix(fixtures) == wantsFixtures
        }
        let headers = files(under: include, withExtension: "h")
        let clang = try context.tool(named: "clang").url
        let work = context.pluginWorkDirectoryURL

        var seen: [String: URL] = [:]
        var commands: [Command] = []
        var objects: [URL] = []
        for source in sources {
            let name = source.deletingPathExtension().lastPathComponent
            if let other = seen[name] {
                Diagnostics.error("two BPF sources compile to \(name).o: \(other.path) and \(source.path)")
                continue
            }
            seen[name] = source
            let object = work.appending(path: "\(name).o")
            objects.append(object)
            commands.append(.buildCommand(
                displayName: "Compiling BPF \(source.lastPathComponent)",
                executable: clang,
                arguments: [
                    "-target", "bpf", "-O2", "-g", "-Wall", "-Werror",
                    "-I", include.path, "-I", "/usr/include/\(Self.multiarch)-linux-gnu",
                    "-c", source.path, "-o", object.path,
                ],
                inputFiles: [source] + headers,
                outputFiles: [object]
            ))
        }
        let generated = work.appending(path: "GeneratedBPFObjects.swift")
        commands.append(.buildCommand(
            displayName: "Embedding \(objects.count) BPF objects",
            executable: try context.tool(named: "BPFEmbed").url,
            arguments: [generated.path] + (wantsFixtures ? ["testObjects", "TailorObjects"] : ["datapathObjects", "-"])
                + objects.map(\.path),
            inputFiles: objects,
            outputFiles: [generated]
        ))
        return commands
    }

    /// Debian's directory for <asm/types.h>, which <linux/types.h> needs.
    static var multiarch: String {
        #if arch(x86_64)
        "x86_64"
        #elseif arch(arm64)
        "aarch64"
        #else
        #error("unsupported host architecture for the BPF build")
        #endif
    }

    private func files(under directory: URL, withExtension ext: String) -> [URL] {
        guard let walker = FileManager.default.enumerator(
            at: directory, includingPropertiesForKeys: nil, options: [.skipsHiddenFiles]
        ) else { return [] }
        return walker.compactMap { $0 as? URL }
            .filter { $0.pathExtension == ext }
            .sorted { $0.path < $1.path }
    }
}
