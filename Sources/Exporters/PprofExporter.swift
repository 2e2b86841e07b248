import CZlib
import ProfileModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// pprof's `profile.proto` (github.com/google/pprof/proto/profile.proto), gzip-compressed, for
/// `go tool pprof`, Pyroscope and Parca. The sample types are `samples/count` and the time the profile's mode
/// measures, in nanoseconds: `cpu` (mode cpu), `wall` (wall), `off-cpu` (offcpu) or `gil` (gil, the CPU time of the
/// thread holding the GIL). The time is the default sample type and the period type, and the period is the
/// sampling period.
///
/// - Samples: all samples with the same stack, process, thread and thread name are one pprof sample with
///   values `[n, their weights summed]`: `[n, n × period]` for on-CPU samples, the intervals' lengths for off-CPU
///   ones. pprof has no per-sample time (the whole file has one start time and one duration), so keeping them
///   apart would only make the file larger; pprof sums sample values itself.
/// - Labels on each sample: `pid` and `thread_id` (numeric), `thread_name` (string; the name the thread had
///   at that sample, so a thread renamed during the recording shows both names; none for a thread without
///   a name). The keys use `_` rather than spaces because Pyroscope and Parca turn pprof labels into series
///   labels, which must be identifiers; `go tool pprof -tagfocus=thread_name=worker` needs no quoting
///   either. `container` (string, the full ID) on the samples of a process that runs in a container.
/// - Locations: one per distinct frame of the Profile (name, file and line), leaf first in each sample as
///   pprof requires (the Profile stores stacks root first). Each has one Line (function and line number, 0
///   when unknown) and address 0: frames arrive symbolized, and a Python frame has no address.
/// - One Mapping, which every location belongs to, saying that they are symbolized already (functions, file
///   names, line numbers): without it pprof makes up a mapping without a file and prints "Main binary
///   filename not available." on every report. Its file is the profiled program (`python3`) when every
///   process runs the same one, which pprof shows as `File: python3`, else none.
/// - Functions: one per distinct (name, file name). Names are the Profile's as they are: Python qualified
///   names, demangled native names, kernel names without the `_[k]` suffix the folded format adds. The file
///   name says what a frame is: a Python frame's source file, a native frame's library (as pprof's own
///   native profiles do), a kernel frame's module or `[kernel]` when it has none, and none for markers
///   such as `[truncated]`.
/// - Comments: one per process, `pid N: command line (Python x.y.z)` (then `container ID` if in one), which pprof prints at the top of its
///   reports (and alone with `-comments`): the file says what was profiled, as the other formats' names do.
/// - Time: `time_nanos` is the recording's start, `duration_nanos` its length.
///
/// Should zlib fail (out of memory), the profile is written uncompressed: pprof readers accept both.
public struct PprofExporter: Sendable {
    public init() {}

    public func render(_ profile: Profile) -> [UInt8] {
        let message = encode(profile)
        return Self.gzip(message) ?? message
    }

