import BPFKit
import CBPF
import CPython
import Glibc
import Native
import ProfileModel

public struct DumpOptions: Sendable {
    /// The process (a thread id stands for its process).
    public var pid: Int32
    /// Only Python frames: no native or kernel frames (and none are collected).
    public var pythonOnly: Bool
    /// Also show the interpreter's own native frames (libpython), which the default view leaves out.
    public var showInterpreterFrames: Bool
    /// Kernel memory for the native unwind rows of every file the process maps.
    public var unwindTableBytes: Int
    /// How the threads are read; nil: by the kernel iterator if this kernel loads it, else from userspace. Forcing the
    /// userspace reader lets it be tested on a kernel that has the iterator.
    public var threadReader: ThreadReader?
    /// `--debug-dir` (see `RecordOptions.debugDirectories`).
    public var debugDirectories: [String] = []
    /// See `RecordOptions.tableCacheDirectory`.
    public var tableCacheDirectory: String? = tableCacheDefaultDirectory
    /// Debug files from debuginfod (`DEBUGINFOD_URLS`) for the native frames no symbol names; nil: none asked.
    public var debuginfod: DebuginfodClient?
    /// Nanoseconds the dump waits for debuginfod's answers.
    public var debuginfodWait: UInt64 = 10_000_000_000

    public init(pid: Int32, pythonOnly: Bool = false, showInterpreterFrames: Bool = false, unwindTableBytes: Int = 16 << 20,
                threadReader: ThreadReader? = nil) {
        self.pid = pid
        self.pythonOnly = pythonOnly
        self.showInterpreterFrames = showInterpreterFrames
        self.unwindTableBytes = unwindTableBytes
        self.threadReader = threadReader
    }
}

public enum DumpError: Error, CustomStringConvertible {
    case noThreads(pid: Int32)

    public var description: String {
        switch self {
        case .noThreads(let pid):
            return "no thread of process \(pid) could be read: it exited meanwhile"
        }
    }
}

/// `pybpfprof dump`: the current stack of every thread of one Python process, without stopping, tracing or writing
/// to the process. The BPF task iterator `dump_threads` (see the end of bpf/pybpfprof.bpf.c) reads every thread that
/// is not on a CPU, which a sampler never sees; on a kernel that does not load it (before 5.18), the
/// `UserspaceThreadReader` reads them from /proc and with process_vm_readv into the same records, with less (see its
/// limits). A thread on a CPU at that moment has no saved registers to unwind from, so it is sampled instead: the
/// recording's `on_sample` runs on its own cpu-clock event, and its first sample (Python, native and kernel frames of
/// one instant) stands for it.
public enum Dumper {
    /// Readings of the process at most: torn readings are read again, the best kept.
    static let attempts = 4
    /// How long running threads are sampled at most: a thread that stops running meanwhile produces no sample, and
    /// is read again instead.
    static let samplingWindowNanoseconds: UInt64 = 100_000_000
    /// Of a sampled thread's CPU time between two samples: its first sample comes after this much running.
    static let samplingPeriodNanoseconds: UInt64 = 200_000
    /// The ring buffer of the samples: a few records (one per running thread, and the few sent before its event is
    /// detached), each at most a struct sample.
    static let sampleBufferBytes: UInt32 = 1 << 20
    /// Running threads sampled at most (a perf event and a file descriptor each). At most one per CPU runs at any
    /// instant; more are found running only when many threads run by turns while the iterator passes.
    static let maxSampledThreads = 256

