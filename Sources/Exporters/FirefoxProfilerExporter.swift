import ProfileModel

/// The Firefox Profiler's (https://profiler.firefox.com) processed profile format, pinned at
/// `meta.preprocessedProfileVersion` 57. The profiler upgrades older processed profiles to its current
/// version when it loads them, so a file of a pinned version keeps opening as the profiler moves on.
///
/// Version 57 was chosen and checked against (details in docs/FORMATS.md):
/// - firefox-devtools/profiler `docs-developer/CHANGELOG-formats.md`: 56 moved the string table to
///   `profile.shared.stringArray` (one table for all threads), 57 dropped `searchable` from marker schemas,
///   58 replaced `funcTable.fileName` by `funcTable.source` and a `shared.sources` table. 57 is the newest
///   version with one shared string table and `funcTable.fileName`.
/// - firefox-devtools/profiler `src/profile-logic/processed-profile-versioning.ts`: the upgraders up to 57
///   (53 removed the stack table's `category`/`subcategory`, 54 the frame table's `implementation`).
/// - firefox-devtools/profiler `src/types/profile.js` at versions 56-57: `Profile`, `ProfileMeta`,
///   `RawThread`, `RawSamplesTable`, `RawStackTable`, `FrameTable`, `FuncTable`, `ResourceTable`,
///   `NativeSymbolTable`, `RawMarkerTable`, `Category`, `CategoryColor`; every non-optional field is written.
/// - mstange/samply `fxprof-processed-profile/src/profile.rs`, which writes `preprocessedProfileVersion` 57
///   with the same layout (`meta`, `libs`, `shared.stringArray`, `threads`, `pages`, `profilerOverhead`,
///   `counters`).
///
/// The document:
/// - one thread per (process, tid) with samples, in the profile's process order, named by its last sample's
///   thread name; threads of one process share `pid`, `processName` (the command line, and the container
///   when it runs in one) and `processStartupTime`, which is how the profiler groups them under one process
///   track; `pid` is the pid, or `pid.N` for the Nth process that had the same pid during the recording (a
///   reused pid is another process); `isMainThread` when tid == pid;
/// - every sample at its own time (`samples.time`, ms after `meta.startTime`, exact to the nanosecond), in time
///   order within its thread. In modes cpu and gil each weighs one sample (`weight` null, `weightType` "samples"),
///   every sample being one sampling period. In modes with off-CPU intervals (wall, offcpu) each weighs the
///   milliseconds it stands for (`weight` exact to the nanosecond, `weightType` "tracing-ms", which the call tree
///   shows as running time) and sits at their start, its time less its weight: the profiler draws a sample from
///   its time to the next sample's, and an interval's time is its end;
/// - categories Python (yellow), Native (blue), Kernel (orange) and Other (grey, the default category,
///   for markers such as `[truncated]`), each with the one subcategory "Other";
/// - one frame and one function per distinct profile frame used by the thread: the function carries the
///   name, the file (`fileName`: the source file of a Python frame, the library of a native one) and the
///   line (`lineNumber`, also in `frameTable.line`); unknown files and lines are null. A frame's line is the
///   line it was executing, so, as in the folded and speedscope exports, one function's different lines
///   are different call-tree nodes. Python functions are `isJS`, so the profiler's "JavaScript" stack
///   filter shows the Python frames alone;
/// - resources: a native frame's library (type library, no `lib` entry, as the profiler makes for
///   `name (in lib)` frames), a Python frame's file (type url); kernel frames and markers have none;
/// - no libs, native symbols, markers or counters: frames arrive symbolicated (`meta.symbolicated`).
///
/// Output is deterministic: strings, frames and stacks are numbered in the order the threads' samples,
/// taken in time order, first use them.
public struct FirefoxProfilerExporter: Sendable {
    /// `meta.preprocessedProfileVersion`.
    public static let processedProfileVersion = 57
    /// `meta.version`: the Gecko profile format version of the time (31 through processed versions 51-58);
    /// the profiler reads only `preprocessedProfileVersion` from a processed profile.
    public static let geckoProfileVersion = 31
    /// `meta.categories`, indexed by `categoryIndex(of:)`; colors are names from the profiler's palette.
    public static let categories: [(name: String, color: String)] = [
        ("Python", "yellow"), ("Native", "blue"), ("Kernel", "orange"), ("Other", "grey"),
    ]
    /// `meta.product`.
    public static let product = "pybpfprof"

