import BPFKit
import CBPF
import CPython
import Foundation
import Glibc
import Native

/// What to profile.
public enum Target: Sendable, Equatable {
    /// These processes, until they exit.
    case pids([Int32])
    /// Every Python process running when recording starts.
    case all
    /// Launch this command, profile it until it exits.
    case command([String])
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
    /// Only Python frames: no kernel frames under them (and none are collected).
    public var pythonOnly: Bool

    public init(target: Target, rate: Int = 100, duration: Double? = nil,
                ringBufferBytes: UInt32 = 8 << 20, bpfStatistics: Bool = false, pythonOnly: Bool = false) {
        self.target = target
        self.rate = rate
        self.duration = duration
        self.ringBufferBytes = ringBufferBytes
        self.bpfStatistics = bpfStatistics
        self.pythonOnly = pythonOnly
    }
}

/// How a recording went, beside the profile itself.
public struct RecordingStatistics: Sendable {
    /// Python frames whose code object could not be resolved, by reason.
    public var unresolvedFrames: [String: Int] = [:]
    /// The BPF program's named counters, all of them.
    public var counters: [String: UInt64] = [:]
    /// The counters that count errors (not normal events such as cache misses), where not zero.
    public var errorCounters: [String: UInt64] = [:]
    /// Records the kernel could not write: ring buffer full.
    public var lostRecords: UInt64 = 0
    /// BPF run time per sample of a profiled process, when statistics were on.
    public var bpfNanosecondsPerSample: Double?
    /// Times the BPF program ran, on any process's tick.
    public var bpfInvocations: UInt64?
    /// Exit status of a launched command.
    public var commandExitStatus: Int32?
    /// Processes whose interpreter was located, with the reason for those that were not.
    public var skippedProcesses: [String] = []
    /// The interpreters profiled (their `debugOffsetsMismatch` is reported in the summary).
    public var interpreters: [PythonInterpreter] = []
}

public enum RecordError: Error, CustomStringConvertible {
    case noTargets(String)
    case launchFailed(String)
    case neverPython(command: String)

    public var description: String {
        switch self {
        case .noTargets(let reason): return reason
        case .launchFailed(let reason): return reason
        case .neverPython(let command):
            return "'\(command)' exited without ever running a supported CPython interpreter"
        }
    }
}

/// One recording: finds the targets' interpreters, runs the sampler, and turns records into a Profile.
public final class Recorder {
    private let options: RecordOptions
    private let sampler: Sampler
    /// Guards `profile`, `symbolizers` and `statistics`, shared by the drain thread and the caller.
    private let lock = NSLock()
    private var profile: Profile
    private var symbolizers: [Int32: PythonSymbolizer] = [:]
    /// Profile frame index of each sampled (process, code object, checksum, instruction) and kernel
    /// address seen so far: a frame is resolved and its strings hashed once, not on every sample.
    private var pythonFrames: [PythonFrameKey: Int32] = [:]
    private var kernelFrames: [UInt64: Int32] = [:]
    private let kernelSymbols: KernelSymbols?
    private var statistics = RecordingStatistics()
    /// When sampling started; sample times count from here.
    private var startMonotonic: UInt64 = 0
    private let stopRequested = StopFlag()
    private var signalSources: [DispatchSourceSignal] = []

    public init(options: RecordOptions) throws {
        try Preflight.check()
        self.options = options
        // Before the slow part (loading BPF): a Ctrl-C from now on ends the recording cleanly.
        signalSources = Self.installSignalHandlers(setting: stopRequested)
        sampler = try Sampler(
            ringBufferBytes: options.ringBufferBytes, collectStatistics: options.bpfStatistics,
            kernelStacks: !options.pythonOnly)
        kernelSymbols = options.pythonOnly ? nil : try KernelSymbols.read()
        profile = Profile(sampleRate: options.rate, startDate: 0)
    }

    /// Records until the duration elapses, SIGINT/SIGTERM arrives or every target has exited, and
    /// returns what was collected, whatever ended it.
    public func run() throws -> (Profile, RecordingStatistics) {
        defer { signalSources.forEach { $0.cancel() } }
        let runningTargets = try registerRunningTargets()

        startMonotonic = Self.monotonicNow()
        profile.startDate = Date().timeIntervalSince1970
        try sampler.start(frequency: options.rate) { [weak self] record in self?.handle(record) }
        defer { sampler.stop() }

        let deadline = options.duration.map { Self.monotonicNow() + UInt64($0 * 1e9) }
        func timeToStop() -> Bool {
            stopRequested.isSet || deadline.map { Self.monotonicNow() >= $0 } ?? false
        }
        if case .command(let arguments) = options.target {
            try recordCommand(arguments, until: timeToStop)
        } else {
            while !timeToStop() && runningTargets.contains(where: { kill($0, 0) == 0 || errno != ESRCH }) {
                usleep(50_000)
            }
        }
        sampler.stop()
        return finish()
    }