    public static func dump(_ options: DumpOptions) throws -> ProcessDump {
        let features = try Preflight.check()
        let pid = ProcessScanner.threadGroup(of: options.pid)
        let interpreter = try InterpreterLocator.locate(pid: pid, cache: InterpreterLocator.FileCache())
        let nativeStacks = !options.pythonOnly
        // Read while the BPF object loads and the tables compile.
        let kernelSymbolsReading = nativeStacks
            ? BackgroundResult { try KernelSymbolsCache.read(cachingIn: options.tableCacheDirectory) }
            : nil
        let unwindRowCapacity = nativeStacks ? max(1, options.unwindTableBytes / MemoryLayout<unwind_row>.stride) : 1
        let (object, threadReader, iteratorFailure) = try loadObject(
            features: features, nativeStacks: nativeStacks, unwindRowCapacity: unwindRowCapacity, threadReader: options.threadReader)
        defer { withExtendedLifetime(object) {} }

        try BPFMap(fd: try object.mapFD(.processes)).update(UInt32(bitPattern: pid), py_process(interpreter))
        var warnings: [String] = []
        var native: NativeProcess?
        var nativeUnwind: NativeUnwind?
        var kernelSymbols: KernelSymbols?
        if nativeStacks {
            let rows = try MappedArrayMap(
                fd: try object.mapFD(.unwind_rows), valueSize: MemoryLayout<unwind_row>.stride, entries: unwindRowCapacity)
            let store = UnwindTableStore(rows: rows.base, capacity: unwindRowCapacity, debugDirectories: options.debugDirectories,
                                         cache: UnwindTableCache.inDirectory(options.tableCacheDirectory))
            if let problem = store.cacheProblem { warnings.append("unwind-table cache not used: \(problem)") }
            do {
                let process = try NativeProcess(pid: pid, interpreterFile: interpreter.binaryPath, store: store)
                try process.bpfValue().withUnsafeBytes {
                    try BPFMap(fd: try object.mapFD(.process_mappings)).update(UInt32(bitPattern: pid), bytes: $0)
                }
                native = process
                // The rows stay mapped as long as the unwinder reads them.
                nativeUnwind = NativeUnwind(
                    mappings: process.execMappings(), row: { index in withExtendedLifetime(rows) { store.row(at: index) } },
                    memory: ProcessMemory(pid: pid))
            } catch {
                warnings.append("native frames of process \(pid): \(error)")
            }
            for (path, reason) in store.filesWithoutTable.sorted(by: { $0.key < $1.key }) {
                warnings.append("no unwind table for \(path) (\(reason)): its frames unwind by frame pointer")
            }
            kernelSymbols = try kernelSymbolsReading?.value()
        }

        let readEveryThread: () throws -> [ThreadRecord]
        var limits: [String] = []
        switch threadReader {
        case .kernelIterator:
            let iterator = try object.program(.dump_threads)
            readEveryThread = { try parse(try TaskIterator.run(program: iterator, process: pid)) }
        case .userspace:
            let reader = UserspaceThreadReader(
                pid: pid, interpreter: interpreter, memory: ProcessMemory(pid: pid), native: nativeUnwind,
                collectNativeStacks: nativeStacks, kernelSymbols: kernelSymbols)
            readEveryThread = { reader.read() }
            limits = [userspaceLimits(iteratorFailure: iteratorFailure, nativeStacks: nativeStacks)] + reader.limits
        }
        var records = try readThreads(readEveryThread)
        guard !records.isEmpty else {
            throw kill(pid, 0) != 0 && errno == ESRCH ? InterpreterError.processGone(pid: pid) : DumpError.noThreads(pid: pid)
        }
        var samples: [UInt32: [UInt8]] = [:]
        let running = records.filter(\.isOnCPU).map(\.tid)
        if !running.isEmpty {
            let sampling = sampleRunning(
                threads: running, program: try object.program(.on_sample), ringBuffer: try object.mapFD(.samples))
            samples = sampling.samples
            warnings += sampling.warnings
            // Not sampled: it stopped running meanwhile (its registers are saved now), or is gone. Read once more.
            if running.contains(where: { samples[$0] == nil }) {
                improve(&records, with: try readEveryThread())
            }
        }

        let decoder = StackDecoder<Frame>(
            interpreter: interpreter, native: native, kernelSymbols: kernelSymbols.map { KernelSymbolsSource($0) },
            showInterpreterFrames: options.showInterpreterFrames) { $0 }
        var threads = records.compactMap { threadDump($0, sample: samples[$0.tid], decoder: decoder) }
        threads.sort { ($0.tid == pid ? 0 : 1, $0.tid) < ($1.tid == pid ? 0 : 1, $1.tid) }
        if let debuginfod = options.debuginfod {
            // The debug files of the stripped files the stacks run through, asked of the servers now (a dump has no
            // recording's time for them to arrive), within debuginfodWait.
            let namer = LateFrameNamer(debugDirectories: [], debuginfod: debuginfod)
            let (named, naming) = namer.name(threads.flatMap(\.frames),
                                             waitingUntil: DebuginfodClient.monotonicNanoseconds() + options.debuginfodWait)
            var remaining = named[...]
            for index in threads.indices {
                threads[index].frames = Array(remaining.prefix(threads[index].frames.count))
                remaining = remaining.dropFirst(threads[index].frames.count)
            }
            if !naming.debuginfodFailures.isEmpty, let line = naming.summaryLine { warnings.append(line) }
        }
        for (reason, count) in decoder.unresolvedFrames.sorted(by: { $0.key < $1.key }) {
            warnings.append("\(count) Python frame\(count == 1 ? "" : "s") unresolved: \(reason)")
        }
        return ProcessDump(
            pid: pid, commandLine: ProcessScanner.commandLine(pid: pid), pythonVersion: interpreter.version.description,
            interpreterPath: interpreter.binaryPath, threads: threads, warnings: warnings, threadReader: threadReader,
            limits: limits)
    }

