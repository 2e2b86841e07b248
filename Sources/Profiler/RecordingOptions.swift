import Native
import ProfileModel

/// What to profile.
public enum Target: Sendable, Equatable {
    /// These processes, until they exit.
    case pids([Int32])
    /// Every Python process running when recording starts.
    case all
    /// Launch this command, profile it until it exits.
    case command([String])
    /// Every Python process in this cgroup or below it (`--cgroup`, `--container`): those running when recording
    /// starts and those that start later, as `.all` but restricted to the cgroup in the BPF program and when locating.
    case cgroup(CgroupDirectory)
}

public struct RecordOptions: Sendable {
    public var target: Target
    /// Samples per second of CPU time on each CPU.
    public var rate: Int
    /// Seconds; nil records until a signal or the targets' exit.
    public var duration: Double?
    public var ringBufferBytes: UInt32
    /// Switch on the kernel's BPF run-time statistics to report the program's cost per sample.
    public var bpfStatistics: Bool
    /// Only Python frames: no native or kernel frames (and none are collected).
    public var pythonOnly: Bool
    /// Also show the interpreter's own native frames (libpython), which the default view leaves out.
    public var showInterpreterFrames: Bool
    /// Kernel memory for the native unwind rows of every file the targets map.
    public var unwindTableBytes: Int
    /// Accept `--pid` processes that do not run Python: their native and kernel stacks are recorded.
    public var allowNonPython = false
    /// Also profile the targets' children and their children (`--subprocesses`, with `--pid` or a command).
    public var subprocesses = false
    /// Load the BPF program as on the oldest supported kernel (`KernelFeatures.asOldestSupported`).
    public var oldestKernelMode = false
    /// What the samples measure (`--mode`): on-CPU samples, off-CPU intervals, or both.
    public var mode: ProfileMode = .cpu
    /// `--debug-dir`: directories of debug files on this machine, laid out by build ID as /usr/lib/debug is
    /// (`DIR/.build-id/ab/cdef….debug`); looked in after the process's own /usr/lib/debug.
    public var debugDirectories: [String] = []
    /// Debug files from debuginfod (`DEBUGINFOD_URLS`) for the frames no symbol names, asked for while recording and
    /// used when the profile is written; nil: none asked.
    public var debuginfod: DebuginfodClient?
    /// Nanoseconds the end of a recording waits for debuginfod's answers still on their way.
    public var debuginfodWaitAtEnd: UInt64 = 2_000_000_000
    /// Whether `run()` names the frames debug files name (`LateFrameNamer`) in the profile it returns; a live view
    /// (`top`) names them in its own tables instead, as they arrive (`Recorder.namesArrived`).
    public var namesFramesAtEnd = true
    /// Where compiled unwind tables are kept between recordings (`UnwindTableCache`); nil: none kept.
    public var tableCacheDirectory: String? = tableCacheDefaultDirectory

    /// Whether the recording follows processes as they start: `--all`, `--cgroup` and `--subprocesses`.
    var followsProcesses: Bool { takesEveryNewProgram || subprocesses }

    /// `--all` and `--cgroup`: every program that starts (in the cgroup) is a target, whoever started it.
    var takesEveryNewProgram: Bool { target == .all || cgroup != nil }

    /// The cgroup the recording is restricted to, if any.
    var cgroup: CgroupDirectory? {
        if case .cgroup(let directory) = target { return directory }
        return nil
    }

    public init(target: Target, rate: Int = 100, duration: Double? = nil,
                ringBufferBytes: UInt32 = 8 << 20, bpfStatistics: Bool = false, pythonOnly: Bool = false,
                showInterpreterFrames: Bool = false, unwindTableBytes: Int = 16 << 20) {
        self.target = target
        self.rate = rate
        self.duration = duration
        self.ringBufferBytes = ringBufferBytes
        self.bpfStatistics = bpfStatistics
        self.pythonOnly = pythonOnly
        self.showInterpreterFrames = showInterpreterFrames
        self.unwindTableBytes = unwindTableBytes
    }
}

/// How a recording went, beside the profile itself.
public struct RecordingStatistics: Sendable {
    public init() {}