    /// For --pid and --all: locates and registers the processes, returns their pids.
    private func registerRunningTargets() throws -> [Int32] {
        switch options.target {
        case .pids(let ids):
            // A thread id (as top shows them) stands for its process: the BPF program keys by process.
            var pids: [Int32] = []
            for pid in ids.map(ProcessScanner.threadGroup(of:)) where !pids.contains(pid) { pids.append(pid) }
            for pid in pids { try register(try InterpreterLocator.locate(pid: pid)) }
            return pids
        case .all:
            let (found, skipped) = ProcessScanner.pythonProcesses()
            statistics.skippedProcesses = skipped
            guard !found.isEmpty else {
                throw RecordError.noTargets("no running Python process found (--all looks at processes running now)")
            }
            for interpreter in found { try register(interpreter) }
            return found.map(\.pid)
        case .command:
            return []
        }
    }

    /// Launches the command and records it until it exits (or `timeToStop`). Its interpreter is located
    /// as soon as the dynamic loader has mapped it, polled every 2 ms until then.
    private func recordCommand(_ arguments: [String], until timeToStop: () -> Bool) throws {
        let child = try LaunchedCommand(arguments: arguments)
        var located = false
        var unusable: Error?
        while !timeToStop() {
            if !located && unusable == nil {
                do {
                    try register(try InterpreterLocator.locate(pid: child.pid))
                    located = true
                } catch let error as InterpreterError {
                    switch error {
                    case .unsupportedVersion, .unknownVersion:
                        // That will not change: let the command run, report at its end.
                        unusable = error
                    case .notPython, .processGone, .unreadable:
                        // Not yet (exec, the dynamic loader at work) or exiting: poll() will tell.
                        break
                    }
                }
            }
            if let status = child.poll() {
                statistics.commandExitStatus = status
                break
            }
            usleep(located || unusable != nil ? 50_000 : 2_000)
        }
        if !located, statistics.commandExitStatus != nil {
            throw unusable ?? RecordError.neverPython(command: arguments.joined(separator: " "))
        }
    }

    private func register(_ interpreter: PythonInterpreter) throws {
        try sampler.add(interpreter)
        let commandLine = ProcessScanner.commandLine(pid: interpreter.pid)
        lock.lock()
        defer { lock.unlock() }
        symbolizers[interpreter.pid] = PythonSymbolizer(interpreter: interpreter)
        statistics.interpreters.append(interpreter)
        profile.processes[interpreter.pid] = ProfiledProcess(
            pid: interpreter.pid, commandLine: commandLine, pythonVersion: interpreter.version.description)
    }

    /// Runs on the drain thread for every ring buffer record: header, kernel return addresses, Python
    /// frames (see struct sample in bpf/pybpfprof.h).
    private func handle(_ record: UnsafeRawBufferPointer) {
        let headerSize = MemoryLayout<sample_header>.size
        let frameSize = MemoryLayout<py_frame>.size
        guard record.count >= headerSize else { return }
        let header = record.loadUnaligned(as: sample_header.self)
        let kernelCount = min(Int(header.kernel_frame_count), (record.count - headerSize) / 8)
        let pythonStart = headerSize + kernelCount * 8
        let frameCount = min(Int(header.py_frame_count), (record.count - pythonStart) / frameSize)
        let pid = Int32(bitPattern: header.pid)

        lock.lock()
        defer { lock.unlock() }
        guard let symbolizer = symbolizers[pid] else { return }

        var stack: [Int32] = []
        stack.reserveCapacity(frameCount + kernelCount + 1)
        if header.flags & UInt16(SAMPLE_TRUNCATED.rawValue) != 0 { stack.append(profile.intern(.truncated)) }
        // Frames arrive leaf first; the profile keeps stacks root first.
        for index in stride(from: frameCount - 1, through: 0, by: -1) {
            let frame = record.loadUnaligned(fromByteOffset: pythonStart + index * frameSize, as: py_frame.self)
            let key = PythonFrameKey(pid: pid, code: frame.code, checksum: frame.checksum, instruction: frame.instr)
            if let known = pythonFrames[key] {
                stack.append(known)
                continue
            }
            switch symbolizer.frame(frame) {
            case .success(let resolved):
                let interned = profile.intern(resolved)
                pythonFrames[key] = interned
                stack.append(interned)
            case .failure(let reason):
                statistics.unresolvedFrames["\(reason)", default: 0] += 1
                stack.append(profile.intern(Frame(kind: .marker, name: "[unknown code 0x\(String(frame.code, radix: 16))]")))
            }
        }
        if frameCount == 0 && stack.isEmpty { stack.append(profile.intern(.noPython)) }
        // The kernel was running on the thread's behalf below its innermost Python frame.
        for index in stride(from: kernelCount - 1, through: 0, by: -1) {
            let address = record.loadUnaligned(fromByteOffset: headerSize + index * 8, as: UInt64.self)
            if let known = kernelFrames[address] {
                stack.append(known)
            } else {
                let interned = profile.intern(kernelFrame(address))
                kernelFrames[address] = interned
                stack.append(interned)
            }
        }

        let threadName = withUnsafeBytes(of: header.comm) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        profile.samples.append(Sample(
            time: header.time_ns >= startMonotonic ? header.time_ns - startMonotonic : 0,
            cpu: header.cpu, pid: pid, tid: Int32(bitPattern: header.tid),
            threadName: profile.intern(threadName: threadName), stack: profile.intern(stack: stack)
        ))
    }