    /// The `Profile` message before compression.
    public func encode(_ profile: Profile) -> [UInt8] {
        var strings = StringTable()
        let samplesType = ValueType(type: strings["samples"], unit: strings["count"])
        let timeType = ValueType(type: strings[Self.timeTypeName(profile.mode)], unit: strings["nanoseconds"])
        let labelKeys = (pid: strings["pid"], threadID: strings["thread_id"], threadName: strings["thread_name"],
                         container: strings["container"])
        let containers = profile.processes.map { $0.containerID.isEmpty ? 0 : strings[$0.containerID] }
        let period = Int64(clamping: profile.samplePeriod)

        // Samples, aggregated in the order of their first occurrence so that the output is deterministic.
        var sampleIndex: [SampleKey: Int] = [:]
        var sampleKeys: [SampleKey] = []
        var sampleCounts: [Int64] = []
        var sampleWeights: [UInt64] = []
        for sample in profile.samples {
            let key = SampleKey(stack: sample.stack, process: sample.process, tid: sample.tid, threadName: sample.threadName)
            if let index = sampleIndex[key] {
                sampleCounts[index] += 1
                sampleWeights[index] += sample.weight
            } else {
                sampleIndex[key] = sampleKeys.count
                sampleKeys.append(key)
                sampleCounts.append(1)
                sampleWeights.append(sample.weight)
            }
        }

        var samples = ProtobufWriter()
        var usedFrames = [Bool](repeating: false, count: profile.frames.count)
        for (index, key) in sampleKeys.enumerated() {
            let stack = profile.stacks[Int(key.stack)]
            for frame in stack { usedFrames[Int(frame)] = true }
            let threadName = strings[profile.threadNames[Int(key.threadName)]]
            samples.message(Field.Profile.sample) { sample in
                sample.packedUInt64s(Field.Sample.locationID, stack.reversed().map { Self.locationID(frame: $0) })
                sample.packedInt64s(Field.Sample.value, [sampleCounts[index], Int64(clamping: sampleWeights[index])])
                sample.message(Field.Sample.label) { label in
                    label.int64(Field.Label.key, labelKeys.pid)
                    label.int64(Field.Label.num, Int64(profile.processes[Int(key.process)].pid))
                }
                sample.message(Field.Sample.label) { label in
                    label.int64(Field.Label.key, labelKeys.threadID)
                    label.int64(Field.Label.num, Int64(key.tid))
                }
                // A label whose str is 0 reads as a numeric label, so an unnamed thread gets none.
                if threadName != 0 {
                    sample.message(Field.Sample.label) { label in
                        label.int64(Field.Label.key, labelKeys.threadName)
                        label.int64(Field.Label.str, threadName)
                    }
                }
                let container = containers[Int(key.process)]
                if container != 0 {
                    sample.message(Field.Sample.label) { label in
                        label.int64(Field.Label.key, labelKeys.container)
                        label.int64(Field.Label.str, container)
                    }
                }
            }
        }

        // Locations and the functions they name, for the frames the samples use.
        var functionIDs: [FunctionKey: UInt64] = [:]
        var functions = ProtobufWriter()
        var locations = ProtobufWriter()
        for (index, frame) in profile.frames.enumerated() where usedFrames[index] {
            let functionKey = FunctionKey(name: frame.name, fileName: Self.fileName(of: frame))
            let functionID: UInt64
            if let known = functionIDs[functionKey] {
                functionID = known
            } else {
                functionID = UInt64(functionIDs.count + 1)
                functionIDs[functionKey] = functionID
                let name = strings[functionKey.name]
                let fileName = strings[functionKey.fileName]
                functions.message(Field.Profile.function) { function in
                    function.uint64(Field.Function.id, functionID)
                    function.int64(Field.Function.name, name)
                    function.int64(Field.Function.fileName, fileName)
                }
            }
            locations.message(Field.Profile.location) { location in
                location.uint64(Field.Location.id, Self.locationID(frame: Int32(index)))
                location.uint64(Field.Location.mappingID, Self.mappingID)
                location.message(Field.Location.line) { line in
                    line.uint64(Field.Line.functionID, functionID)
                    line.int64(Field.Line.line, Int64(frame.line))
                }
            }
        }

        let programFileName = strings[Self.programName(profile)]
        let comments = profile.processes.map { process in
            strings["pid \(process.pid): \(process.commandLine) (Python \(process.pythonVersion))"
                + (process.containerID.isEmpty ? "" : " container \(process.containerID)")]
        }

        var message = ProtobufWriter()
        for valueType in [samplesType, timeType] {
            message.message(Field.Profile.sampleType) { valueType.write(to: &$0) }
        }
        message.append(samples)
        message.message(Field.Profile.mapping) { mapping in
            mapping.uint64(Field.Mapping.id, Self.mappingID)
            mapping.int64(Field.Mapping.fileName, programFileName)
            mapping.bool(Field.Mapping.hasFunctions, true)
            mapping.bool(Field.Mapping.hasFileNames, true)
            mapping.bool(Field.Mapping.hasLineNumbers, true)
        }
        message.append(locations)
        message.append(functions)
        for string in strings.strings { message.string(Field.Profile.stringTable, string) }
        message.int64(Field.Profile.timeNanos, Self.nanoseconds(sinceEpoch: profile.startDate))
        message.int64(Field.Profile.durationNanos, Int64(clamping: profile.duration))
        message.message(Field.Profile.periodType) { timeType.write(to: &$0) }
        message.int64(Field.Profile.period, period)
        message.packedInt64s(Field.Profile.comment, comments)
        message.int64(Field.Profile.defaultSampleType, timeType.type)
        return message.bytes
    }