    /// The BPF object, loaded with the task iterator `dump_threads` unless told not to. With no choice given, a kernel
    /// that refuses the iterator (sleepable task iterators and bpf_copy_from_user_task need 5.18) gets the object again
    /// without it, and the threads are read from userspace: decided by trying, not by the version number, which says
    /// nothing of what a distribution backported. Returns why the iterator did not load, when that was tried.
    static func loadObject(features: KernelFeatures, nativeStacks: Bool, unwindRowCapacity: Int, threadReader: ThreadReader?) throws
        -> (loaded: BPFObject, threadReader: ThreadReader, iteratorFailure: Error?)
    {
        func load(withIterator: Bool) throws -> BPFObject {
            // on_sample samples the running threads; no process is followed. A refused iterator is expected on older
            // kernels: no verifier log file for it.
            var configuration = pybpfprof_config()
            configuration.collect_native_stacks = nativeStacks ? 1 : 0
            configuration.collect_kernel_stacks = nativeStacks ? 1 : 0
            // Each sample wakes the reader: it stops sampling a thread as soon as it has one.
            configuration.wakeup_bytes = 0
            return try SamplerProgram(
                features: features, processEvents: false, extraPrograms: withIterator ? [.dump_threads] : [],
                explainRejections: !withIterator, configuration: configuration
            ) { object in
                try object.setMaxEntries(map: .samples, sampleBufferBytes)
                try object.setMaxEntries(map: .unwind_rows, UInt32(unwindRowCapacity))
            }.object
        }
        return try choose(threadReader, load: load(withIterator:))
    }

    /// The reader asked for, else the kernel iterator if `load` succeeds with it, else userspace; with what `load`
    /// returned, and its failure with the iterator when that made the choice.
    static func choose<Loaded>(_ threadReader: ThreadReader?, load: (_ withIterator: Bool) throws -> Loaded) throws
        -> (loaded: Loaded, threadReader: ThreadReader, iteratorFailure: Error?)
    {
        switch threadReader {
        case .kernelIterator?:
            return (try load(true), .kernelIterator, nil)
        case .userspace?:
            return (try load(false), .userspace, nil)
        case nil:
            do {
                return (try load(true), .kernelIterator, nil)
            } catch {
                return (try load(false), .userspace, error)
            }
        }
    }

    /// What a dump read by the userspace reader cannot show, and why it was read so.
    static func userspaceLimits(iteratorFailure: Error?, nativeStacks: Bool) -> String {
        var why = "threads read from userspace as asked"
        if let iteratorFailure {
            let reason = "\(iteratorFailure)".split(separator: "\n").first.map(String.init) ?? ""
            why = "this kernel did not load the BPF task iterator (\(reason); it needs sleepable BPF iterators and "
                + "bpf_copy_from_user_task, Linux 5.18): threads read from userspace"
        }
        guard nativeStacks else { return why + " (process_vm_readv)" }
        return why + " (process_vm_readv, /proc/PID/task/TID/syscall, /proc/PID/task/TID/stack): native frames only for "
            + "threads blocked in the kernel (a system call, a page fault), and only as far as they unwind without rbp, "
            + "which those files do not show"
    }

