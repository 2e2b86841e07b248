import FoundationEssentials
import ProfileModel

/// speedscope's file format (https://www.speedscope.app/file-format-schema.json): the profile's frames as
/// the shared frame list, and one `sampled` profile per thread, in (process, tid) order, whose samples are that
/// thread's stacks in time order, each weighing what it stands for, in nanoseconds: one sampling period for an
/// on-CPU sample, its length for an off-CPU interval (modes wall and offcpu). `startValue` and `endValue` span
/// the samples' times (to one period after the last); speedscope takes the weights' sum instead when it is larger,
/// as it is for a thread that spent most of its time off the CPU.
public struct SpeedscopeExporter: Sendable {
    public static let schemaURL = "https://www.speedscope.app/file-format-schema.json"

    /// The recording's name, shown in speedscope's title bar; nil for one made from the processes'
    /// command lines and the start date.
    public var name: String?

    public init(name: String? = nil) {
        self.name = name
    }

    public func render(_ profile: Profile) -> [UInt8] {
        let period = profile.samplePeriod
        // Every sample repeats an interned stack, so each is rendered once and copied.
        let renderedStacks = profile.stacks.map { stack in
            var writer = JSONWriter()
            writer.array(stack) { $0.number(Int($1)) }
            return writer.bytes
        }

        let averageStackBytes = renderedStacks.reduce(0) { $0 + $1.count } / max(renderedStacks.count, 1)
        // A weight is about as long as the period, which has the digits of 10^9 / rate.
        let weightBytes = String(period).utf8.count
        var writer = JSONWriter(
            reservingCapacity: profile.samples.count * (averageStackBytes + weightBytes + 2)
                + profile.frames.count * 64 + 4096
        )
        writer.raw("{")
        writer.key("$schema")
        writer.string(Self.schemaURL)
        writer.raw(",")
        writer.key("exporter")
        writer.string("pybpfprof")
        writer.raw(",")
        writer.key("name")
        writer.string(name ?? Self.recordingName(profile))
        writer.raw(",")
        writer.key("activeProfileIndex")
        writer.number(0)
        writer.raw(",")

        writer.key("shared")
        writer.raw("{")
        writer.key("frames")
        writer.raw("[")
        for (index, frame) in profile.frames.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.raw("{")
            writer.key("name")
            writer.string(frame.name)
            // Unknown files and lines are left out rather than written as "" and 0, which speedscope would show.
            if !frame.file.isEmpty {
                writer.raw(",")
                writer.key("file")
                writer.string(frame.file)
            }
            if frame.line > 0 {
                writer.raw(",")
                writer.key("line")
                writer.number(frame.line)
            }
            writer.raw("}")
        }
        writer.raw("]},")

        let threadNames = Dictionary(uniqueKeysWithValues: profile.threads.map { ($0.key, $0.name) })
        writer.key("profiles")
        writer.raw("[")
        for (index, thread) in Self.samplesByThread(profile).enumerated() {
            if index > 0 { writer.raw(",") }
            let samples = thread.samples
            writer.raw("{")
            writer.key("type")
            writer.string("sampled")
            writer.raw(",")
            writer.key("name")
            writer.string(Self.profileName(thread.key, threadName: threadNames[thread.key]!, profile: profile))
            writer.raw(",")
            writer.key("unit")
            writer.string("nanoseconds")
            writer.raw(",")
            writer.key("startValue")
            writer.number(samples.first!.time)
            writer.raw(",")
            writer.key("endValue")
            writer.number(samples.last!.time + period)
            writer.raw(",")
            writer.key("samples")
            writer.array(samples) { $0.raw(renderedStacks[Int($1.stack)]) }
            writer.raw(",")
            writer.key("weights")
            writer.array(samples) { $0.number($1.weight) }
            writer.raw("}")
        }
        writer.raw("]}")
        return writer.bytes
    }

    /// Each thread with samples, in (process, tid) order, with its samples in time order (ties in recording order).
    private static func samplesByThread(_ profile: Profile) -> [(key: ThreadKey, samples: [Sample])] {
        var samplesByThread: [ThreadKey: [Sample]] = [:]
        for sample in profile.samples {
            samplesByThread[ThreadKey(process: sample.process, tid: sample.tid), default: []].append(sample)
        }
        return samplesByThread.keys.sorted().map { key in
            let samples = samplesByThread[key]!
            // Samples reach the profile per CPU, so they are ordered within a CPU but not across CPUs.
            let inTimeOrder = samples.indices.sorted { (samples[$0].time, $0) < (samples[$1].time, $1) }
            return (key, inTimeOrder.map { samples[$0] })
        }
    }

    /// `python3 pid 1234 tid 1235 (MainThread)`: the program, when the process is known, and the thread's
    /// last name, when it has one; `container 0123456789ab` before them for a process in a container.
    private static func profileName(_ thread: ThreadKey, threadName: String, profile: Profile) -> String {
        let process = profile.processes[Int(thread.process)]
        var parts: [String] = []
        if !process.containerID.isEmpty { parts.append("container \(process.shortContainerID)") }
        if let program = programName(process.commandLine) { parts.append(program) }
        parts.append("pid \(process.pid) tid \(thread.tid)")
        if !threadName.isEmpty { parts.append("(\(threadName))") }
        return parts.joined(separator: " ")
    }

    /// The base name of the executable: `python3` for `/usr/bin/python3 app.py`.
    private static func programName(_ commandLine: String) -> String? {
        let executable = commandLine.split(separator: " ").first?.split(separator: "/").last
        return executable.map(String.init)
    }

    /// `python3 app.py, python3 worker.py (2024-05-01T12:00:00Z)`: what ran, then when.
    private static func recordingName(_ profile: Profile) -> String {
        // Rounded to the millisecond before the fraction is dropped, as ISO8601DateFormatter (ICU) did.
        let start = Date(timeIntervalSince1970: (profile.startDate * 1000).rounded() / 1000).formatted(.iso8601)
        let commandLines = profile.processes.map(\.commandLine).filter { !$0.isEmpty }
        return commandLines.isEmpty ? "pybpfprof \(start)" : "\(commandLines.joined(separator: ", ")) (\(start))"
    }
}
