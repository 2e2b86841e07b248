/// The samples of the last `window` nanoseconds of a profile that is still being recorded (or their counts and weights
/// since the start), taken from it a refresh at a time, and the table of functions they make (`top`). Frames, stacks
/// and thread names only ever grow in a Profile, so each is copied and labelled once; samples are taken (the recorder
/// forgets them), so a session of hours keeps no more than its window's samples.
public final class LiveProfileWindow {
    /// Sampling frequency in Hz.
    public let rate: Int
    /// Nanoseconds; nil: since the start.
    public let window: UInt64?
    public let filter: SampleFilter
    /// The profile's processes as of the last increment.
    public private(set) var processes: [ProfiledProcess] = []

    private var functions = FunctionTable()
    private var threadNames: [String] = []
    /// The frames no symbol named (`Frame.unnamed`), by index, until `rename` names them.
    public private(set) var unnamedFrames: [Int32: Frame] = [:]
    /// Windowed: the samples not older than the window. Cumulative: tallies by (thread, stack) instead.
    private var recent: [Sample] = []
    private var tallies: [SampleKey: Tally] = [:]

    /// Some samples: how many, and the nanoseconds they stand for.
    private struct Tally {
        var samples = 0
        var weight: UInt64 = 0

        mutating func add(_ sample: Sample) {
            samples += 1
            weight += sample.weight
        }

        mutating func add(_ other: Tally) {
            samples += other.samples
            weight += other.weight
        }
    }

    private struct SampleKey: Hashable {
        /// Index into the profile's processes.
        var process: Int32
        var tid: Int32
        var threadName: Int32
        var stack: Int32

        init(_ sample: Sample) {
            process = sample.process
            tid = sample.tid
            threadName = sample.threadName
            stack = sample.stack
        }
    }

    public init(rate: Int, window: UInt64?, filter: SampleFilter) {
        self.rate = rate
        self.window = window
        self.filter = filter
    }

    /// What a profile gained since the window last took from it.
    public struct Increment: Sendable {
        public var frames: [Frame]
        public var stacks: [[Int32]]
        public var threadNames: [String]
        /// All of them (a handful), not only the new ones.
        public var processes: [ProfiledProcess]
        /// All of them: whoever hands the profile over takes its samples, so each comes once.
        public var samples: [Sample]
    }

    /// Copies what the window lacks of `profile`; only copies, so that it can run under the recorder's lock.
    public func increment(of profile: Profile) -> Increment {
        Increment(
            frames: Array(profile.frames[min(functions.knownFrames, profile.frames.count)...]),
            stacks: Array(profile.stacks[min(functions.knownStacks, profile.stacks.count)...]),
            threadNames: Array(profile.threadNames[min(threadNames.count, profile.threadNames.count)...]),
            processes: profile.processes,
            samples: profile.samples)
    }

    public func add(_ increment: Increment) {
        for (offset, frame) in increment.frames.enumerated() where frame.unnamed != nil {
            unnamedFrames[Int32(functions.knownFrames + offset)] = frame
        }
        functions.add(frames: increment.frames, stacks: increment.stacks)
        threadNames.append(contentsOf: increment.threadNames)
        processes = increment.processes
        if window != nil {
            recent.append(contentsOf: increment.samples)
        } else {
            for sample in increment.samples { tallies[SampleKey(sample), default: Tally()].add(sample) }
        }
    }

    /// Frames named since they were added (from debug files that arrived later), by index: the functions they count
    /// for from now on, for every sample the window holds.
    public func rename(_ frames: [Int32: Frame]) {
        functions.relabel(frames)
        for index in frames.keys { unnamedFrames[index] = nil }
    }

    /// What the window holds at one moment.
    public struct Contents: Sendable {
        /// Samples in the window, before the filter.
        public var allSamples: Int
        /// Those the filter keeps: what the rest counts.
        public var samples: Int
        /// Nanoseconds the samples in the window stand for, before the filter.
        public var allWeight: UInt64
        /// Nanoseconds the kept samples stand for: what shares of `functionWeights` are of.
        public var weight: UInt64
        public var threads: Int
        public var processes: Int
        /// Every function of the kept samples by the time they stand for, as `FunctionTable.weigh` orders them: the
        /// shares to show when samples weigh unequally (modes wall and offcpu).
        public var functionWeights: [FunctionWeight]
    }

    /// The window's contents `elapsed` seconds after sampling started, which places the window; samples older than it
    /// are forgotten.
    public func contents(elapsed: Double) -> Contents {
        let elapsedNanoseconds = UInt64(max(0, elapsed) * 1e9)
        var kept: [SampleKey: Tally] = [:]
        if let window {
            let cutoff = elapsedNanoseconds > window ? elapsedNanoseconds - window : 0
            recent.removeAll { $0.time < cutoff }
            for sample in recent { kept[SampleKey(sample), default: Tally()].add(sample) }
        } else {
            kept = tallies
        }

        var all = Tally(), shown = Tally()
        var shownThreads = Set<ThreadKey>(), shownProcesses = Set<Int32>()
        var weightPerStack = [UInt64](repeating: 0, count: functions.knownStacks)
        for (key, tally) in kept {
            all.add(tally)
            guard matches(key) else { continue }
            shown.add(tally)
            shownThreads.insert(ThreadKey(process: key.process, tid: key.tid))
            shownProcesses.insert(key.process)
            weightPerStack[Int(key.stack)] += tally.weight
        }
        return Contents(
            allSamples: all.samples, samples: shown.samples, allWeight: all.weight, weight: shown.weight,
            threads: shownThreads.count, processes: shownProcesses.count,
            functionWeights: functions.weigh(weightPerStack: weightPerStack))
    }

    private func matches(_ key: SampleKey) -> Bool {
        if !filter.pids.isEmpty && !filter.pids.contains(processes[Int(key.process)].pid) { return false }
        if !filter.tids.isEmpty && !filter.tids.contains(key.tid) { return false }
        if !filter.threadNames.isEmpty && !filter.threadNames.contains(threadNames[Int(key.threadName)]) { return false }
        return true
    }
}