    /// The name of the sample type that holds the time the mode measures.
    static func timeTypeName(_ mode: ProfileMode) -> String {
        switch mode {
        case .cpu: "cpu"
        case .wall: "wall"
        case .offcpu: "off-cpu"
        case .gil: "gil"
        }
    }

    private static let mappingID: UInt64 = 1

    /// The file name of the program every profiled process runs (the first word of its command line), or
    /// "" when they run different ones or none is known.
    static func programName(_ profile: Profile) -> String {
        let programs = Set(profile.processes.map { process in
            let executable = process.commandLine.split(separator: " ").first ?? ""
            return String(executable.split(separator: "/").last ?? "")
        })
        return programs.count == 1 ? programs.first! : ""
    }

    /// Location ids are frame indices + 1: ids must be nonzero.
    private static func locationID(frame: Int32) -> UInt64 { UInt64(frame) + 1 }

    /// The Function's file name, as the type's documentation describes.
    static func fileName(of frame: Frame) -> String {
        switch frame.kind {
        case .python, .native: frame.file
        case .kernel: frame.file.isEmpty ? "[kernel]" : frame.file
        case .marker: ""
        }
    }

    /// Whole seconds and the fraction apart: `seconds * 1e9` as a Double is only good to 256 ns today.
    private static func nanoseconds(sinceEpoch seconds: Double) -> Int64 {
        guard seconds.isFinite, seconds >= 0, seconds < 9.2e9 else { return 0 }
        let whole = seconds.rounded(.down)
        return Int64(whole) * 1_000_000_000 + Int64(((seconds - whole) * 1e9).rounded())
    }

    /// `bytes` as a gzip stream, or nil when zlib fails or the input is beyond its 32-bit sizes.
    private static func gzip(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count <= Int(UInt32.max) else { return nil }
        var output: UnsafeMutablePointer<UInt8>?
        var outputSize = 0
        let result = bytes.withUnsafeBytes { input in
            czlib_gzip(input.baseAddress, input.count, &output, &outputSize)
        }
        guard result == 0, let output else { return nil }
        defer { free(output) }
        return Array(UnsafeBufferPointer(start: output, count: outputSize))
    }
}

private struct SampleKey: Hashable {
    var stack: Int32
    /// Index into `Profile.processes`.
    var process: Int32
    var tid: Int32
    var threadName: Int32
}

private struct FunctionKey: Hashable {
    var name: String
    var fileName: String
}

private struct ValueType {
    var type: Int64
    var unit: Int64

    func write(to writer: inout ProtobufWriter) {
        writer.int64(Field.ValueType.type, type)
        writer.int64(Field.ValueType.unit, unit)
    }
}

/// profile.proto's string_table: every string once, `""` first as the format requires (index 0 also
/// stands for "no string" in every string field).
private struct StringTable {
    private(set) var strings: [String] = [""]
    private var indices: [String: Int64] = ["": 0]

    /// The string's index, adding it on first use.
    subscript(_ string: String) -> Int64 {
        mutating get {
            if let index = indices[string] { return index }
            let index = Int64(strings.count)
            strings.append(string)
            indices[string] = index
            return index
        }
    }
}

/// profile.proto's field numbers, the only part of its schema the encoder needs.
private enum Field {
    enum Profile {
        static let sampleType = 1
        static let sample = 2
        static let mapping = 3
        static let location = 4
        static let function = 5
        static let stringTable = 6
        static let timeNanos = 9
        static let durationNanos = 10
        static let periodType = 11
        static let period = 12
        static let comment = 13
        static let defaultSampleType = 14
    }

    enum ValueType {
        static let type = 1
        static let unit = 2
    }

    enum Sample {
        static let locationID = 1
        static let value = 2
        static let label = 3
    }

    enum Label {
        static let key = 1
        static let str = 2
        static let num = 3
    }

    enum Mapping {
        static let id = 1
        static let fileName = 5
        static let hasFunctions = 7
        static let hasFileNames = 8
        static let hasLineNumbers = 9
    }

    enum Location {
        static let id = 1
        static let mappingID = 2
        static let line = 4
    }

    enum Line {
        static let functionID = 1
        static let line = 2
    }

    enum Function {
        static let id = 1
        static let name = 2
        static let fileName = 4
    }
}
