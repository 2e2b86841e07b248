import ArgumentParser
import Glibc
import Profiler

@main
struct PyBPFProf: ParsableCommand {
    static let version = "0.5.0"

    static let configuration = CommandConfiguration(
        commandName: "pybpfprof",
        abstract: "A sampling profiler for CPython that reads Python stacks in the kernel with BPF, never pausing the target.",
        subcommands: [Record.self, Report.self, Top.self, Dump.self]
    )

    @Flag(name: .long, help: "Print the version and, as root, how this kernel runs the BPF program.")
    var version = false

    mutating func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print("pybpfprof \(Self.version)")
        // The probes load tiny BPF programs: root only.
        if geteuid() == 0 {
            let features = KernelFeatures.probe()
            print(features.missing.map { "\($0)" } ?? features.summary)
        } else {
            print("kernel \(KernelFeatures.kernelRelease()): run as root to see how pybpfprof runs on it")
        }
    }
}
