import ArgumentParser
import Exporters
import FoundationEssentials
import ProfileModel
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
              sudo pybpfprof record --all --rotate 60 --keep 1440 -o /var/lib/pybpfprof/host.pb.gz
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

    @Option(name: .long, help: ArgumentHelp(
        "Write the recording every this many seconds, each period to files of its own, and forget it.",
        discussion: "The -o and --save names with the period's start (local time) inserted before the extension: "
            + "-o host.folded gives host-20261206-170000.folded, host-20261206-170100.folded ... The last, partial period "
            + "is written when the recording ends.",
        valueName: "seconds"))
    var rotate: Double?

    @Option(name: .long, help: ArgumentHelp(
        "With --rotate: after each period, delete the oldest rotated files beyond the newest N, for -o and --save each.",
        discussion: "Only files named as that output's periods are (its name, a time, its extension), in its directory.",
        valueName: "n"))
    var keep: Int?

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
        if let rotate {
            guard rotate >= 1 else {
                throw ValidationError("--rotate must be at least 1 second (file names carry a period's start to the second)")
            }
            guard rotate <= 31_536_000 else { throw ValidationError("--rotate must be at most 31536000 seconds (a year)") }
        }
        if let keep {
            guard rotate != nil else { throw ValidationError("--keep applies to rotated files: add --rotate SECONDS, or drop --keep") }
            guard keep >= 1 else { throw ValidationError("--keep must be at least 1: the newest file of each output is kept") }
        }
        if let output, format == nil, OutputFormat(path: output) == nil {
            throw ValidationError("cannot tell the format of '\(output)' from its extension: add --format \(OutputFormat.allCases.map(\.rawValue).joined(separator: "|"))")
        }
        if let problem = OutputPath.problem(outputPath) { throw ValidationError(problem) }
        if let save, let problem = OutputPath.problem(save) { throw ValidationError(problem) }
    }

    /// The profile file asked for; with --rotate, the name each period's start is inserted into.
    var outputPath: String {
        output ?? "pybpfprof\(rotate == nil ? "-" + OutputPath.timestamp() : "").\((format ?? .html).fileExtension)"
    }

    func run() throws {
        let rate = sampling.rate
        var options = RecordOptions(
            target: try sampling.target(), rate: rate, duration: duration, bpfStatistics: bpfStats,
            pythonOnly: sampling.pythonOnly, showInterpreterFrames: sampling.interpreterFrames,
            unwindTableBytes: unwindMemory << 20)
        options.allowNonPython = allowNonPython
        options.oldestKernelMode = sampling.oldestKernelMode
        options.mode = sampling.mode.profileMode
        options.subprocesses = subprocesses
        options.debugDirectories = sampling.debugFiles.absolutePaths
        options.tableCacheDirectory = sampling.tableCache.resolvedDirectory
        if !sampling.pythonOnly { options.debuginfod = sampling.debugFiles.debuginfodClient() }
        let terminal = Terminal.standardError
        let path = outputPath
        let chosen = format ?? OutputFormat(path: path) ?? .html
        let (profile, statistics, rotation) = try failing { () throws -> (Profile, RecordingStatistics, RotatingWriter?) in
            let recorder = try Recorder(options: options)
            let rotation = rotate.map { seconds in
                var outputs = [RotatingWriter.Output(name: RotatedFileName(path), render: chosen.render)]
                if let save { outputs.append(RotatingWriter.Output(name: RotatedFileName(save), render: RecordingFile.encode)) }
                return RotatingWriter(recorder: recorder, periodSeconds: seconds, keep: keep, outputs: outputs) { line in
                    // On its own line, not after the progress line.
                    if terminal != nil { Terminal.replaceLine("") }
                    printToStandardError(line)
                }
            }
            // Attaching to running processes gives no other sign of life (a launched command has its own output).
            let announcesStart = sampling.command.isEmpty
            let scope = options.target.cgroupDescription.map { " of cgroup \($0)" } ?? ""
            recorder.onStarted = { processes in
                rotation?.start()
                guard announcesStart else { return }
                printToStandardError("pybpfprof: sampling \(processes) process\(processes == 1 ? "" : "es")\(scope) at \(rate) Hz (Ctrl-C to stop and write the profile)")
            }
            if announcesStart {
                // Python stacks are sampled from the start; the native frames of samples taken before this line are
                // marked "[native frames not loaded yet]".
                recorder.onNativeStacksReady = { processes, elapsed in
                    printToStandardError("pybpfprof: native stacks of \(processes) process\(processes == 1 ? "" : "es") ready "
                        + "\(elapsed / 1_000_000) ms after the start")
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
            do {
                let (profile, statistics) = try recorder.run()
                return (profile, statistics, rotation)
            } catch {
                // The periods written so far stay; none is being written as the error is reported.
                rotation?.stop()
                throw error
            }
        }
        var summary = Summary(profile: profile, statistics: statistics)
        summary.terminal = terminal
        if let rotation, let period = rotate {
            let written = try failing { try rotation.finish(recorded: profile) }
            summary.tally = written.tally
            printToStandardError(summary.text)
            printToStandardError(rotatedSummary(written, period: period, format: chosen, mode: profile.mode))
        } else {
            try failing { try writeAtomically(chosen.render(profile), to: path) }
            if let save { try failing { try writeAtomically(RecordingFile.encode(profile), to: save) } }
            printToStandardError(summary.text)
            printToStandardError("wrote \(path) (\(chosen.written(mode: profile.mode)))" + (save.map { ", saved the recording to \($0)" } ?? ""))
        }
        if let status = statistics.commandExitStatus, status != 0 { throw ExitCode(status) }
    }
}

extension Record {
    /// The line after the summary of a rotated recording: how many periods were written, and the last one's files.
    fileprivate func rotatedSummary(_ written: RotatingWriter.Outcome, period: Double, format: OutputFormat,
                                    mode: ProfileMode) -> String {
        var line = "wrote \(written.periods) period\(written.periods == 1 ? "" : "s") of \(String(cFormat: "%g", period)) s, "
            + "the last to \(written.lastPaths[0]) (\(format.written(mode: mode)))"
        if written.lastPaths.count > 1 { line += ", its recording saved to \(written.lastPaths[1])" }
        if let keep { line += "; kept the newest \(keep)" + (written.lastPaths.count > 1 ? " of each" : "") }
        if written.failedWrites > 0 {
            line += "; \(written.failedWrites) write\(written.failedWrites == 1 ? "" : "s") failed, "
                + "\(written.failedWrites == 1 ? "its samples" : "their samples") written with the next period"
        }
        return line
    }
}

extension Target {
    /// The cgroup a `--cgroup` / `--container` recording is restricted to, as /proc/PID/cgroup shows it.
    fileprivate var cgroupDescription: String? {
        if case .cgroup(let directory) = self { return directory.hierarchyPath }
        return nil
    }
}
