import ArgumentParser

@main
struct PyBPFProf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pybpfprof",
        abstract: "A sampling profiler for CPython that reads Python stacks in the kernel with BPF, never pausing the target.",
        subcommands: [Record.self, Report.self, Top.self, Dump.self]
    )
}
