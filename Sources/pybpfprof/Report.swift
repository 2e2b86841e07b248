import ArgumentParser
import Exporters
import FoundationEssentials
import Native
import ProfileModel
import Profiler

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render a recording saved with `record --save` in any format, optionally filtered.",
        discussion: """
            Examples:
              pybpfprof report run.pybpfprof                          # run.html, the flame graph
              pybpfprof report run.pybpfprof -o run.pb.gz             # pprof
              pybpfprof report run.pybpfprof --pid 1234 --from 10 --to 20 -o slice.firefox.json
            """
    )

    @Argument(help: "A recording written by `pybpfprof record --save FILE`.")
    var recording: String

    @Option(name: [.short, .customLong("output")], help: "File to write (default: the recording's name with the format's extension).")
    var output: String?

    @Option(name: .long, help: "Output format: \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", ")) (default: from the output file's extension, else html).")
    var format: OutputFormat?

    @Option(name: .long, help: "Keep only this process's samples (repeatable).")
    var pid: [Int32] = []

    @Option(name: .long, help: "Keep only this thread's samples, by thread id (repeatable).")
    var tid: [Int32] = []

    @Option(name: .long, help: "Keep only threads with this name (repeatable).")
    var thread: [String] = []

    @Option(name: .long, help: "Keep samples from this many seconds after the recording started.")
    var from: Double?

    @Option(name: .long, help: "Keep samples up to this many seconds after the recording started.")
    var to: Double?

    /// Names the native frames the recording left unnamed (stripped files), from debug files by build ID: --debug-dir,
    /// this machine's /usr/lib/debug, and debuginfod (DEBUGINFOD_URLS).
    @OptionGroup var debugFiles: DebugFileOptions

    func validate() throws {
        if let from, !(from >= 0) { throw ValidationError("--from must be a number of seconds, 0 or more") }
        if let to, !(to > (from ?? 0)) { throw ValidationError("--to must be a number of seconds after --from (or after 0)") }
        if let output, format == nil, OutputFormat(path: output) == nil {
            throw ValidationError("cannot tell the format of '\(output)' from its extension: add --format \(OutputFormat.allCases.map(\.rawValue).joined(separator: "|"))")
        }
        if let problem = OutputPath.problem(outputPath) { throw ValidationError(problem) }
    }

    var chosenFormat: OutputFormat { format ?? output.flatMap { OutputFormat(path: $0) } ?? .html }

    var outputPath: String {
        if let output { return output }
        let name = lastPathComponent(recording)
        let stem = name.hasSuffix(".pybpfprof") ? String(name.dropLast(".pybpfprof".count)) : name
        return stem + "." + chosenFormat.fileExtension
    }

    func run() throws {
        let profile = try failing { () throws -> Profile in
            guard FileManager.default.fileExists(atPath: recording) else {
                throw RecordingFileError("cannot read \(recording): no such file")
            }
            let bytes = try Data(contentsOf: URL(fileURLWithPath: recording))
            do {
                return try RecordingFile.decode([UInt8](bytes))
            } catch let error as RecordingFileError {
                throw RecordingFileError("\(recording): \(error)")
            }
        }
        let filter = SampleFilter(
            pids: Set(pid), tids: Set(tid), threadNames: Set(thread),
            timeRange: from == nil && to == nil ? nil
                : UInt64((from ?? 0) * 1e9)..<(to.map { UInt64($0 * 1e9) } ?? UInt64.max))
        var kept = filter.isEmpty ? profile : profile.filtered(filter)
        // Frames the recording could not name, named here where the debug files are: waits for debuginfod at most 60 s.
        let namer = LateFrameNamer(debugDirectories: debugFiles.absolutePaths + ["/usr/lib/debug"],
                                   debuginfod: debugFiles.debuginfodClient())
        let naming: LateNaming
        (kept, naming) = namer.name(kept, waitingUntil: DebuginfodClient.monotonicNanoseconds() + 60_000_000_000)
        if let line = naming.summaryLine { printToStandardError(line) }
        if kept.samples.isEmpty && !profile.samples.isEmpty {
            let pids = Set(profile.processes.map(\.pid)).sorted().map(String.init).joined(separator: ", ")
            let threads = profile.threads.map { "\($0.name) (\($0.key.tid))" }.joined(separator: ", ")
            let seconds = Double(profile.samples.map(\.time).max() ?? 0) / 1e9
            printToStandardError("pybpfprof: error: no sample of \(recording) matches the filters; it has processes \(pids), "
                + "threads \(threads), samples from 0 to \(String(cFormat: "%.1f", seconds)) s")
            throw ExitCode.failure
        }
        let path = outputPath
        try failing { try writeAtomically(chosenFormat.render(kept), to: path) }
        printToStandardError("\(kept.samples.count) of \(profile.samples.count) samples; wrote \(path) (\(chosenFormat.rawValue))")
    }
}