    private func kernelFrame(_ address: UInt64) -> Frame {
        guard let (symbol, _) = kernelSymbols?.symbolize(address) else {
            return Frame(kind: .kernel, name: "[kernel 0x\(String(address, radix: 16))]")
        }
        return Frame(kind: .kernel, name: symbol.name, file: symbol.module)
    }

    private func finish() -> (Profile, RecordingStatistics) {
        let counters = sampler.readCounters()
        lock.lock()
        defer { lock.unlock() }
        for (counter, value) in counters {
            let (name, isError) = Self.describe(counter)
            statistics.counters[name] = value
            if isError && value > 0 { statistics.errorCounters[name] = value }
        }
        statistics.lostRecords = counters[COUNTER_RINGBUF_FULL] ?? 0
        // Tail calls run inside the invocation that started them and are accounted to on_sample; the
        // walk's own figures are added in case a kernel accounts them separately. Divided by profiled
        // samples, so the figure includes the cheap early exits on every other process's ticks.
        let profiledSamples = (counters[COUNTER_SENT] ?? 0) + statistics.lostRecords
        if let (sample, walk) = sampler.programStatistics(), profiledSamples > 0 {
            statistics.bpfInvocations = sample.runCount
            statistics.bpfNanosecondsPerSample =
                Double(sample.runTimeNanoseconds + walk.runTimeNanoseconds) / Double(profiledSamples)
        }
        profile.duration = Self.monotonicNow() - startMonotonic
        profile.samples.sort { $0.time < $1.time }
        return (profile, statistics)
    }

    /// A counter's name in the summary, and whether it counts errors rather than normal events.
    static func describe(_ counter: counter) -> (name: String, isError: Bool) {
        switch counter {
        case COUNTER_SENT: return ("sent", false)
        case COUNTER_RINGBUF_FULL: return ("ring buffer full", true)
        case COUNTER_NO_THREAD_STATE: return ("thread not in interpreter's thread list", true)
        case COUNTER_TSTATE_CACHE_MISS: return ("thread state cache misses", false)
        case COUNTER_TSTATE_STALE: return ("stale thread state cache entries", false)
        case COUNTER_NO_INTERPRETER: return ("interpreter not running (starting or finalizing)", false)
        case COUNTER_PROCESS_EXITING: return ("samples of exiting processes", false)
        case COUNTER_READ_INTERP: return ("interpreter state unreadable", true)
        case COUNTER_READ_FRAME: return ("frame unreadable", true)
        case COUNTER_READ_CODE: return ("code object unreadable", true)
        case COUNTER_TRUNCATED: return ("stacks truncated", true)
        case COUNTER_TAIL_CALL_FAILED: return ("tail calls failed", true)
        default: return ("counter \(counter.rawValue)", true)
        }
    }

    private static func installSignalHandlers(setting flag: StopFlag) -> [DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { flag.set() }
            source.resume()
            return source
        }
    }

    static func monotonicNow() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

/// A flag set from a signal handler's queue and read by the recording loop.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }
}

/// One sampled Python frame as the BPF program sent it, in one process.
private struct PythonFrameKey: Hashable {
    var pid: Int32
    var code: UInt64
    var checksum: UInt32
    var instruction: UInt32
}
