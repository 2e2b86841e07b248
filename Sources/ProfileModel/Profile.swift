/// The recording: every sample with its time, CPU, process and thread, over interned stacks of typed
/// frames. Formats are views of it (Sources/Exporters); nothing here knows about any format.
public struct Frame: Hashable, Sendable {
    /// The raw values are stored in recording files (`record --save`): never renumber them.
    public enum Kind: UInt8, Sendable {
        case python = 0
        case native = 1
        case kernel = 2
        /// Synthetic frames the profiler adds: `[truncated]`, `[no Python frame]`, `[unknown]`.
        case marker = 3
    }

    public var kind: Kind
    /// Qualified name for Python frames (3.11+), plain name before.
    public var name: String
    /// Source file for Python frames, library for native ones; empty when unknown.
    public var file: String
    /// Line of the current instruction; 0 when unknown.
    public var line: Int

    /// For a native frame no symbol named when it was recorded: where its code is, to name it later from a debug file
    /// (debuginfod, `report --debug-dir`). Nil for every other frame.
    public var unnamed: UnnamedNativeCode?

    public init(kind: Kind, name: String, file: String = "", line: Int = 0, unnamed: UnnamedNativeCode? = nil) {
        self.kind = kind
        self.name = name
        self.file = file
        self.line = line
        self.unnamed = unnamed
    }

    public static let truncated = Frame(kind: .marker, name: "[truncated]")
    public static let noPython = Frame(kind: .marker, name: "[no Python frame]")
    /// The leaf of an off-CPU interval's stack (`--mode offcpu|wall`): what the thread was waiting for.
    public static let offCPUSleeping = Frame(kind: .marker, name: "[off-CPU: sleeping]")
    public static let offCPUDisk = Frame(kind: .marker, name: "[off-CPU: uninterruptible]")
    public static let offCPURunnable = Frame(kind: .marker, name: "[off-CPU: waiting for a CPU]")
    public static let waitingForGIL = Frame(kind: .marker, name: "[waiting for the GIL]")

    /// Whether the frame is the leaf marker of an off-CPU interval (one of the four above).
    public var isOffCPUMarker: Bool {
        self == .offCPUSleeping || self == .offCPUDisk || self == .offCPURunnable || self == .waitingForGIL
    }
}

/// The code of a native frame that no symbol named: its file's build ID and the function's link-time address (the start
/// of the FDE that covers it, else the address itself), which name it once the file's debug file is found.
public struct UnnamedNativeCode: Hashable, Sendable {
    public var buildID: [UInt8]
    public var address: UInt64

    public init(buildID: [UInt8], address: UInt64) {
        self.buildID = buildID
        self.address = address
    }
}

/// What a recording's samples measure (`record --mode`), and so the unit its weights are in.
public enum ProfileMode: String, Sendable, CaseIterable {
    /// On-CPU samples only: each weighs one sampling period of CPU time.
    case cpu
    /// On-CPU samples and off-CPU intervals: every thread's wall time, whatever it did.
    case wall
    /// Off-CPU intervals only: where threads waited.
    case offcpu
    /// On-CPU samples of the thread that held the GIL at that moment.
    case gil

    /// How the weights read in a profile's header or a tooltip: "CPU time", "wall time".
    public var timeDescription: String {
        switch self {
        case .cpu: return "CPU time"
        case .wall: return "wall time"
        case .offcpu: return "off-CPU time"
        case .gil: return "GIL-holding time"
        }
    }

    /// Whether samples carry weights other than one sampling period (the off-CPU intervals do).
    public var hasIntervals: Bool { self == .wall || self == .offcpu }
}

public struct Sample: Sendable {
    /// Nanoseconds since the recording started.
    public var time: UInt64
    public var cpu: UInt32
    /// Index into `Profile.processes`: the process instance, not its pid (a pid reused during a recording
    /// names two processes).
    public var process: Int32
    public var tid: Int32
    /// Index into `Profile.threadNames`.
    public var threadName: Int32
    /// Index into `Profile.stacks`.
    public var stack: Int32
    /// Nanoseconds of time it stands for: the sampling period for an on-CPU sample, the interval's length (or the
    /// period, for a short interval kept by threshold sampling) for an off-CPU one. `time` is an interval's end.
    public var weight: UInt64

    public init(time: UInt64, cpu: UInt32, process: Int32, tid: Int32, threadName: Int32, stack: Int32, weight: UInt64) {
        self.time = time
        self.cpu = cpu
        self.process = process
        self.tid = tid
        self.threadName = threadName
        self.stack = stack
        self.weight = weight
    }
}

/// One program run by one process: a process that exec'ed another program, or a pid the kernel gave to a new
/// process after the first one exited, is another `ProfiledProcess`.
public struct ProfiledProcess: Sendable, Equatable {
    public var pid: Int32
    public var commandLine: String
    /// "3.12.1" and the like; empty for a process that does not run Python.
    public var pythonVersion: String
    /// The container the process runs in (Docker, containerd, CRI-O or Podman naming), empty on the host.
    public var containerID: String

