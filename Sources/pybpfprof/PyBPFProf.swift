import ArgumentParser
import CBuildSupport
import Glibc
import Profiler

@main
struct PyBPFProf: ParsableCommand {
    static let version = "0.5.0"

    static let configuration = CommandConfiguration(
        commandName: "pybpfprof",
        abstract: "A sampling profiler for CPython that reads Python stacks in the kernel with BPF, never pausing the target.",
        subcommands: [Record.self, Report.self, Top.self, Dump.self],
        // `sudo pybpfprof --all`, `--pid N` and `-- python app.py` are the common case: they record.
        defaultSubcommand: Record.self
    )

    @Flag(name: .long, help: "Print the version and, as root, how this kernel runs the BPF program.")
    var version = false

    /// With `record` the default subcommand, ArgumentParser hands every other argument list to it: the two that
    /// belong to the tool itself are taken first (no arguments prints the overview, not a missing-target error).
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.isEmpty { exit(withError: CleanExit.helpRequest(self)) }
        if arguments == ["--version"] {
            printVersion()
            return
        }
        main(arguments)
    }

    mutating func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        Self.printVersion()
    }

    private static func printVersion() {
        let commit = String(cString: pybpfprof_build_commit())
        print("pybpfprof \(Self.version) (commit \(commit.isEmpty ? "unknown: built without PYBPFPROF_COMMIT" : commit))")
        // The probes load tiny BPF programs: root only.
        if geteuid() == 0 {
            let features = KernelFeatures.probe()
            print(features.missing.map { "\($0)" } ?? features.summary)
        } else {
            print("kernel \(KernelFeatures.kernelRelease()): run as root to see how pybpfprof runs on it")
        }
    }
}
