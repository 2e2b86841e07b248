import ArgumentParser
import Exporters
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

    @OptionGroup var sampling: SamplingOptions

    @Flag(name: .long, help: "With --pid or -- CMD: also profile the targets' child processes, and theirs.")
    var subprocesses = false

    @Option(name: .long, help: "Stop after this many seconds (default: at Ctrl-C, SIGTERM or when the targets exit).")
    var duration: Double?

    @Option(name: [.short, .customLong("output")], help: "Profile file to write (default: pybpfprof-<time>.html, an interactive flame graph).")
    var output: String?

    @Option(name: .long, help: "Output format: \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", ")) (default: from the output file's extension).")
    var format: OutputFormat?

    @Option(name: .long, help: "Also save the whole recording to this file, to render it later in any format with `pybpfprof report`.")
    var save: String?

    @Flag(name: .long, help: "Accept --pid processes that do not run Python: record their native and kernel stacks.")
    var allowNonPython = false

    @Option(name: .long, help: "Kernel memory for native unwind tables, in MiB (preallocated; files that do not fit unwind by frame pointer).")
    var unwindMemory = 16

    @Flag(name: .long, help: "Report the BPF program's kernel run time per sample (switches on kernel BPF statistics).")
    var bpfStats = false

    func validate() throws {
        if let duration, !(duration > 0) { throw ValidationError("--duration must be a positive number of seconds") }
        guard (1...4096).contains(unwindMemory) else { throw ValidationError("--unwind-memory must be between 1 and 4096 MiB") }
        if allowNonPython && sampling.pid.isEmpty { throw ValidationError("--allow-non-python applies to --pid targets only") }
        if subprocesses && sampling.targetsEveryProcess {
            throw ValidationError("--subprocesses applies to --pid or -- CMD; --all, --cgroup and --container already take every process")
        }
        if sampling.pythonOnly && allowNonPython {
            throw ValidationError("--python-only records no native frames: drop --allow-non-python")
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
        let rate = sampling.rate
        var options = RecordOptions(
            target: try sampling.target(), rate: rate, duration: duration, bpfStatistics: bpfStats,
            pythonOnly: sampling.pythonOnly, showInterpreterFrames: sampling.interpreterFrames,
            unwindTableBytes: unwindMemory << 20)
        options.allowNonPython = allowNonPython
        options.oldestKernelMode = sampling.oldestKernelMode
        options.subprocesses = subprocesses
        let terminal = Terminal.standardError
        let (profile, statistics) = try failing {
            let recorder = try Recorder(options: options)
            // Attaching to running processes gives no other sign of life (a launched command has its own output).
            if sampling.command.isEmpty {
                let scope = options.target.cgroupDescription.map { " of cgroup \($0)" } ?? ""
                recorder.onStarted = { processes in
                    printToStandardError("pybpfprof: sampling \(processes) process\(processes == 1 ? "" : "es")\(scope) at \(rate) Hz (Ctrl-C to stop and write the profile)")
                }
            }
            if terminal != nil {
                recorder.onProgress = { progress in
                    let processes = progress.processes
                    Terminal.replaceLine("recording: \(String(cFormat: "%.0f", progress.seconds)) s, \(progress.samples) samples, "
                        + "\(processes) process\(processes == 1 ? "" : "es") (Ctrl-C to stop)")
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