    public init() {}

    /// The index of a frame kind's category in `categories`.
    public static func categoryIndex(of kind: Frame.Kind) -> Int {
        switch kind {
        case .python: 0
        case .native: 1
        case .kernel: 2
        case .marker: 3
        }
    }

    public func render(_ profile: Profile) -> [UInt8] {
        let threads = Self.samplesByThread(profile)
        let processStarts = Self.processStartTimes(threads)
        let processIDs = profile.processLabels
        var strings = StringTable()
        let renderedThreads = threads.map { thread in
            renderThread(thread, profile: profile, processStart: processStarts[thread.key.process]!,
                         processID: processIDs[Int(thread.key.process)], strings: &strings)
        }

        let period = profile.samplePeriod
        // A sample's time is where what it weighs starts in modes with intervals; in the others a period follows it.
        let lastSampleEnd = threads.map { thread in
            profile.mode.hasIntervals
                ? thread.samples.map { $0.time + $0.weight }.max()! : thread.samples.last!.time + period
        }.max() ?? 0
        let profilingEnd = max(profile.duration, lastSampleEnd)
        // Milliseconds since 1970 to the microsecond, as an integer number of microseconds.
        let startMicroseconds = UInt64(max(0, (profile.startDate * 1_000_000).rounded()))

        var writer = JSONWriter(reservingCapacity: renderedThreads.reduce(0) { $0 + $1.count } + 4096)
        writer.raw("{")
        writer.key("meta")
        writer.raw("{")
        writer.key("interval")
        writer.decimal(period, fractionDigits: 6)
        writer.raw(",")
        writer.key("startTime")
        writer.decimal(startMicroseconds, fractionDigits: 3)
        writer.raw(",")
        writer.key("endTime")
        writer.decimal(startMicroseconds + profilingEnd / 1000, fractionDigits: 3)
        writer.raw(",")
        writer.key("profilingStartTime")
        writer.number(0)
        writer.raw(",")
        writer.key("profilingEndTime")
        writer.decimal(profilingEnd, fractionDigits: 6)
        writer.raw(",")
        writer.key("processType")
        writer.number(0)
        writer.raw(",")
        writer.key("product")
        writer.string(Self.product)
        writer.raw(",")
        writer.key("stackwalk")
        writer.number(profile.frames.contains { $0.kind == .native } ? 1 : 0)
        writer.raw(",")
        writer.key("debug")
        writer.raw("false,")
        writer.key("version")
        writer.number(Self.geckoProfileVersion)
        writer.raw(",")
        writer.key("preprocessedProfileVersion")
        writer.number(Self.processedProfileVersion)
        writer.raw(",")
        writer.key("symbolicated")
        writer.raw("true,")
        writer.key("usesOnlyOneStackType")
        writer.raw("false,")
        writer.key("sourceCodeIsNotOnSearchfox")
        writer.raw("true,")
        writer.key("categories")
        writer.raw("[")
        for (index, category) in Self.categories.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.raw("{")
            writer.key("name")
            writer.string(category.name)
            writer.raw(",")
            writer.key("color")
            writer.string(category.color)
            writer.raw(",")
            writer.key("subcategories")
            writer.raw("[\"Other\"]}")
        }
        writer.raw("],")
        writer.key("markerSchema")
        writer.raw("[],")
        writer.key("extensions")
        writer.raw("{\"baseURL\":[],\"id\":[],\"name\":[],\"length\":0},")
        writer.key("extra")
        writer.raw("[{")
        writer.key("label")
        writer.string("Processes")
        writer.raw(",")
        writer.key("entries")
        writer.raw("[")
        for (index, process) in Set(threads.map(\.key.process)).sorted().enumerated() {
            if index > 0 { writer.raw(",") }
            writer.raw("{")
            writer.key("label")
            writer.string("pid \(processIDs[Int(process)])")
            writer.raw(",")
            writer.key("format")
            writer.string("string")
            writer.raw(",")
            writer.key("value")
            writer.string(Self.processDescription(profile.processes[Int(process)]))
            writer.raw("}")
        }
        writer.raw("]}]},")

