// swift-tools-version:6.1
import PackageDescription

// Modules follow the data flow in ../DESIGN (docs/architecture.md):
// spec files -> desired state; kernel -> observed state; plan -> executor -> kernel.
let package = Package(
    name: "tailor",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tailor", targets: ["tailor"]),
        .executable(name: "tailor-bench", targets: ["tailor-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // tailor run --metrics-address: the Prometheus registry and text format, and the HTTP server.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // C libraries the product links, found through pkg-config.
        .systemLibrary(name: "CLibBPF", pkgConfig: "libbpf", providers: [.apt(["libbpf-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        // What Swift cannot call directly: setns, libbpf's variadic print callback.
        .target(name: "CShims", dependencies: ["CLibBPF"]),

        // The datapath's BPF objects (bpf/), compiled by clang and embedded in the binary.
        .plugin(name: "BPFCompiler", capability: .buildTool()),
        .target(name: "TailorObjects", plugins: ["BPFCompiler"]),

        // Spec files -> desired state: libyaml node tree with positions, strict decoding,
        // cube config schemas, semantic checks, diagnostics.
        .target(name: "TailorSpec", dependencies: ["CYAML"]),

        // libbpf, netlink attach points and network namespaces, typed and owned.
        .target(
            name: "TailorKernel",
            dependencies: ["CLibBPF", "CShims", .product(name: "Logging", package: "swift-log")]
        ),

        // Chains in the kernel: root, slots, cube instances, per-packet-consistent commits.
        .target(
            name: "TailorDatapath",
            dependencies: [
                "TailorKernel", "TailorObjects",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Each cube type's control plane: configuration -> rodata and table entries.
        .target(
            name: "TailorCubes",
            dependencies: [
                "TailorDatapath", "TailorKernel", "TailorObjects", "TailorSpec",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),

        // Observe (kernel -> observed state), plan (pure), apply (the only kernel writer).
        .target(
            name: "TailorReconcile",
            dependencies: [
                "TailorDatapath", "TailorKernel", "TailorSpec", "TailorCubes",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The reconcile daemon (`tailor run`): spec watcher, reconcile loop, journald
        // logging, systemd notification, Prometheus metrics and their HTTP server.
        .target(
            name: "TailorDaemon",
            dependencies: [
                "CSystemd", "TailorReconcile", "TailorDatapath", "TailorKernel", "TailorSpec",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),

        // The built-in lab: network namespaces joined by veth pairs or through a router
        // namespace, and packets to send through them.
        .target(name: "TailorLab", dependencies: ["CShims", "TailorKernel", "TailorSpec"]),

        // What the commands of tailor and tailor-bench share: --output text|json, JSON
        // on stdout, plain tables, a failure reported as `Error: message`.
        .target(
            name: "TailorCommandLine",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        .executableTarget(
            name: "tailor",
            dependencies: [
                "TailorKernel", "TailorObjects", "TailorSpec", "TailorDatapath", "TailorCubes", "TailorLab",
                "TailorReconcile", "TailorDaemon", "TailorCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // What the tests and the benchmarks check tailor against, kept out of the tailor
        // binary: random firewall rule sets, a model of the firewall's verdict, and the
        // same rules as iptables and nftables input.
        .target(
            name: "TailorReference",
            dependencies: ["TailorCubes", "TailorDatapath", "TailorLab", "TailorSpec"],
            path: "Tests/TailorReference"
        ),

        // The benchmarks of docs/benchmarks.md (`tailor-bench datapath`, ...): tailor
        // against its baselines in one run. Those that time tailor as a process run the
        // `tailor` built beside it.
        .executableTarget(
            name: "tailor-bench",
            dependencies: [
                "TailorKernel", "TailorObjects", "TailorSpec", "TailorDatapath", "TailorCubes", "TailorLab",
                "TailorReconcile", "TailorDaemon", "TailorCommandLine", "TailorReference",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // bpf/bench/: the objects only the benchmarks load, kept out of tailor.
            plugins: ["BPFCompiler"]
        ),

        // libFuzzer target for the spec parser and decoder (docs/spec.md); a corpus
        // replayer in ordinary builds.
        .executableTarget(
            name: "TailorSpecFuzz",
            dependencies: ["TailorSpec", "TailorCubes"],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),

        // Shared by every kernel test: namespaces, veth pairs, pin roots, packets, traffic.
        .target(
            name: "TailorTestKit",
            dependencies: ["TailorKernel", "TailorDatapath", "TailorObjects", "TailorLab", "CShims"],
            path: "Tests/TailorTestKit",
            plugins: ["BPFCompiler"]
        ),
        .testTarget(
            name: "TailorSpecTests",
            dependencies: ["TailorSpec", "TailorCubes"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "TailorDatapathTests",
            dependencies: ["TailorDatapath", "TailorCubes", "TailorKernel", "TailorObjects", "TailorTestKit"]
        ),
        .testTarget(
            name: "TailorCubesTests",
            dependencies: [
                "TailorCubes", "TailorDatapath", "TailorLab", "TailorReconcile", "TailorReference", "TailorSpec",
                "TailorTestKit",
            ],
            // Read from the source tree (#filePath), so a kept seed needs no rebuild.
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "TailorReconcileTests",
            dependencies: [
                "TailorReconcile", "TailorDatapath", "TailorKernel", "TailorCubes", "TailorLab", "TailorTestKit",
            ]
        ),
        .testTarget(
            name: "TailorCLITests",
            dependencies: ["TailorDatapath", "TailorKernel", "TailorLab", "TailorTestKit"],
            exclude: ["Goldens"]
        ),
        .testTarget(
            name: "TailorDaemonTests",
            dependencies: ["TailorDaemon", "TailorKernel", "TailorObjects", "TailorReconcile",
                           .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "TailorKernelTests",
            dependencies: ["TailorKernel", "TailorObjects", "TailorLab", "TailorTestKit"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