    public init(pid: Int32, commandLine: String, pythonVersion: String, containerID: String = "") {
        self.pid = pid
        self.commandLine = commandLine
        self.pythonVersion = pythonVersion
        self.containerID = containerID
    }

    /// The container ID as `docker ps` shows it: its first 12 characters.
    public var shortContainerID: String { String(containerID.prefix(12)) }
}

/// Identifies one thread of one process instance.
public struct ThreadKey: Hashable, Sendable, Comparable {
    /// Index into `Profile.processes`.
    public var process: Int32
    public var tid: Int32

    public init(process: Int32, tid: Int32) {
        self.process = process
        self.tid = tid
    }

    public static func < (a: ThreadKey, b: ThreadKey) -> Bool { (a.process, a.tid) < (b.process, b.tid) }
}

public struct Profile: Sendable {
    /// Distinct frames; stacks refer to them by index.
    public var frames: [Frame] { frameTable.elements }
    /// Distinct stacks, each root first, as indices into `frames`.
    public var stacks: [[Int32]] { stackTable.elements }
    public var threadNames: [String] { threadNameTable.elements }
    public var samples: [Sample] = []
    /// Every process instance, in the order they were registered; samples refer to them by index.
    public private(set) var processes: [ProfiledProcess] = []
    /// Sampling frequency in Hz: each sample stands for 1/rate seconds of CPU.
    public var sampleRate: Int
    /// Wall-clock time of `Sample.time == 0`, seconds since 1970.
    public var startDate: Double
    /// Length of the recording in nanoseconds.
    public var duration: UInt64 = 0
    /// What the samples measure; their weights are nanoseconds of it.
    public var mode: ProfileMode = .cpu

    private var frameTable = InternTable<Frame>()
    private var stackTable = InternTable<[Int32]>()
    private var threadNameTable = InternTable<String>()

    public init(sampleRate: Int, startDate: Double) {
        self.sampleRate = sampleRate
        self.startDate = startDate
    }

    public mutating func intern(_ frame: Frame) -> Int32 {
        frameTable.intern(frame)
    }

    /// Interns a stack given root first.
    public mutating func intern(stack: [Int32]) -> Int32 {
        stackTable.intern(stack)
    }

    /// Adds a process instance and returns its index for `Sample.process`.
    public mutating func add(_ process: ProfiledProcess) -> Int32 {
        processes.append(process)
        return Int32(processes.count - 1)
    }

    /// The process instance a sample belongs to.
    public func process(of sample: Sample) -> ProfiledProcess { processes[Int(sample.process)] }

    public mutating func intern(threadName: String) -> Int32 {
        threadNameTable.intern(threadName)
    }

    /// Convenience for tests and importers: appends a sample whose stack is given as frames, root first, to the
    /// newest process instance with this pid (added, without a command line, if there is none).
    public mutating func append(
        time: UInt64, cpu: UInt32 = 0, pid: Int32, tid: Int32, threadName: String, stack: [Frame], weight: UInt64? = nil
    ) {
        let frameIDs = stack.map { intern($0) }
        let process = processes.lastIndex { $0.pid == pid }.map(Int32.init)
            ?? add(ProfiledProcess(pid: pid, commandLine: "", pythonVersion: ""))
        let sample = Sample(
            time: time, cpu: cpu, process: process, tid: tid,
            threadName: intern(threadName: threadName), stack: intern(stack: frameIDs), weight: weight ?? samplePeriod
        )
        samples.append(sample)
    }

    /// Nanoseconds all samples stand for: their weights summed.
    public var totalWeight: UInt64 { samples.reduce(0) { $0 &+ $1.weight } }

    /// Sampling period in nanoseconds.
    public var samplePeriod: UInt64 { UInt64(1_000_000_000 / max(sampleRate, 1)) }

    /// The threads that have samples, in (process, tid) order, each with the name of its last sample.
    public var threads: [(key: ThreadKey, name: String)] {
        var names: [ThreadKey: Int32] = [:]
        for sample in samples { names[ThreadKey(process: sample.process, tid: sample.tid)] = sample.threadName }
        return names.keys.sorted().map { ($0, threadNames[Int(names[$0]!)]) }
    }

    /// A name for each process instance: its pid, or `pid.N` for the Nth instance of a pid the recording saw more
    /// than once (the kernel reused it, or the process exec'ed another program).
    public var processLabels: [String] {
        var seen: [Int32: Int] = [:]
        return processes.map { process in
            seen[process.pid, default: 0] += 1
            let ordinal = seen[process.pid]!
            return ordinal == 1 ? String(process.pid) : "\(process.pid).\(ordinal)"
        }
    }

    /// The indices of the process instances that have samples, in order.
    public var sampledProcesses: [Int32] {
        var sampled = [Bool](repeating: false, count: processes.count)
        for sample in samples { sampled[Int(sample.process)] = true }
        return sampled.indices.filter { sampled[$0] }.map(Int32.init)
    }
}

/// Which samples of a recording to keep (`report --pid/--tid/--thread/--from/--to`).
public struct SampleFilter: Sendable {
    public var pids: Set<Int32> = []
    public var tids: Set<Int32> = []
    /// Thread names, matched exactly.
    public var threadNames: Set<String> = []
    /// Nanoseconds since the recording started, inclusive start, exclusive end.
    public var timeRange: Range<UInt64>?

