import ProfileModel

/// pybpfprof's own file for a whole recording (`record --save`), read back by `report` to render any format
/// later. It keeps everything the Profile holds: every sample with its time, CPU, process, thread and stack.
///
/// Layout (all integers unsigned LEB128 varints unless noted; strings are a varint byte count then UTF-8):
///
///     magic "PYBPFREC"  (8 bytes)
///     format version    (u32 little-endian; this writer writes `currentVersion`)
///     sample rate, start date (f64 bit pattern, u64 little-endian), duration ns
///     mode (0 cpu, 1 wall, 2 offcpu, 3 gil)
///     processes: count, then per process: pid (zigzag), command line, Python version, container ID
///     frames: count, then per frame: kind (0 python, 1 native, 2 kernel, 3 marker), name, file, line, and for a
///             native frame the build ID of its file when no symbol named it (a byte count, 0 for none, then the
///             bytes, at most 64) followed by the function's link-time address: what names it later (`report
///             --debug-dir`, debuginfod)
///     stacks: count, then per stack: length, frame indices (root first)
///     thread names: count, then the strings
///     samples: count, then per sample: time delta from the previous sample (times are sorted), cpu,
///              process index, tid (zigzag), thread name index, stack index, weight less the sampling
///              period (zigzag, nanoseconds: 0, one byte, for every on-CPU sample, whatever the mode)
///
/// Version 3 had no build IDs and addresses of unnamed native frames. Version 2 had no mode and no weights: its samples are on-CPU samples of mode cpu, each weighing one sampling
/// period. Version 1 also had no container ID, and a pid instead of the process index in each sample (its
/// processes are one per pid). Both are still read.
///
/// A sample costs 7 to 11 bytes, 3 to 5 more for an off-CPU interval; the interned tables are written once.
/// The reader treats the file as hostile: every count is bounded by the bytes left, every index is checked, the
/// weights add up to at most `Int64.max` nanoseconds (so that every exporter can sum them in 64 bits), and a
/// failure names the byte where it happened.
public enum RecordingFile {
    public static let magic = Array("PYBPFREC".utf8)
    public static let currentVersion: UInt32 = 4
    /// Build IDs are 20 bytes (SHA-1) in practice; a longer one is not kept.
    static let maximumBuildIDBytes = 64
    /// The oldest version this build reads.
    public static let oldestReadableVersion: UInt32 = 1

    public static func encode(_ profile: Profile) -> [UInt8] {
        var writer = Writer()
        writer.bytes += magic
        withUnsafeBytes(of: currentVersion.littleEndian) { writer.bytes += $0 }
        writer.varint(UInt64(max(profile.sampleRate, 0)))
        withUnsafeBytes(of: profile.startDate.bitPattern.littleEndian) { writer.bytes += $0 }
        writer.varint(profile.duration)
        writer.varint(modeNumbers[profile.mode]!)

        writer.varint(UInt64(profile.processes.count))
        for process in profile.processes {
            writer.signed(Int64(process.pid))
            writer.string(process.commandLine)
            writer.string(process.pythonVersion)
            writer.string(process.containerID)
        }
        writer.varint(UInt64(profile.frames.count))
        for frame in profile.frames {
            writer.varint(UInt64(frame.kind.rawValue))
            writer.string(frame.name)
            writer.string(frame.file)
            writer.varint(UInt64(max(frame.line, 0)))
            if frame.kind == .native {
                let unnamed = frame.unnamed.flatMap { $0.buildID.count <= maximumBuildIDBytes ? $0 : nil }
                writer.varint(UInt64(unnamed?.buildID.count ?? 0))
                if let unnamed {
                    writer.bytes += unnamed.buildID
                    writer.varint(unnamed.address)
                }
            }
        }
        writer.varint(UInt64(profile.stacks.count))
        for stack in profile.stacks {
            writer.varint(UInt64(stack.count))
            for frame in stack { writer.varint(UInt64(frame)) }
        }
        writer.varint(UInt64(profile.threadNames.count))
        for name in profile.threadNames { writer.string(name) }

        let samples = profile.samples.sorted { $0.time < $1.time }
        let period = profile.samplePeriod
        writer.varint(UInt64(samples.count))
        var previous: UInt64 = 0
        for sample in samples {
            writer.varint(sample.time - previous)
            previous = sample.time
            writer.varint(UInt64(sample.cpu))
            writer.varint(UInt64(sample.process))
            writer.signed(Int64(sample.tid))
            writer.varint(UInt64(sample.threadName))
            writer.varint(UInt64(sample.stack))
            writer.signed(Int64(bitPattern: sample.weight &- period))
        }
        return writer.bytes
    }