    /// A thread's stack from its sample if it has one, else from the iterator's reading; nil for a record too short
    /// to decode.
    static func threadDump(_ record: ThreadRecord, sample: [UInt8]?, decoder: StackDecoder<Frame>) -> ThreadDump? {
        if let sample, let stack = sample.withUnsafeBytes({ decoder.decode($0) }) {
            return ThreadDump(
                tid: Int32(bitPattern: stack.header.tid), name: stack.threadName, state: "running", frames: stack.frames.reversed(),
                sampledOnCPU: stack.header.cpu, notes: [])
        }
        guard let stack = record.sample.withUnsafeBytes({ decoder.decode($0) }) else { return nil }
        var notes = record.notes
        if record.isOnCPU {
            notes.append("running on CPU \(stack.header.cpu) and not sampled within \(samplingWindowNanoseconds / 1_000_000) ms: "
                + "its Python frames only, read while they changed (the outermost may be missing)")
        } else if record.thread.flags & DUMP_THREAD_SWITCHED.rawValue != 0 {
            notes.append("it ran while being read: its frames may mix two moments")
        }
        return ThreadDump(
            tid: Int32(bitPattern: stack.header.tid), name: stack.threadName,
            state: describeState(record.thread.state, onCPU: record.isOnCPU), frames: stack.frames.reversed(),
            sampledOnCPU: nil, notes: notes)
    }

    /// One thread's record as the iterator wrote it (or the userspace reader, alike).
    struct ThreadRecord {
        var thread: dump_thread
        /// A `struct sample`: header and the used part of the body.
        var sample: [UInt8]
        /// What the userspace reader could not read of the thread; never set by the iterator.
        var notes: [String] = []

        /// `sample` holds at least a header: `parse` and the userspace reader make sure of it.
        var header: sample_header { sample.withUnsafeBytes { SampleRecord.header(of: $0)! } }
        var tid: UInt32 { header.tid }
        var isOnCPU: Bool { thread.flags & DUMP_THREAD_ON_CPU.rawValue != 0 }
        /// Not on a CPU, yet it ran while being read, or its Python walk hit memory that changed under it (a frame
        /// popped while read), or its native unwind reached an address in no mapping known when the dump began:
        /// worth reading again.
        var isTorn: Bool {
            let flags = UInt32(header.flags)
            return (thread.flags & DUMP_THREAD_SWITCHED.rawValue != 0 && !isOnCPU) || flags & SAMPLE_READ_ERROR.rawValue != 0
                || flags & SAMPLE_NATIVE_UNKNOWN_MAPPING.rawValue != 0
        }

        /// Of two readings of one thread: the clean one, then the one taken off a CPU (it has its native and kernel
        /// frames), and of two taken on a CPU the deeper Python stack (a thread that returns from frames while its
        /// chain is read ends its walk early, never late).
        func isBetter(than other: ThreadRecord) -> Bool {
            if other.isTorn != isTorn { return !isTorn }
            if other.isOnCPU != isOnCPU { return !isOnCPU }
            return isOnCPU && header.py_frame_count > other.header.py_frame_count
        }
    }

    /// Reads every thread (`readEveryThread`: the iterator or the userspace reader) up to `attempts` times while some
    /// reading is torn, and keeps each thread's best reading. Threads in the order first read.
    static func readThreads(_ readEveryThread: () throws -> [ThreadRecord]) throws -> [ThreadRecord] {
        var records: [ThreadRecord] = []
        for attempt in 0..<attempts {
            let reading = try readEveryThread()
            if attempt == 0 {
                var seen = Set<UInt32>()
                records = reading.filter { seen.insert($0.tid).inserted }
            } else {
                improve(&records, with: reading)
            }
            if !records.contains(where: \.isTorn) { break }
        }
        return records
    }

    /// Replaces readings by better ones of the same threads; threads started after the first reading are not part
    /// of this dump.
    static func improve(_ records: inout [ThreadRecord], with reading: [ThreadRecord]) {
        let index = Dictionary(records.indices.map { (records[$0].tid, $0) }, uniquingKeysWith: { first, _ in first })
        for record in reading {
            if let known = index[record.tid], record.isBetter(than: records[known]) { records[known] = record }
        }
    }

