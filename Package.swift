// swift-tools-version:5.9
import PackageDescription

// The commit `pybpfprof --version` names: PYBPFPROF_COMMIT from the environment of `swift build` (Scripts/package and
// Scripts/demo set it from git), empty otherwise. A C string define, so a new commit recompiles one file.
let commit = (Context.environment["PYBPFPROF_COMMIT"] ?? "").filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }

let package = Package(
    name: "pybpfprof",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "pybpfprof", targets: ["pybpfprof"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
    ],
    targets: [
        // libbpf, the record/map header shared with bpf/ (a symlink), and tiny syscall shims.
        .target(
            name: "CBPF",
            linkerSettings: [.linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z")]
        ),
        // Compiles bpf/*.bpf.c with clang -target bpf and embeds the object in the binary.
        .plugin(name: "EmbedBPF", capability: .buildTool()),
        .target(name: "BPFKit", dependencies: ["CBPF"], plugins: ["EmbedBPF"]),
        // System calls behind _GNU_SOURCE (process_vm_readv).
        .target(name: "CSystem", linkerSettings: [.linkedLibrary("stdc++")]),
        .target(name: "Native", dependencies: ["CSystem"]),
        // What the binary carries of its build: the commit, and the glibc floor of the static release build.
        .target(name: "CBuildSupport", cSettings: [.define("PYBPFPROF_COMMIT", to: "\"\(commit)\"")]),
        .target(name: "CPython", dependencies: ["Native"]),
        // The recording and what is computed from it alone (function tables, the live window, frame labels): what
        // the formats and the tests need without libbpf, BPF programs or CPython.
        .target(name: "ProfileModel"),
        .target(
            name: "Profiler",
            dependencies: [
                "ProfileModel", "BPFKit", "CBPF", "CPython", "CSystem", "Native",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // zlib's gzip encoder (pprof files are gzip-compressed).
        .target(name: "CZlib", linkerSettings: [.linkedLibrary("z")]),
        // The flame graph page's files, compiled into the binary as byte arrays (no bundle to ship beside it).
        .target(
            name: "Exporters",
            dependencies: ["ProfileModel", "CZlib"],
            resources: [
                .embedInCode("Resources/flamegraph.html"),
                .embedInCode("Resources/flamegraph.css"),
                .embedInCode("Resources/flamegraph.js"),
            ]
        ),
        .executableTarget(
            name: "pybpfprof",
            dependencies: [
                "ProfileModel", "Profiler", "Exporters", "CBuildSupport", "Native",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "NativeTests", dependencies: ["Native"]),
        .testTarget(name: "CPythonTests", dependencies: ["CPython", "Native", "TestSupport"], exclude: ["Fixtures"]),
        // Helpers shared by test targets (one test target cannot import another).
        .target(name: "TestSupport", path: "Tests/TestSupport", resources: [.embedInCode("flamegraph-selftest.js")]),
        .testTarget(name: "ProfileModelTests", dependencies: ["ProfileModel"]),
        .testTarget(name: "ProfilerTests", dependencies: ["Profiler", "ProfileModel", "Native", "BPFKit"]),
        .testTarget(name: "ExportersTests", dependencies: ["Exporters", "ProfileModel", "TestSupport", "CZlib"]),
        .testTarget(
            name: "IntegrationTests", dependencies: ["Profiler", "ProfileModel", "Exporters", "TestSupport"], exclude: ["Fixtures"]
        ),
    ]
)