    /// Reads a recording; throws `RecordingFileError` saying what is wrong and, for a version it does not read,
    /// what to do.
    public static func decode(_ bytes: [UInt8]) throws -> Profile {
        var reader = Reader(bytes: bytes)
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            throw RecordingFileError("not a pybpfprof recording (it does not start with \"PYBPFREC\"): give a file written by `record --save`")
        }
        reader.position = magic.count
        let version = try reader.u32()
        guard version <= currentVersion else {
            throw RecordingFileError("recorded in format version \(version) by a newer pybpfprof; this one reads versions \(oldestReadableVersion) to \(currentVersion): upgrade pybpfprof to read it")
        }
        guard version >= oldestReadableVersion else {
            throw RecordingFileError("recorded in format version \(version), older than this pybpfprof reads (\(oldestReadableVersion) to \(currentVersion)): render it with the pybpfprof that recorded it")
        }

        let rate = try reader.count(limit: 1_000_000, "sample rate")
        let startDate = Double(bitPattern: try reader.u64())
        // A date that is no time (not finite, or past the year 5000) reads as 0: the exporters turn it into integers.
        var profile = Profile(sampleRate: rate, startDate: startDate.isFinite && abs(startDate) < 1e11 ? startDate : 0)
        profile.duration = try reader.varint("duration")
        if version >= 3 {
            let number = try reader.varint("mode")
            guard let mode = modeNumbers.first(where: { $0.value == number })?.key else {
                throw reader.corrupt("unknown mode \(number)")
            }
            profile.mode = mode
        }

