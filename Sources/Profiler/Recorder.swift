import BPFKit
import CBPF
import CPython
import Foundation
import Glibc
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
    /// Samples by how their Python frames were spliced into the native stack.
    public var splicing: [String: Int] = [:]
    /// Processes forgotten after they exited (or exec'ed another program) during the recording.
    public var exitedProcesses = 0
    /// Samples with a native stack, and those whose native unwind reached the thread's entry.
    public var nativeStacks = 0
    public var nativeStacksComplete = 0
    /// Native unwind tables: files loaded, rows, bytes used of the bound, and files left without one.
    public var unwindTables: UnwindTableReport?
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
    /// Guards `profile`, `decoders`, `statistics` and the per-process state, shared by the drain thread and the
    /// caller.
    private let lock = NSLock()
    private var profile: Profile
    /// The process instance (index into `profile.processes`) each registered pid's samples belong to. A pid is
    /// forgotten when its process exits or execs, so a pid the kernel reuses starts another instance.
    private var instances: [Int32: Int32] = [:]
    /// Each profiled process's record decoder: its symbols and frame caches, interning into `profile`.
    private var decoders: [Int32: StackDecoder<Int32>] = [:]
    /// Executable mappings of each process (native recordings only), read by the drain thread.
    private var nativeProcesses: [Int32: NativeProcess] = [:]
    /// The file holding each process's interpreter, as its maps name it.
    private var interpreterFiles: [Int32: String] = [:]
    /// Processes that mapped code the unwinder does not know yet; refreshed by the recording loop.
    private var staleMappings: Set<Int32> = []
    private var lastRefresh: [Int32: UInt64] = [:]
    /// Signalled by the drain thread when the recording loop has work: a process to locate or register, or one
    /// whose maps to re-read. The loop waits on it, so a library loaded later (dlopen) or a new process is
    /// handled at once rather than at the loop's next poll.
    private let loopWakeup = DispatchSemaphore(value: 0)
    /// Native tables are compiled and maps re-read here, one job at a time, while the recording loop goes on
    /// registering new processes' Python stacks: compiling the tables of a new binary takes long enough to miss a
    /// short process queued behind it. The only thread that uses `unwindTables` once sampling has started.
    private let nativeQueue = DispatchQueue(label: "pybpfprof-native-tables")
    /// Process following (--all, --subprocesses), fed by the BPF program's exec/fork/exit events on the drain
    /// thread and worked off by the recording loop.
    private var followed = ProcessFollowing()
    /// What locating interpreters learned of each file: new processes mostly run binaries seen before.
    private let locatorCache = InterpreterLocator.FileCache()
    /// The interpreter of each registered Python process: a fork's child has the same one.
    private var interpreters: [Int32: PythonInterpreter] = [:]
    /// On `nativeQueue` only (tables are built there, never on the drain thread).
    private let unwindTables: UnwindTableStore?
    private let kernelSymbols: KernelSymbols?
    private var statistics = RecordingStatistics()
    /// When sampling started; sample times count from here.
    private var startMonotonic: UInt64 = 0
    private let stopRequested = StopFlag()
    /// Called from the recording loop about once a second (the CLI shows it on a terminal).
    public var onProgress: ((RecordingProgress) -> Void)?
    /// Called once sampling has started, with the number of processes registered by then.
    public var onStarted: ((Int) -> Void)?
    private var lastProgress: UInt64 = 0
    private var signalSources: [DispatchSourceSignal] = []
    /// What the running kernel offers, probed at start; it decided how the BPF program was loaded.
    public let kernelFeatures: KernelFeatures

    public init(options: RecordOptions) throws {
        let probed = try Preflight.check()
        let features = options.oldestKernelMode ? probed.asOldestSupported : probed
        kernelFeatures = features
        self.options = options
        // Before the slow part (loading BPF): a Ctrl-C from now on ends the recording cleanly.
        signalSources = Self.installSignalHandlers(setting: stopRequested)
        sampler = try Sampler(
            features: features, ringBufferBytes: options.ringBufferBytes, collectStatistics: options.bpfStatistics,
            kernelStacks: !options.pythonOnly, nativeStacks: !options.pythonOnly, unwindTableBytes: options.unwindTableBytes,
            followProcesses: options.followsProcesses, cgroupFD: options.cgroup?.fd)
        unwindTables = options.pythonOnly ? nil : UnwindTableStore(rows: sampler.unwindRows.base, capacity: sampler.unwindRowCapacity)
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
        onStarted?(withProfile { $0.processes.count })

        let deadline = options.duration.map { Self.monotonicNow() + UInt64($0 * 1e9) }
        func timeToStop() -> Bool {
            stopRequested.isSet || deadline.map { Self.monotonicNow() >= $0 } ?? false
        }
        if case .command(let arguments) = options.target {
            try recordCommand(arguments, until: timeToStop)
        } else {
            func targetsLeft() -> Bool {
                // --all and --cgroup run until stopped: processes may start at any time.
                if options.takesEveryNewProgram { return true }
                lock.lock()
                let tracked = followed.tree
                lock.unlock()
                return (runningTargets + tracked).contains { kill($0, 0) == 0 || errno != ESRCH }
            }
            while !timeToStop() && targetsLeft() {
                refreshStaleMappings()
                followNewProcesses()
                reportProgressIfDue()
                waitForWork()
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
            for pid in pids {
                do {
                    try register(try InterpreterLocator.locate(pid: pid))
                } catch InterpreterError.notPython where options.allowNonPython && !options.pythonOnly {
                    try registerNative(pid: pid)
                } catch InterpreterError.notPython where options.subprocesses {
                    // A launcher (a shell, a supervisor): its Python children are what --subprocesses is for.
                }
                if options.subprocesses { followed.tree.insert(pid) }
            }
            return pids
        case .all:
            // Those running now; the ones that start later come through exec events.
            let (found, skipped) = ProcessScanner.pythonProcesses(cache: locatorCache)
            statistics.skippedProcesses = skipped
            for interpreter in found { try register(interpreter) }
            return found.map(\.pid)
        case .cgroup(let directory):
            // As --all, among the processes of the cgroup (checked before their files are read).
            let (found, skipped) = ProcessScanner.pythonProcesses(cache: locatorCache) { Containers.isProcess($0, under: directory) }
            statistics.skippedProcesses = skipped
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
        if options.subprocesses {
            lock.lock()
            followed.tree.insert(child.pid)
            lock.unlock()
        }
        var located = false
        var unusable: Error?
        while !timeToStop() {
            if !located && unusable == nil {
                do {
                    let interpreter = try InterpreterLocator.locate(pid: child.pid, cache: locatorCache)
                    if let instance = try registerPython(interpreter) { loadNativeStacksLater(of: interpreter, instance: instance) }
                    located = true
                } catch let error as InterpreterError {
                    switch error {
                    case .unsupportedVersion, .unknownVersion, .freeThreaded, .unknownLayout:
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
            refreshStaleMappings()
            followNewProcesses()
            reportProgressIfDue()
            if located || unusable != nil { waitForWork() } else { usleep(2_000) }
        }
        // With --subprocesses the command may be a launcher whose children ran Python.
        if !located, statistics.commandExitStatus != nil, statistics.interpreters.isEmpty {
            throw unusable ?? RecordError.neverPython(command: arguments.joined(separator: " "))
        }
    }

    /// Registers a process found before sampling starts, native tables included: its first samples are whole.
    private func register(_ interpreter: PythonInterpreter) throws {
        guard let instance = try registerPython(interpreter) else { return }
        nativeQueue.sync { loadNativeStacks(of: interpreter, instance: instance) }
    }

    /// For a process registered while sampling: its native tables load on `nativeQueue`, its samples are marked until
    /// then.
    private func loadNativeStacksLater(of interpreter: PythonInterpreter, instance: Int32) {
        guard unwindTables != nil else { return }
        nativeQueue.async { [self] in loadNativeStacks(of: interpreter, instance: instance) }
    }

    /// Makes the interpreter's process a target: its Python stacks are sampled from here on. Returns its process
    /// instance, or nil when `isCurrent` (asked under the lock, which the exec and exit events take too) says the
    /// registration is stale: a forked child that exec'ed another program before it was registered.
    private func registerPython(_ interpreter: PythonInterpreter, isCurrent: () -> Bool = { true }) throws -> Int32? {
        let pid = interpreter.pid
        let commandLine = ProcessScanner.commandLine(pid: pid)
        let containerID = Containers.containerID(pid: pid) ?? ""
        lock.lock()
        defer { lock.unlock() }
        guard isCurrent() else { return nil }
        try sampler.add(interpreter)
        interpreters[pid] = interpreter
        decoders[pid] = makeDecoder(interpreter: interpreter)
        statistics.interpreters.append(interpreter)
        let instance = profile.add(ProfiledProcess(
            pid: pid, commandLine: commandLine, pythonVersion: interpreter.version.description, containerID: containerID))
        instances[pid] = instance
        return instance
    }

    /// Native stacks for a registered process, once the unwind tables of its files are loaded (compiling them takes
    /// a while for a large library): until then its samples carry Python and kernel frames only. Kept only if the
    /// process is still that instance (it may have exited or exec'ed meanwhile).
    private func loadNativeStacks(of interpreter: PythonInterpreter, instance: Int32) {
        guard let unwindTables else { return }
        let pid = interpreter.pid
        do {
            let native = try NativeProcess(pid: pid, interpreterFile: interpreter.binaryPath, store: unwindTables)
            lock.lock()
            defer { lock.unlock() }
            guard instances[pid] == instance else { return }
            try sampler.setMappings(pid: pid, native.bpfValue())
            nativeProcesses[pid] = native
            interpreterFiles[pid] = interpreter.binaryPath
            decoders[pid]?.native = native
        } catch {
            // Exited meanwhile, or its maps are unreadable: its samples keep their Python and kernel frames.
            lock.lock()
            statistics.skippedProcesses.append("native stacks of process \(pid): \(error)")
            lock.unlock()
        }
    }

    /// Ends the recording as SIGINT would: `run()` returns what was collected.
    public func stop() {
        stopRequested.set()
    }

    /// Reads the profile recorded so far, under the lock the drain thread takes: for live views, which must not
    /// keep it long.
    public func withProfile<T>(_ body: (Profile) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(profile)
    }

    /// Like `withProfile`, then forgets the samples `body` was given: a live view that keeps its own counts takes
    /// them a refresh at a time, so that a long session does not keep every sample. `run()` returns those not taken.
    public func withProfileTakingSamples<T>(_ body: (Profile) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        let result = body(profile)
        profile.samples.removeAll(keepingCapacity: true)
        return result
    }

    private func reportProgressIfDue() {
        guard let onProgress else { return }
        let now = Self.monotonicNow()
        guard now - lastProgress >= 1_000_000_000 else { return }
        lastProgress = now
        lock.lock()
        let progress = RecordingProgress(
            seconds: Double(now - startMonotonic) / 1e9, samples: profile.samples.count, processes: profile.processes.count)
        lock.unlock()
        onProgress(progress)
    }

    /// Under the lock.
    private func makeDecoder(interpreter: PythonInterpreter?) -> StackDecoder<Int32> {
        StackDecoder(interpreter: interpreter, native: nil, kernelSymbols: kernelSymbols,
                     showInterpreterFrames: options.showInterpreterFrames) { [unowned self] in self.profile.intern($0) }
    }

    /// A process that does not run Python: native and kernel stacks only.
    private func registerNative(pid: Int32) throws {
        guard let unwindTables else { return }
        let native = try nativeQueue.sync { try NativeProcess(pid: pid, interpreterFile: nil, store: unwindTables) }
        try sampler.setMappings(pid: pid, native.bpfValue())
        let process = ProfiledProcess(pid: pid, commandLine: ProcessScanner.commandLine(pid: pid), pythonVersion: "",
                                      containerID: Containers.containerID(pid: pid) ?? "")
        lock.lock()
        nativeProcesses[pid] = native
        decoders[pid] = makeDecoder(interpreter: nil)
        decoders[pid]?.native = native
        instances[pid] = profile.add(process)
        lock.unlock()
        try sampler.addNative(pid: pid)
    }

    /// Drain thread, under the lock: a process event, in ring-buffer order with the samples.
    private func handleProcessEvent(_ event: sample_header) {
        let pid = Int32(bitPattern: event.pid)
        switch UInt32(event.record_type) {
        case RECORD_EXEC.rawValue:
            // A new program in this process: whatever was registered for it is stale, and a fork not registered yet
            // must not be (it would be read with its parent's interpreter).
            forget(pid)
            followed.forks.removeAll { $0.child == pid }
            // With --cgroup the BPF program reports only the execs of the cgroup's tasks.
            if options.takesEveryNewProgram || followed.tree.contains(pid) {
                followed.schedule(pid, now: Self.monotonicNow())
                loopWakeup.signal()
            }
        case RECORD_FORK.rawValue:
            let child = Int32(bitPattern: event.tid)
            if options.subprocesses && followed.tree.contains(pid) { followed.tree.insert(child) }
            // A forked Python process runs the same interpreter at the same addresses: register it as is. A
            // process forked before its parent was located (it forked at once) is located itself.
            if let interpreter = interpreters[pid], options.followsProcesses {
                followed.forks.append((interpreter, child))
                loopWakeup.signal()
            } else if followed.tree.contains(child) || followed.pending[pid] != nil {
                followed.schedule(child, now: Self.monotonicNow())
                loopWakeup.signal()
            }
        case RECORD_EXIT.rawValue:
            forget(pid)
            followed.tree.remove(pid)
            followed.pending[pid] = nil
        default:
            break
        }
    }

    /// Drops an exited (or exec'ed) process from the BPF maps and the per-process state; its samples stay.
    /// Under the lock.
    private func forget(_ pid: Int32) {
        guard instances.removeValue(forKey: pid) != nil else { return }
        try? sampler.remove(pid: pid)
        if let decoder = decoders.removeValue(forKey: pid) { collectUnresolved(decoder) }
        interpreters[pid] = nil
        nativeProcesses[pid] = nil
        interpreterFiles[pid] = nil
        staleMappings.remove(pid)
        statistics.exitedProcesses += 1
    }

    /// Recording loop: registers forked Python children, and locates the interpreter of processes that exec'ed,
    /// retrying while the dynamic loader maps libpython (after 1, 2, 4 ... 512 ms, then the process is taken
    /// for something else than Python).
    private func followNewProcesses() {
        guard options.followsProcesses else { return }
        lock.lock()
        let now = Self.monotonicNow()
        // Left queued: an exec event removes its child, and registering takes it (both under the lock).
        let forks = followed.forks
        let due = followed.due(now: now)
        lock.unlock()

        for (parent, child) in forks {
            var interpreter = parent
            interpreter.pid = child
            let inCgroup = isInTargetCgroup(child)
            if let instance = try? registerPython(interpreter, isCurrent: { followed.takeFork(child) && inCgroup }) {
                loadNativeStacksLater(of: interpreter, instance: instance)
            }
        }
        for pid in due {
            guard isInTargetCgroup(pid) else {
                // Moved out of the cgroup since its exec (the BPF program reports only those inside), or gone.
                lock.lock()
                followed.pending[pid] = nil
                lock.unlock()
                continue
            }
            do {
                let interpreter = try InterpreterLocator.locate(pid: pid, cache: locatorCache)
                if let instance = try registerPython(interpreter) { loadNativeStacksLater(of: interpreter, instance: instance) }
                lock.lock()
                followed.pending[pid] = nil
                lock.unlock()
            } catch let error as InterpreterError {
                lock.lock()
                switch error {
                case .notPython:
                    followed.retry(pid, now: now)
                case .processGone:
                    followed.pending[pid] = nil
                case .unsupportedVersion, .unknownVersion, .freeThreaded, .unknownLayout, .unreadable:
                    followed.pending[pid] = nil
                    statistics.skippedProcesses.append("\(error)")
                }
                lock.unlock()
            } catch {
                lock.lock()
                followed.pending[pid] = nil
                statistics.skippedProcesses.append("process \(pid): \(error)")
                lock.unlock()
            }
        }
    }


    /// Whether `pid` is in the cgroup the recording is restricted to; true without one.
    private func isInTargetCgroup(_ pid: Int32) -> Bool {
        options.cgroup.map { Containers.isProcess(pid, under: $0) } ?? true
    }

    /// Waits until the drain thread signals work, the next retry of a process still to locate or the next refresh
    /// of stale maps is due, or 50 ms (the progress line, the duration and the targets' exit are checked then).
    private func waitForWork() {
        let now = Self.monotonicNow()
        lock.lock()
        var wakeAt = now + 50_000_000
        if let due = followed.nextAttempt { wakeAt = min(wakeAt, due) }
        for pid in staleMappings { wakeAt = min(wakeAt, (lastRefresh[pid] ?? 0) + Self.refreshInterval) }
        lock.unlock()
        guard wakeAt > now else { return }
        _ = loopWakeup.wait(timeout: .now() + .nanoseconds(Int(wakeAt - now)))
    }

    /// The least time between two re-reads of one process's maps.
    static let refreshInterval: UInt64 = 200_000_000

    /// Re-reads the maps of processes whose samples reached code in no known mapping (a library loaded after
    /// registration), at most every 200 ms per process, and gives the unwinder the new tables (on `nativeQueue`).
    private func refreshStaleMappings() {
        guard let unwindTables else { return }
        lock.lock()
        let now = Self.monotonicNow()
        let due = staleMappings.filter { now - (lastRefresh[$0] ?? 0) >= Self.refreshInterval }
        staleMappings.subtract(due)
        let current = due.compactMap { pid in nativeProcesses[pid].map { (pid, $0, interpreterFiles[pid]) } }
        for pid in due { lastRefresh[pid] = now }
        lock.unlock()
        guard !current.isEmpty else { return }
        nativeQueue.async { [self] in refresh(current, store: unwindTables) }
    }

    private func refresh(_ processes: [(Int32, NativeProcess, String?)], store unwindTables: UnwindTableStore) {
        for (pid, var native, interpreterFile) in processes {
            guard (try? native.refresh(interpreterFile: interpreterFile, store: unwindTables)) == true else { continue }
            lock.lock()
            // Unless it exited or exec'ed meanwhile (its pid may be another process's by now).
            guard nativeProcesses[pid] != nil else {
                lock.unlock()
                continue
            }
            try? sampler.setMappings(pid: pid, native.bpfValue())
            nativeProcesses[pid] = native
            // Addresses may now belong to other files: the decoder resolves them again.
            decoders[pid]?.native = native
            lock.unlock()
        }
    }

    /// Runs on the drain thread for every ring buffer record: header, kernel return addresses, Python
    /// frames (see struct sample in bpf/pybpfprof.h).
    private func handle(_ record: UnsafeRawBufferPointer) {
        guard record.count >= MemoryLayout<sample_header>.size else { return }
        let header = record.loadUnaligned(as: sample_header.self)
        let pid = Int32(bitPattern: header.pid)

        lock.lock()
        defer { lock.unlock() }
        if header.record_type != UInt16(RECORD_SAMPLE.rawValue) {
            handleProcessEvent(header)
            return
        }
        guard let process = instances[pid], let decoder = decoders[pid], let decoded = decoder.decode(record) else { return }
        if decoded.reachedUnknownMapping, staleMappings.insert(pid).inserted { loopWakeup.signal() }
        let flags = UInt32(header.flags)
        if flags & SAMPLE_NATIVE_NOT_LOADED.rawValue != 0 { statistics.splicing["native tables not loaded yet", default: 0] += 1 }
        if let outcome = decoded.outcome {
            statistics.splicing[Self.describe(outcome), default: 0] += 1
            statistics.nativeStacks += 1
            if flags & SAMPLE_NATIVE_COMPLETE.rawValue != 0 { statistics.nativeStacksComplete += 1 }
        }
        profile.samples.append(Sample(
            time: header.time_ns >= startMonotonic ? header.time_ns - startMonotonic : 0,
            cpu: header.cpu, process: process, tid: Int32(bitPattern: header.tid),
            threadName: profile.intern(threadName: decoded.threadName), stack: profile.intern(stack: decoded.frames)
        ))
    }

    /// Adds a decoder's unresolved code objects to the statistics (when its process is forgotten, and at the end).
    private func collectUnresolved(_ decoder: StackDecoder<Int32>) {
        for (reason, count) in decoder.unresolvedFrames { statistics.unresolvedFrames[reason, default: 0] += count }
    }

    static func describe(_ outcome: StackSplicer.Outcome) -> String {
        switch outcome {
        case .spliced: return "spliced"
        case .pythonOnly: return "no native frames"
        case .nativeIncomplete: return "native unwind incomplete"
        case .mismatch: return "python/native mismatch"
        }
    }

    private func finish() -> (Profile, RecordingStatistics) {
        // Tables still compiling: their files count in the report.
        nativeQueue.sync {}
        let counters = sampler.readCounters()
        lock.lock()
        defer { lock.unlock() }
        decoders.values.forEach(collectUnresolved)
        for (counter, value) in counters {
            let (name, isError) = Self.describe(counter)
            statistics.counters[name] = value
            if isError && value > 0 { statistics.errorCounters[name] = value }
        }
        statistics.lostRecords = counters[COUNTER_RINGBUF_FULL] ?? 0
        if let unwindTables {
            statistics.unwindTables = UnwindTableReport(
                files: unwindTables.filesLoaded, rows: unwindTables.usedRows, bytes: unwindTables.usedBytes,
                capacityBytes: unwindTables.capacityBytes, unsupportedRows: unwindTables.unsupportedRows,
                filesWithoutTable: unwindTables.filesWithoutTable)
        }
        // Tail calls run inside the invocation that started them and are accounted to on_sample. Divided by
        // profiled samples, so the figure includes the cheap early exits on every other process's ticks.
        let profiledSamples = (counters[COUNTER_SENT] ?? 0) + statistics.lostRecords
        if let sample = sampler.programStatistics(), profiledSamples > 0 {
            statistics.bpfInvocations = sample.runCount
            statistics.bpfNanosecondsPerSample = Double(sample.runTimeNanoseconds) / Double(profiledSamples)
        }
        statistics.kernel = kernelFeatures.summary
        statistics.verifiedInstructions = sampler.verifiedInstructions
        profile.duration = Self.monotonicNow() - startMonotonic
        profile.samples.sort { $0.time < $1.time }
        return (profile, statistics)
    }

    /// A counter's name in the summary, and whether it counts errors rather than normal events.
    static func describe(_ counter: counter) -> (name: String, isError: Bool) {
        switch counter {
        case COUNTER_SENT: return ("sent", false)
        case COUNTER_RINGBUF_FULL: return ("ring buffer full", true)
        // Threads that never ran Python (a BLAS pool, a C library's workers): their native stacks are sampled.
        case COUNTER_NO_THREAD_STATE: return ("samples of threads without a Python thread state", false)
        case COUNTER_TSTATE_CACHE_MISS: return ("thread state cache misses", false)
        case COUNTER_TSTATE_STALE: return ("stale thread state cache entries", false)
        case COUNTER_NO_INTERPRETER: return ("interpreter not running (starting or finalizing)", false)
        case COUNTER_PROCESS_EXITING: return ("samples of exiting processes", false)
        case COUNTER_READ_INTERP: return ("interpreter state unreadable", true)
        case COUNTER_READ_FRAME: return ("frame unreadable", true)
        case COUNTER_READ_CODE: return ("code object unreadable", true)
        case COUNTER_TRUNCATED: return ("stacks truncated", true)
        case COUNTER_TAIL_CALL_FAILED: return ("tail calls failed", true)
        case COUNTER_NATIVE_COMPLETE: return ("native unwinds complete", false)
        case COUNTER_NATIVE_NO_MAPPINGS: return ("native unwinds before the tables were loaded", false)
        case COUNTER_NATIVE_UNKNOWN_MAPPING: return ("native unwinds stopped: address in no known mapping", true)
        case COUNTER_NATIVE_FRAME_POINTER: return ("native frames by frame pointer", false)
        case COUNTER_NATIVE_UNSUPPORTED: return ("native unwinds stopped: unsupported rule", true)
        case COUNTER_NATIVE_READ_ERROR: return ("native unwinds stopped: stack unreadable", true)
        case COUNTER_NATIVE_BAD_FRAME: return ("native unwinds stopped: frame not above its callee", true)
        case COUNTER_NATIVE_TRUNCATED: return ("native stacks truncated", true)
        case COUNTER_NATIVE_NO_REGISTERS: return ("native unwinds without user registers", true)
        case COUNTER_EVENTS_LOST: return ("process events lost", true)
        case COUNTER_CGROUP_CHECK_FAILED: return ("cgroup checks failed", true)
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

/// A flag set from a signal handler's queue and read by a loop (the recording's, top's refreshes).
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    public init() {}

    public var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    public func set() {
        lock.lock()
        value = true
        lock.unlock()
    }

    /// Whether it was set, clearing it.
    public func take() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let was = value
        value = false
        return was
    }
}

/// What process following knows: the tree under `--subprocesses` roots, forked Python children to register, and
/// exec'ed processes whose interpreter is still to be located. (The registered processes are the Recorder's
/// `instances`.)
struct ProcessFollowing {
    var tree: Set<Int32> = []
    /// Forked children of registered Python processes, to register with their parent's interpreter.
    var forks: [(parent: PythonInterpreter, child: Int32)] = []
    /// pid -> (next attempt, delay before the one after), in nanoseconds.
    var pending: [Int32: (next: UInt64, delay: UInt64)] = [:]

    static let firstDelay: UInt64 = 1_000_000
    static let lastDelay: UInt64 = 512_000_000

    mutating func schedule(_ pid: Int32, now: UInt64) {
        pending[pid] = (now, Self.firstDelay)
    }

    /// Removes a queued fork; false if it is no longer queued (it exec'ed, or was taken already).
    mutating func takeFork(_ child: Int32) -> Bool {
        guard let index = forks.firstIndex(where: { $0.child == child }) else { return false }
        forks.remove(at: index)
        return true
    }

    /// When the next attempt is due, if any process is waiting for one.
    var nextAttempt: UInt64? { pending.values.map(\.next).min() }

    /// The processes whose next attempt is due, the longest due first (a backlog is worked off in order).
    func due(now: UInt64) -> [Int32] {
        pending.filter { $0.value.next <= now }.sorted { $0.value.next < $1.value.next }.map(\.key)
    }

    /// Not Python yet: the loader may still be mapping libpython. Tries again later, doubling the delay; gives up
    /// after the last one.
    mutating func retry(_ pid: Int32, now: UInt64) {
        guard let (_, delay) = pending[pid], delay <= Self.lastDelay else {
            pending[pid] = nil
            return
        }
        pending[pid] = (now + delay, delay * 2)
    }
}