    public init(pids: Set<Int32> = [], tids: Set<Int32> = [], threadNames: Set<String> = [], timeRange: Range<UInt64>? = nil) {
        self.pids = pids
        self.tids = tids
        self.threadNames = threadNames
        self.timeRange = timeRange
    }

    public var isEmpty: Bool { pids.isEmpty && tids.isEmpty && threadNames.isEmpty && timeRange == nil }
}

extension Profile {
    /// The samples `filter` keeps, over freshly interned tables (frames and stacks no kept sample uses are
    /// dropped); processes are those with kept samples, in their order. Times keep their origin.
    public func filtered(_ filter: SampleFilter) -> Profile {
        var result = Profile(sampleRate: sampleRate, startDate: startDate)
        result.duration = duration
        result.mode = mode
        var stackMap: [Int32: Int32] = [:]
        var processMap: [Int32: Int32] = [:]
        for sample in samples {
            if !filter.pids.isEmpty && !filter.pids.contains(processes[Int(sample.process)].pid) { continue }
            if !filter.tids.isEmpty && !filter.tids.contains(sample.tid) { continue }
            let threadName = threadNames[Int(sample.threadName)]
            if !filter.threadNames.isEmpty && !filter.threadNames.contains(threadName) { continue }
            if let range = filter.timeRange, !range.contains(sample.time) { continue }
            let stack: Int32
            if let known = stackMap[sample.stack] {
                stack = known
            } else {
                stack = result.intern(stack: stacks[Int(sample.stack)].map { result.intern(frames[Int($0)]) })
                stackMap[sample.stack] = stack
            }
            var kept = sample
            kept.stack = stack
            kept.threadName = result.intern(threadName: threadName)
            if let known = processMap[sample.process] {
                kept.process = known
            } else {
                kept.process = result.add(processes[Int(sample.process)])
                processMap[sample.process] = kept.process
            }
            result.samples.append(kept)
        }
        return result
    }
}

extension Profile {
    /// This profile with each frame `rename` gives a new one for replaced (it returns nil to keep a frame). Frames that
    /// become equal are one frame, and stacks that become equal one stack; samples keep their order and everything else.
    public func renamingFrames(_ rename: (Frame) -> Frame?) -> Profile {
        var result = Profile(sampleRate: sampleRate, startDate: startDate)
        result.duration = duration
        result.mode = mode
        result.processes = processes
        for name in threadNames { _ = result.intern(threadName: name) }
        let frameMap = frames.map { result.intern(rename($0) ?? $0) }
        let stackMap = stacks.map { stack in result.intern(stack: stack.map { frameMap[Int($0)] }) }
        result.samples = samples.map { sample in
            var renamed = sample
            renamed.stack = stackMap[Int(sample.stack)]
            return renamed
        }
        return result
    }

    /// One period of a recording as a profile of its own (`record --rotate` writes one per period): `samples`, which
    /// are this profile's (their indices point into its tables), over freshly interned tables holding only what they
    /// use. Frames, stacks and thread names come in the order the samples first use them; processes keep this
    /// profile's order, so that the instances of a reused pid keep their ordinals (`processLabels`).
    ///
    /// The samples come out in time order, their times counted from `offset` (nanoseconds on this profile's clock),
    /// which becomes the new `startDate`; `duration` is the period's length. A sample outside `offset...offset +
    /// duration` is placed at the nearer end: the recorder may deliver a sample after the period it was taken in was
    /// cut, and it then belongs to the next period rather than to none.
    public func compacted(samples: [Sample], startingAt offset: UInt64, duration: UInt64) -> Profile {
        var result = Profile(sampleRate: sampleRate, startDate: startDate + Double(offset) / 1e9)
        result.duration = duration
        result.mode = mode
        let ordered = samples.sorted { $0.time < $1.time }
        var sampled = [Bool](repeating: false, count: processes.count)
        for sample in ordered { sampled[Int(sample.process)] = true }
        var processMap = [Int32](repeating: -1, count: processes.count)
        for index in processes.indices where sampled[index] { processMap[index] = result.add(processes[index]) }
        var stackMap: [Int32: Int32] = [:]
        var threadNameMap: [Int32: Int32] = [:]
        result.samples.reserveCapacity(ordered.count)
        for sample in ordered {
            var kept = sample
            kept.time = min(sample.time >= offset ? sample.time - offset : 0, duration)
            kept.process = processMap[Int(sample.process)]
            if let known = stackMap[sample.stack] {
                kept.stack = known
            } else {
                kept.stack = result.intern(stack: stacks[Int(sample.stack)].map { result.intern(frames[Int($0)]) })
                stackMap[sample.stack] = kept.stack
            }
            if let known = threadNameMap[sample.threadName] {
                kept.threadName = known
            } else {
                kept.threadName = result.intern(threadName: threadNames[Int(sample.threadName)])
                threadNameMap[sample.threadName] = kept.threadName
            }
            result.samples.append(kept)
        }
        return result
    }
}