        writer.key("libs")
        writer.raw("[],")
        // Written after the threads' tables, which add to it, but placed before them in the file.
        writer.key("shared")
        writer.raw("{")
        writer.key("stringArray")
        writer.array(strings.strings) { $0.string($1) }
        writer.raw("},")
        writer.key("threads")
        writer.array(renderedThreads) { $0.raw($1) }
        writer.raw(",")
        writer.key("pages")
        writer.raw("[],")
        writer.key("profilerOverhead")
        writer.raw("[],")
        writer.key("counters")
        writer.raw("[]}")
        return writer.bytes
    }

    // MARK: - Threads

    private struct ThreadSamples {
        var key: ThreadKey
        var name: String
        /// In time order, ties in recording order.
        var samples: [Sample]
    }

    /// Each thread with samples, in (process, tid) order; in modes with intervals, each sample's time is the start
    /// of the time it weighs.
    private static func samplesByThread(_ profile: Profile) -> [ThreadSamples] {
        var samplesByThread: [ThreadKey: [Sample]] = [:]
        for sample in profile.samples {
            var placed = sample
            if profile.mode.hasIntervals { placed.time -= min(sample.weight, sample.time) }
            samplesByThread[ThreadKey(process: sample.process, tid: sample.tid), default: []].append(placed)
        }
        return profile.threads.map { thread in
            let samples = samplesByThread[thread.key]!
            // Samples reach the profile per CPU, so they are ordered within a CPU but not across CPUs.
            let inTimeOrder = samples.indices.sorted { (samples[$0].time, $0) < (samples[$1].time, $1) }
            return ThreadSamples(key: thread.key, name: thread.name, samples: inTimeOrder.map { samples[$0] })
        }
    }

    /// The time of each process's first sample, in nanoseconds.
    private static func processStartTimes(_ threads: [ThreadSamples]) -> [Int32: UInt64] {
        var starts: [Int32: UInt64] = [:]
        for thread in threads {
            let first = thread.samples.first!.time
            starts[thread.key.process] = min(starts[thread.key.process] ?? first, first)
        }
        return starts
    }

    /// The command line (or `pid N` when it is unknown), and the container the process runs in.
    private static func processName(_ process: ProfiledProcess) -> String {
        let name = process.commandLine.isEmpty ? "pid \(process.pid)" : process.commandLine
        return process.containerID.isEmpty ? name : "\(name) (container \(process.shortContainerID))"
    }

    /// `/usr/bin/python3 app.py (Python 3.12.1)`.
    private static func processDescription(_ process: ProfiledProcess) -> String {
        let name = processName(process)
        return process.pythonVersion.isEmpty ? name : "\(name) (Python \(process.pythonVersion))"
    }

    /// One thread's tables, numbered in the order its samples use frames and stacks.
    private struct ThreadTables {
        /// Profile frame index -> this thread's frame (and function) index.
        var frameIndex: [Int32: Int] = [:]
        /// This thread's frames, as profile frame indices.
        var frames: [Int32] = []
        var funcResource: [Int] = []
        var resourceIndex: [String: Int] = [:]
        var resources: [(name: Int, type: Int)] = []
        /// (prefix or -1, frame) -> stack index.
        var stackIndex: [StackNode: Int] = [:]
        var stackFrame: [Int] = []
        var stackPrefix: [Int] = []
        /// Profile stack index -> this thread's stack index, -1 for an empty stack.
        var stackOfProfileStack: [Int32: Int] = [:]

        struct StackNode: Hashable {
            var prefix: Int
            var frame: Int
        }

        mutating func stack(_ profileStack: Int32, profile: Profile, strings: inout StringTable) -> Int {
            if let known = stackOfProfileStack[profileStack] { return known }
            var prefix = -1
            for profileFrame in profile.stacks[Int(profileStack)] {
                let frame = self.frame(profileFrame, profile: profile, strings: &strings)
                let node = StackNode(prefix: prefix, frame: frame)
                if let existing = stackIndex[node] {
                    prefix = existing
                } else {
                    let index = stackFrame.count
                    stackFrame.append(frame)
                    stackPrefix.append(prefix)
                    stackIndex[node] = index
                    prefix = index
                }
            }
            stackOfProfileStack[profileStack] = prefix
            return prefix
        }

        private mutating func frame(_ profileFrame: Int32, profile: Profile, strings: inout StringTable) -> Int {
            if let known = frameIndex[profileFrame] { return known }
            let frame = profile.frames[Int(profileFrame)]
            let index = frames.count
            frames.append(profileFrame)
            frameIndex[profileFrame] = index
            // Strings in the order the frame's columns are written, for a stable numbering.
            _ = strings.index(frame.name)
            if !frame.file.isEmpty { _ = strings.index(frame.file) }
            funcResource.append(resource(for: frame, strings: &strings))
            return index
        }

        private mutating func resource(for frame: Frame, strings: inout StringTable) -> Int {
            guard !frame.file.isEmpty else { return -1 }
            let type: Int
            let name: String
            switch frame.kind {
            case .native:
                type = 1  // resourceTypes.library
                name = frame.file.split(separator: "/").last.map(String.init) ?? frame.file
            case .python:
                type = 5  // resourceTypes.url
                name = frame.file
            case .kernel, .marker:
                return -1
            }
            let key = "\(type)\u{0}\(frame.file)"
            if let known = resourceIndex[key] { return known }
            let index = resources.count
            resources.append((strings.index(name), type))
            resourceIndex[key] = index
            return index
        }
    }

    private func renderThread(
        _ thread: ThreadSamples, profile: Profile, processStart: UInt64, processID: String, strings: inout StringTable
    ) -> [UInt8] {
        var tables = ThreadTables()
        let sampleStacks = thread.samples.map { tables.stack($0.stack, profile: profile, strings: &strings) }
        let name = thread.name.isEmpty ? "Thread \(thread.key.tid)" : thread.name

        var writer = JSONWriter(reservingCapacity: thread.samples.count * 24 + tables.frames.count * 96 + 1024)
        writer.raw("{")
        writer.key("processType")
        writer.string("default")
        writer.raw(",")
        writer.key("processStartupTime")
        writer.decimal(processStart, fractionDigits: 6)
        writer.raw(",")
        writer.key("processShutdownTime")
        writer.raw("null,")
        writer.key("registerTime")
        writer.decimal(thread.samples.first!.time, fractionDigits: 6)
        writer.raw(",")
        writer.key("unregisterTime")
        writer.raw("null,")
        writer.key("pausedRanges")
        writer.raw("[],")
        writer.key("name")
        writer.string(name)
        writer.raw(",")
        writer.key("isMainThread")
        let process = profile.processes[Int(thread.key.process)]
        writer.raw(thread.key.tid == process.pid ? "true," : "false,")
        writer.key("processName")
        writer.string(Self.processName(process))
        writer.raw(",")
        writer.key("pid")
        writer.string(processID)
        writer.raw(",")
        writer.key("tid")
        writer.number(Int(thread.key.tid))
        writer.raw(",")

        writer.key("samples")
        writer.raw("{")
        writer.key("stack")
        writer.column(sampleStacks) { writer, stack in stack < 0 ? writer.raw("null") : writer.number(stack) }
        writer.key("time")
        writer.column(thread.samples) { writer, sample in writer.decimal(sample.time, fractionDigits: 6) }
        writer.key("weight")
        if profile.mode.hasIntervals {
            writer.column(thread.samples) { writer, sample in writer.decimal(sample.weight, fractionDigits: 6) }
            writer.key("weightType")
            writer.string("tracing-ms")
        } else {
            writer.raw("null,")
            writer.key("weightType")
            writer.string("samples")
        }
        writer.raw(",")
        writer.key("length")
        writer.number(thread.samples.count)
        writer.raw("},")

        writer.key("markers")
        writer.raw("{\"data\":[],\"name\":[],\"startTime\":[],\"endTime\":[],\"phase\":[],\"category\":[],\"length\":0},")

        writer.key("stackTable")
        writer.raw("{")
        writer.key("frame")
        writer.column(tables.stackFrame) { writer, frame in writer.number(frame) }
        writer.key("prefix")
        writer.column(tables.stackPrefix) { writer, prefix in prefix < 0 ? writer.raw("null") : writer.number(prefix) }
        writer.key("length")
        writer.number(tables.stackFrame.count)
        writer.raw("},")

        let frames = tables.frames.map { profile.frames[Int($0)] }
        writer.key("frameTable")
        writer.raw("{")
        writer.key("address")
        writer.column(frames) { writer, _ in writer.number(-1) }
        writer.key("inlineDepth")
        writer.column(frames) { writer, _ in writer.number(0) }
        writer.key("category")
        writer.column(frames) { writer, frame in writer.number(Self.categoryIndex(of: frame.kind)) }
        writer.key("subcategory")
        writer.column(frames) { writer, _ in writer.number(0) }
        writer.key("func")
        writer.column(Array(frames.indices)) { writer, index in writer.number(index) }
        writer.key("nativeSymbol")
        writer.column(frames) { writer, _ in writer.raw("null") }
        writer.key("innerWindowID")
        writer.column(frames) { writer, _ in writer.number(0) }
        writer.key("line")
        writer.column(frames) { writer, frame in frame.line > 0 ? writer.number(frame.line) : writer.raw("null") }
        writer.key("column")
        writer.column(frames) { writer, _ in writer.raw("null") }
        writer.key("length")
        writer.number(frames.count)
        writer.raw("},")

        writer.key("funcTable")
        writer.raw("{")
        writer.key("name")
        writer.column(frames) { writer, frame in writer.number(strings.existingIndex(frame.name)) }
        writer.key("isJS")
        writer.column(frames) { writer, frame in writer.raw(frame.kind == .python ? "true" : "false") }
        writer.key("relevantForJS")
        writer.column(frames) { writer, _ in writer.raw("false") }
        writer.key("resource")
        writer.column(tables.funcResource) { writer, resource in writer.number(resource) }
        writer.key("fileName")
        writer.column(frames) { writer, frame in
            frame.file.isEmpty ? writer.raw("null") : writer.number(strings.existingIndex(frame.file))
        }
        writer.key("lineNumber")
        writer.column(frames) { writer, frame in frame.line > 0 ? writer.number(frame.line) : writer.raw("null") }
        writer.key("columnNumber")
        writer.column(frames) { writer, _ in writer.raw("null") }
        writer.key("length")
        writer.number(frames.count)
        writer.raw("},")

        writer.key("resourceTable")
        writer.raw("{")
        writer.key("length")
        writer.number(tables.resources.count)
        writer.raw(",")
        writer.key("lib")
        writer.column(tables.resources) { writer, _ in writer.raw("null") }
        writer.key("name")
        writer.column(tables.resources) { writer, resource in writer.number(resource.name) }
        writer.key("host")
        writer.column(tables.resources) { writer, _ in writer.raw("null") }
        writer.key("type")
        writer.array(tables.resources) { $0.number($1.type) }
        writer.raw("},")

        writer.key("nativeSymbols")
        writer.raw("{\"libIndex\":[],\"address\":[],\"name\":[],\"functionSize\":[],\"length\":0}")
        writer.raw("}")
        return writer.bytes
    }
}

