import PackagePlugin

/// Compiles `bpf/pybpfprof.bpf.c` with clang `-target bpf` (through `Scripts/build-bpf`) and turns the
/// object into a Swift source file, so the BPF program ships inside the one `pybpfprof` binary and is
/// never committed as a blob.
@main
struct EmbedBPF: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let root = context.package.directory
        let bpf = root.appending("bpf")
        let inputs = [bpf.appending("pybpfprof.bpf.c"), bpf.appending("pybpfprof.h")]
        let output = context.pluginWorkDirectory.appending("EmbeddedBPFObject.swift")
        return [
            .buildCommand(
                displayName: "Compiling the BPF program (bpf/pybpfprof.bpf.c)",
                executable: Path("/bin/bash"),
                arguments: [root.appending("Scripts", "build-bpf").string, inputs[0].string, output.string],
                inputFiles: inputs + [root.appending("Scripts", "build-bpf")],
                outputFiles: [output]
            ),
        ]
    }
}