        // Version 1 names a sample's process by pid, one process per pid.
        var processByPID: [Int32: Int32] = [:]
        let processCount = try reader.count("processes")
        for _ in 0..<processCount {
            let pid = try reader.int32("pid")
            let commandLine = try reader.string("command line"), pythonVersion = try reader.string("Python version")
            let containerID = version >= 2 ? try reader.string("container ID") : ""
            let index = profile.add(ProfiledProcess(
                pid: pid, commandLine: commandLine, pythonVersion: pythonVersion, containerID: containerID))
            if version == 1 {
                guard processByPID[pid] == nil else { throw reader.corrupt("process \(pid) appears twice") }
                processByPID[pid] = index
            }
        }
        let frameCount = try reader.count("frames")
        for index in 0..<frameCount {
            let kindValue = try reader.varint("frame kind")
            guard let kind = Frame.Kind(rawValue: UInt8(truncatingIfNeeded: kindValue)), kindValue <= 255 else {
                throw reader.corrupt("frame \(index) has unknown kind \(kindValue)")
            }
            var frame = Frame(kind: kind, name: try reader.string("frame name"), file: try reader.string("frame file"),
                              line: try reader.count(limit: Int(Int32.max), "frame line"))
            if version >= 4 && kind == .native {
                let buildIDBytes = try reader.count(limit: maximumBuildIDBytes, "build ID length")
                if buildIDBytes > 0 {
                    guard reader.position + buildIDBytes <= reader.bytes.count else { throw reader.corrupt("it ends inside a build ID") }
                    let buildID = Array(reader.bytes[reader.position..<(reader.position + buildIDBytes)])
                    reader.position += buildIDBytes
                    frame.unnamed = UnnamedNativeCode(buildID: buildID, address: try reader.varint("frame address"))
                }
            }
            guard profile.intern(frame) == Int32(index) else { throw reader.corrupt("frame \(index) appears twice") }
        }
        let stackCount = try reader.count("stacks")
        for index in 0..<stackCount {
            let length = try reader.count("stack length")
            var stack: [Int32] = []
            stack.reserveCapacity(length)
            for _ in 0..<length { stack.append(Int32(try reader.index(below: frameCount, "frame index"))) }
            guard profile.intern(stack: stack) == Int32(index) else { throw reader.corrupt("stack \(index) appears twice") }
        }
        let nameCount = try reader.count("thread names")
        for index in 0..<nameCount {
            guard profile.intern(threadName: try reader.string("thread name")) == Int32(index) else {
                throw reader.corrupt("thread name \(index) appears twice")
            }
        }
        let sampleCount = try reader.count("samples")
        profile.samples.reserveCapacity(sampleCount)
        var time: UInt64 = 0
        let period = Int64(profile.samplePeriod)
        var totalWeight: Int64 = 0
        for _ in 0..<sampleCount {
            let (sum, overflow) = time.addingReportingOverflow(try reader.varint("sample time"))
            guard !overflow else { throw reader.corrupt("sample time overflows") }
            time = sum
            let cpu = try reader.count(limit: Int(UInt32.max), "cpu")
            let process: Int32
            if version == 1 {
                let pid = try reader.int32("pid")
                if let known = processByPID[pid] {
                    process = known
                } else {
                    process = profile.add(ProfiledProcess(pid: pid, commandLine: "", pythonVersion: ""))
                    processByPID[pid] = process
                }
            } else {
                process = Int32(try reader.index(below: processCount, "process index"))
            }
            let tid = try reader.int32("tid")
            let threadName = Int32(try reader.index(below: nameCount, "thread name index"))
            let stack = Int32(try reader.index(below: stackCount, "stack index"))
            var weight = period
            if version >= 3 {
                let (sum, weightOverflows) = period.addingReportingOverflow(try reader.int64("sample weight"))
                guard !weightOverflows, sum >= 0 else {
                    throw reader.corrupt("a sample weight is negative or beyond 64 bits")
                }
                weight = sum
            }
            let (total, totalOverflows) = totalWeight.addingReportingOverflow(weight)
            guard !totalOverflows else { throw reader.corrupt("sample weights add up to more than \(Int64.max) ns") }
            totalWeight = total
            profile.samples.append(Sample(time: time, cpu: UInt32(cpu), process: process, tid: tid,
                                          threadName: threadName, stack: stack, weight: UInt64(weight)))
        }
        guard reader.position == bytes.count else { throw reader.corrupt("\(bytes.count - reader.position) bytes after the last sample") }
        return profile
    }

    /// The numbers that stand for the modes in the file: never renumber them.
    private static let modeNumbers: [ProfileMode: UInt64] = [.cpu: 0, .wall: 1, .offcpu: 2, .gil: 3]

    private struct Writer {
        var bytes: [UInt8] = []

        mutating func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                bytes.append(UInt8(value & 0x7f) | 0x80)
                value >>= 7
            }
            bytes.append(UInt8(value))
        }

        mutating func signed(_ value: Int64) {
            varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
        }

        mutating func string(_ text: String) {
            let utf8 = Array(text.utf8)
            varint(UInt64(utf8.count))
            bytes += utf8
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var position = 0

        func corrupt(_ what: String) -> RecordingFileError {
            RecordingFileError("the recording is corrupt at byte \(position): \(what)")
        }

        mutating func varint(_ what: String) throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard position < bytes.count else { throw corrupt("it ends inside the \(what)") }
                let byte = bytes[position]
                position += 1
                guard shift < 64, !(shift == 63 && byte > 1) else { throw corrupt("the \(what) is longer than 64 bits") }
                value |= UInt64(byte & 0x7f) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }

        mutating func u32() throws -> UInt32 {
            guard position + 4 <= bytes.count else { throw corrupt("it ends inside the format version") }
            defer { position += 4 }
            return (0..<4).reduce(0) { $0 | UInt32(bytes[position + $1]) << (8 * UInt32($1)) }
        }

        mutating func u64() throws -> UInt64 {
            guard position + 8 <= bytes.count else { throw corrupt("it ends inside the start date") }
            defer { position += 8 }
            return (0..<8).reduce(0) { $0 | UInt64(bytes[position + $1]) << (8 * UInt64($1)) }
        }

        /// A count of items that each take at least one byte: never more than the bytes left.
        mutating func count(limit: Int? = nil, _ what: String) throws -> Int {
            let value = try varint(what)
            let bound = UInt64(limit ?? (bytes.count - position))
            guard value <= bound else { throw corrupt("\(what) \(value) is more than \(bound)") }
            return Int(value)
        }

        mutating func index(below count: Int, _ what: String) throws -> Int {
            let value = try varint(what)
            guard value < UInt64(count) else { throw corrupt("\(what) \(value) is out of range (\(count))") }
            return Int(value)
        }

        mutating func int64(_ what: String) throws -> Int64 {
            let raw = try varint(what)
            return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
        }

        mutating func int32(_ what: String) throws -> Int32 {
            let value = try int64(what)
            guard let result = Int32(exactly: value) else { throw corrupt("\(what) \(value) is out of range") }
            return result
        }

        mutating func string(_ what: String) throws -> String {
            let length = try count("\(what) length")
            defer { position += length }
            return String(decoding: bytes[position..<(position + length)], as: UTF8.self)
        }
    }
}

public struct RecordingFileError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