/// `profile.shared.stringArray`: each distinct string once, numbered in the order first asked for.
private struct StringTable {
    private(set) var strings: [String] = []
    private var indices: [String: Int] = [:]

    mutating func index(_ string: String) -> Int {
        if let index = indices[string] { return index }
        let index = strings.count
        strings.append(string)
        indices[string] = index
        return index
    }

    /// The index of a string added earlier.
    func existingIndex(_ string: String) -> Int {
        indices[string]!
    }
}

private extension JSONWriter {
    /// `value / 10^fractionDigits` as a JSON number, exactly, without trailing zeros: 1500000 with 6
    /// digits is `1.5`, 2000000 is `2`.
    mutating func decimal(_ value: UInt64, fractionDigits: Int) {
        var scale: UInt64 = 1
        for _ in 0..<fractionDigits { scale *= 10 }
        number(value / scale)
        var fraction = value % scale
        guard fraction != 0 else { return }
        var digits = fractionDigits
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        raw(".")
        var leadingZeros = digits - 1
        var remaining = fraction
        while remaining >= 10 {
            remaining /= 10
            leadingZeros -= 1
        }
        for _ in 0..<leadingZeros { raw("0") }
        number(fraction)
    }

    /// `[e0,e1,...],` with each element written by `element`.
    mutating func column<Element>(_ elements: [Element], _ element: (inout JSONWriter, Element) -> Void) {
        array(elements, element)
        raw(",")
    }
}