    /// Samples the threads that were running when the iterator read them: `on_sample` on a cpu-clock event of each
    /// thread, firing every `samplingPeriodNanoseconds` of its CPU time, detached as soon as its first record
    /// arrives, for `samplingWindowNanoseconds` at most. Returns each sampled thread's first record (a struct sample,
    /// as the recording gets it), and what kept a thread from being sampled. A thread that exited meanwhile is left
    /// out silently; one that stopped running produces no sample.
    static func sampleRunning(threads: [UInt32], program: OpaquePointer, ringBuffer: Int32)
        -> (samples: [UInt32: [UInt8]], warnings: [String])
    {
        var warnings: [String] = []
        if threads.count > maxSampledThreads {
            warnings.append("\(threads.count) threads were running: only the first \(maxSampledThreads) are sampled, the others "
                + "have their Python frames only")
        }
        var events: [UInt32: ThreadCPUClockAttachment] = [:]
        var failures: [String: [UInt32]] = [:]
        for tid in threads.prefix(maxSampledThreads) {
            do {
                events[tid] = try ThreadCPUClockAttachment(
                    program: program, tid: Int32(bitPattern: tid), periodNanoseconds: samplingPeriodNanoseconds)
            } catch let error as BPFError where error.errno == ESRCH {
                // Exited since it was read.
            } catch {
                failures["\(error)", default: []].append(tid)
            }
        }
        for (reason, tids) in failures.sorted(by: { $0.key < $1.key }) {
            warnings.append("running thread\(tids.count == 1 ? "" : "s") \(tids.map(String.init).joined(separator: ", ")) could not "
                + "be sampled (\(reason)): Python frames only")
        }
        var samples: [UInt32: [UInt8]] = [:]
        let reader: RingBufferReader
        do {
            reader = try RingBufferReader(mapFD: ringBuffer) { record in
                guard let sample = SampleRecord(record), sample.isSample, events[sample.header.tid] != nil,
                      samples[sample.header.tid] == nil else { return }
                let header = sample.header
                samples[header.tid] = Array(record)
            }
        } catch {
            return ([:], warnings + ["running threads could not be sampled (\(error)): their Python frames only"])
        }
        let deadline = Recorder.monotonicNow() + samplingWindowNanoseconds
        while samples.count < events.count {
            let now = Recorder.monotonicNow()
            guard now < deadline else { break }
            do {
                try reader.poll(timeoutMilliseconds: Int32(max(1, (deadline - now) / 1_000_000)))
            } catch {
                warnings.append("reading the samples of running threads: \(error)")
                break
            }
            for tid in samples.keys { events[tid]?.detach() }
        }
        events.values.forEach { $0.detach() }
        return (samples, warnings)
    }

    /// Splits the iterator's output into records: a struct dump_thread, then record_size bytes of struct sample.
    static func parse(_ bytes: [UInt8]) throws -> [ThreadRecord] {
        let prefixSize = MemoryLayout<dump_thread>.size
        var records: [ThreadRecord] = []
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= prefixSize else { throw DumpFormatError(offset: offset, total: bytes.count) }
            let thread = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: dump_thread.self) }
            let start = offset + prefixSize
            let size = Int(thread.record_size)
            guard size >= MemoryLayout<sample_header>.size, size <= MemoryLayout<sample>.size, bytes.count - start >= size else {
                throw DumpFormatError(offset: offset, total: bytes.count)
            }
            records.append(ThreadRecord(thread: thread, sample: Array(bytes[start..<start + size])))
            offset = start + size
        }
        return records
    }

    /// `task->__state` (include/linux/sched.h) in words.
    static func describeState(_ state: UInt32, onCPU: Bool) -> String {
        if onCPU { return "running" }
        if state == 0 { return "runnable" }
        if state & 0x8000 != 0 { return "frozen" }
        if state & 0x8 != 0 { return "traced" }
        if state & 0x4 != 0 { return "stopped" }
        if state & 0x80 != 0 { return "dead" }
        if state & 0x1 != 0 { return "sleeping" }
        if state & 0x2 != 0 { return state & 0x400 != 0 ? "idle" : "disk sleep" }
        return "state 0x\(String(state, radix: 16))"
    }
}

/// The iterator's output does not split into whole records: the BPF program and this decoder disagree.
struct DumpFormatError: Error, CustomStringConvertible {
    var offset: Int
    var total: Int

    var description: String {
        "the BPF dump output is malformed at byte \(offset) of \(total): the BPF program and pybpfprof disagree on its layout"
    }
}