    /// Python frames whose code object could not be resolved, by reason.
    public var unresolvedFrames: [String: Int] = [:]
    /// The BPF program's named counters, all of them.
    public var counters: [String: UInt64] = [:]
    /// The counters that count errors (not normal events such as cache misses), where not zero.
    public var errorCounters: [String: UInt64] = [:]
    /// Records the kernel could not write: ring buffer full.
    public var lostRecords: UInt64 = 0
    /// --mode wall|offcpu: off-CPU intervals sent, short ones sampled out, and the nanoseconds of those lost.
    public var offCPUIntervals: UInt64 = 0
    public var offCPUSampledOut: UInt64 = 0
    public var offCPULostNanoseconds: UInt64 = 0
    /// BPF run time per sample of a profiled process, when statistics were on.
    public var bpfNanosecondsPerSample: Double?
    /// Times the BPF program ran, on any process's tick.
    public var bpfInvocations: UInt64?
    /// Exit status of a launched command.
    public var commandExitStatus: Int32?
    /// Processes that were not profiled, or not wholly (their native stacks), and why: the first
    /// `skippedProcessesKept`, then only counted in `moreSkippedProcesses`, so that a host where such processes come and
    /// go all day does not grow the list without end.
    public var skippedProcesses: [String] = []
    public var moreSkippedProcesses = 0
    public static let skippedProcessesKept = 100
    /// Interpreter files whose `_Py_DebugOffsets` differed from pybpfprof's table (the process's own values were
    /// used), with the fields that differed: one entry per file, however many processes ran it.
    public var debugOffsetsMismatches: [String: [String]] = [:]
    /// For each time a process's samples reached code mapped after its tables were loaded (a library imported while
    /// recording) and its maps, read again, covered it: nanoseconds from the first such sample to the new tables.
    public var newCodeGaps: [UInt64] = []
    /// The frames no symbol named while recording, and how many debug files named when the profile was made.
    public var lateNaming = LateNaming()
    /// Samples by how their Python frames were spliced into the native stack.
    public var splicing: [SpliceOutcome: Int] = [:]
    /// Samples of a process whose native tables were still being compiled.
    public var nativeTablesNotLoaded = 0
    /// Processes forgotten after they exited (or exec'ed another program) during the recording.
    public var exitedProcesses = 0
    /// Python processes registered during the recording (forks and execs included).
    public var registeredPythonProcesses = 0
    /// Samples with a native stack, and those whose native unwind reached the thread's entry.
    public var nativeStacks = 0
    public var nativeStacksComplete = 0
    /// Native unwind tables: files loaded, rows, bytes used of the bound, and files left without one.
    public var unwindTables: UnwindTableReport?
    /// Why no sample has native frames: the native unwinder, loaded after sampling started, was refused.
    public var nativeStacksOff: String?
    /// How this kernel runs the BPF program (`KernelFeatures.summary`).
    public var kernel = ""
    /// Instructions the verifier processed per loaded BPF program (its limit is 1,000,000 per program).
    public var verifiedInstructions: [String: Int] = [:]
}

/// Where a recording stands, for a progress line.
public struct RecordingProgress: Sendable {
    public var seconds: Double
    public var samples: Int
    public var processes: Int
}

public struct UnwindTableReport: Sendable {
    public var files: Int
    public var rows: Int
    public var bytes: Int
    public var capacityBytes: Int
    /// Rows whose rule the unwinder cannot apply.
    public var unsupportedRows: Int
    /// Path -> reason.
    public var filesWithoutTable: [String: String]
    /// Of `files`, those whose table came from the on-disk cache; damaged cache entries compiled again.
    public var filesFromCache = 0
    public var cacheEntriesRejected = 0
    /// Why the cache was not used, or not written to; nil when it was (or none was asked for).
    public var cacheProblem: String?
}

/// Where `record`, `top` and `dump` keep compiled unwind tables, unless told otherwise (`--table-cache`).
public let tableCacheDefaultDirectory = UnwindTableCache.defaultDirectory

public enum RecordError: Error, CustomStringConvertible {
    case noTargets(String)
    case launchFailed(String)
    case neverPython(command: String)
    /// --mode gil, and a process whose build does not say which thread holds the GIL.
    case noGILProbe(String)

    public var description: String {
        switch self {
        case .noTargets(let reason): return reason
        case .launchFailed(let reason): return reason
        case .noGILProbe(let reason): return "--mode gil: \(reason): record it with --mode cpu"
        case .neverPython(let command):
            return "'\(command)' exited without ever running a supported CPython interpreter"
        }
    }
}

extension RecordingStatistics {
    /// Adds one line to `skippedProcesses`, or counts it once the list is full.
    mutating func skip(_ reason: String) {
        if skippedProcesses.count < Self.skippedProcessesKept {
            skippedProcesses.append(reason)
        } else {
            moreSkippedProcesses += 1
        }
    }
}
