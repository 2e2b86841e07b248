import ArgumentParser
import Exporters
import Foundation
import Profiler

extension OutputFormat: ExpressibleByArgument {}

struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample Python processes and write a profile.",
        discussion: """
            Examples:
              sudo pybpfprof record --pid 1234 -o profile.speedscope.json
              sudo pybpfprof record --all --duration 30 -o host.folded
              sudo pybpfprof record --container 3f4e5d6c7b8a --duration 30 -o app.html
              sudo pybpfprof record --cgroup /system.slice/myapp.service -o myapp.html
              sudo pybpfprof record --subprocesses -o build.html -- make test
              sudo pybpfprof record -o app.folded -- python3 app.py --its-flags
            """
    )

    @Option(name: .long, help: "Profile this process (repeatable).")
    var pid: [Int32] = []

    @Flag(name: .long, help: "Profile every Python process: those running now and those that start while recording.")
    var all = false

    @Option(name: .long, help: ArgumentHelp(
        "Profile every Python process in this cgroup v2 directory and below it, also those that start while recording.",
        discussion: "A path under the cgroup v2 mount, or as /proc/PID/cgroup's 0:: line shows it (/system.slice/myapp.service).",
        valueName: "path"))
    var cgroup: String?

    @Option(name: .long, help: ArgumentHelp(
        "Profile every Python process of this container (Docker, containerd, CRI-O, Podman), also those that start while recording.",
        discussion: "Its ID or the start of it, at least 4 hexadecimal digits (docker ps prints 12).",
        valueName: "id"))
    var container: String?

    @Flag(name: .long, help: "With --pid or -- CMD: also profile the targets' child processes, and theirs.")
    var subprocesses = false

    @Option(name: .long, help: "Samples per second of CPU time, per CPU.")
    var rate = 100

    @Option(name: .long, help: "Stop after this many seconds (default: at Ctrl-C, SIGTERM or when the targets exit).")
    var duration: Double?

    @Option(name: [.short, .customLong("output")], help: "Profile file to write (default: pybpfprof-<time>.html, an interactive flame graph).")
    var output: String?

    @Option(name: .long, help: "Output format: \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", ")) (default: from the output file's extension).")
    var format: OutputFormat?

    @Option(name: .long, help: "Also save the whole recording to this file, to render it later in any format with `pybpfprof report`.")
    var save: String?

    @Flag(name: .long, help: "Python frames only: no native or kernel frames.")
    var pythonOnly = false

    @Flag(name: .long, help: "Also show the interpreter's own native frames (libpython), which the default view replaces with the Python frames they run.")
    var interpreterFrames = false

    @Flag(name: .long, help: "Accept --pid processes that do not run Python: record their native and kernel stacks.")
    var allowNonPython = false

    @Option(name: .long, help: "Kernel memory for native unwind tables, in MiB (preallocated; files that do not fit unwind by frame pointer).")
    var unwindMemory = 16

    @Flag(name: .long, help: "Report the BPF program's kernel run time per sample (switches on kernel BPF statistics).")
    var bpfStats = false

    @Argument(parsing: .postTerminator, help: "A command to launch and profile until it exits: -- CMD ARGS...")
    var command: [String] = []

    func validate() throws {
        let targets = (pid.isEmpty ? 0 : 1) + (all ? 1 : 0) + (command.isEmpty ? 0 : 1) + (cgroup == nil ? 0 : 1)
            + (container == nil ? 0 : 1)
        guard targets == 1 else {
            throw ValidationError("give exactly one target: --pid PID, --all, --cgroup PATH, --container ID, or -- CMD ARGS...")
        }
        guard (1...20_000).contains(rate) else { throw ValidationError("--rate must be between 1 and 20000 Hz") }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be a positive number of seconds") }
        guard (1...4096).contains(unwindMemory) else { throw ValidationError("--unwind-memory must be between 1 and 4096 MiB") }
        if allowNonPython && pid.isEmpty { throw ValidationError("--allow-non-python applies to --pid targets only") }
        if subprocesses && all { throw ValidationError("--subprocesses applies to --pid or -- CMD; --all already takes every process") }
        if subprocesses && (cgroup != nil || container != nil) {
            throw ValidationError("--subprocesses applies to --pid or -- CMD; --cgroup and --container already take every process in the cgroup")
        }
        if pythonOnly && (interpreterFrames || allowNonPython) {
            throw ValidationError("--python-only records no native frames: drop --interpreter-frames / --allow-non-python")
        }
        if let output, format == nil, OutputFormat(path: output) == nil {
            throw ValidationError("cannot tell the format of '\(output)' from its extension: add --format \(OutputFormat.allCases.map(\.rawValue).joined(separator: "|"))")
        }
        if let problem = OutputPath.problem(outputPath) { throw ValidationError(problem) }
        if let save, let problem = OutputPath.problem(save) { throw ValidationError(problem) }
    }

    var outputPath: String {
        output ?? "pybpfprof-\(OutputPath.timestamp()).\((format ?? .html).fileExtension)"
    }

    func run() throws {
        let target: Target
        if let cgroup {
            target = .cgroup(try failing { try Containers.cgroup(cgroup) })
        } else if let container {
            target = .cgroup(try failing { try Containers.container(container) })
        } else {
            target = all ? .all : command.isEmpty ? .pids(pid) : .command(command)
        }
        var options = RecordOptions(
            target: target, rate: rate, duration: duration, bpfStatistics: bpfStats, pythonOnly: pythonOnly,
            showInterpreterFrames: interpreterFrames, unwindTableBytes: unwindMemory << 20)
        options.allowNonPython = allowNonPython
        options.subprocesses = subprocesses
        let terminal = Terminal.standardError
        let (profile, statistics) = try failing {
            let recorder = try Recorder(options: options)
            // Attaching to running processes gives no other sign of life (a launched command has its own output).
            if command.isEmpty {
                let scope = options.target.cgroupDescription.map { " of cgroup \($0)" } ?? ""
                recorder.onStarted = { processes in
                    printToStandardError("pybpfprof: sampling \(processes) process\(processes == 1 ? "" : "es")\(scope) at \(rate) Hz (Ctrl-C to stop and write the profile)")
                }
            }
            if terminal != nil {
                recorder.onProgress = { progress in
                    Terminal.replaceLine(String(
                        format: "recording: %.0f s, %d samples, %d process%@ (Ctrl-C to stop)", progress.seconds,
                        progress.samples, progress.processes, progress.processes == 1 ? "" : "es"))
                }
            }
            defer { if terminal != nil { Terminal.replaceLine("") } }
            return try recorder.run()
        }
        let path = outputPath
        let chosen = format ?? OutputFormat(path: path) ?? .html
        try failing { try writeAtomically(chosen.render(profile), to: path) }
        if let save { try failing { try writeAtomically(RecordingFile.encode(profile), to: save) } }
        var summary = Summary(profile: profile, statistics: statistics)
        summary.terminal = terminal
        printToStandardError(summary.text)
        printToStandardError("wrote \(path) (\(chosen.rawValue))" + (save.map { ", saved the recording to \($0)" } ?? ""))
        if let status = statistics.commandExitStatus, status != 0 { throw ExitCode(status) }
    }
}

extension Target {
    /// The cgroup a `--cgroup` / `--container` recording is restricted to, as /proc/PID/cgroup shows it.
    fileprivate var cgroupDescription: String? {
        if case .cgroup(let directory) = self { return directory.hierarchyPath }
        return nil
    }
}
