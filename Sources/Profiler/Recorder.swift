import BPFKit
import CBPF
import CPython
import Dispatch
import FoundationEssentials
import Glibc
import Native
import ProfileModel

/// One recording: finds the targets' interpreters, runs the sampler, and turns records into a Profile.
///
/// Three threads share it. The recording loop (the caller of `run`) registers processes: those running at the start,
/// then those that start later (`ProcessFollowing`). The drain thread receives the records: samples, decoded into the
/// profile, and process events (exec, fork, exit), which update the process table. The `NativeTableLoader`'s queue
/// compiles unwind tables. `lock` guards the process table, process following and the registration statistics;
/// `profileLock` the profile. The drain thread holds neither while it decodes a sample (which reads the target's code
/// objects), so a slow target never holds up registration, `top` or the progress line. A live view (`top`) or a rotating
/// recording (`record --rotate`) takes samples from yet another thread, under `profileLock`.
public final class Recorder {
    private let options: RecordOptions
    private let sampler: Sampler
    private let lock = Lock()
    /// Every registered process, one state each (under `lock`).
    private var table = ProcessTable()
    /// Process following (--all, --subprocesses), fed by the BPF program's exec/fork/exit events on the drain
    /// thread and worked off by the recording loop (under `lock`).
    private var followed = ProcessFollowing()
    /// What registration and following learned (under `lock`); the drain thread's own counts are in `intake`.
    private var statistics = RecordingStatistics()
    private let profileLock = Lock()
    /// What was recorded (under `profileLock`).
    private var profile: Profile
    /// Set by `finish()` (under `profileLock`): the samples not taken are in the profile `run()` returns, and
    /// `takeSamples` hands out no more.
    private var finished = false
    /// How many samples `takeSamples` and `withProfileTakingSamples` handed out (under `profileLock`): the progress line
    /// counts the whole recording.
    private var samplesTaken = 0
    /// The drain thread's counts; read once sampling has stopped.
    private var intake = IntakeStatistics()
    /// Signalled by the drain thread when the recording loop has work: a process to locate or register, or one
    /// whose maps to re-read. The loop waits on it, so a library loaded later (dlopen) or a new process is
    /// handled at once rather than at the loop's next poll.
    private let loopWakeup = DispatchSemaphore(value: 0)
    /// What locating interpreters learned of each file: new processes mostly run binaries seen before.
    private let locatorCache: InterpreterLocator.FileCache
    /// --pid: each process (a thread id stands for its process), located in `init` while the BPF object loads.
    private let locatingPids: BackgroundResult<[(pid: Int32, interpreter: Result<PythonInterpreter, Error>)]>?
    /// nil when native stacks are not collected.
    private let nativeTables: NativeTableLoader?
    private let kernelSymbols: KernelSymbolsSource?
    /// Names frames that no symbol named from debug files (debuginfod, `--debug-dir`) when the recording ends.
    private let lateFrameNamer: LateFrameNamer
    /// When sampling started; sample times count from here.
    private var startMonotonic: UInt64 = 0
    private let stopRequested = StopFlag()
    /// Called from the recording loop about once a second (the CLI shows it on a terminal).
    public var onProgress: ((RecordingProgress) -> Void)?
    /// Called once sampling has started and the kernel's symbols are read, with the number of processes registered by
    /// then.
    public var onStarted: ((Int) -> Void)?
    /// Called once, from the recording loop after `onStarted`, when the native unwinder and the native tables of the
    /// processes registered at the start are loaded (their samples marked "not loaded yet" until then), with how many
    /// processes there were and the nanoseconds since sampling started. Not called when there were none (a launched
    /// command, --python-only).
    public var onNativeStacksReady: ((Int, UInt64) -> Void)?
    /// The processes registered at the start whose native tables are loading, and how many of them are still pending
    /// (under `lock`); `onNativeStacksReady` is called once when none is.
    private var startingTables = (count: 0, pending: 0, reported: false)
    /// Loading the native unwinder after sampling has started (when attaching to running processes, see
    /// `SamplerProgram`); nil when it was loaded with the rest.
    private var nativeStageLoad: BackgroundResult<Void>?
    private let defersNativeStage: Bool
    private var lastProgress: UInt64 = 0
    /// Whether `onStarted` was called (by the recording loop).
    private var announcedStart = false
    private var signalSources: [DispatchSourceSignal] = []
    /// What the running kernel offers, probed at start; it decided how the BPF program was loaded.
    public let kernelFeatures: KernelFeatures

    /// Counted by the drain thread, one sample at a time.
    private struct IntakeStatistics {
        var splicing: [SpliceOutcome: Int] = [:]
        var nativeTablesNotLoaded = 0
        var nativeStacks = 0
        var nativeStacksComplete = 0
        /// Python frames whose code object could not be resolved, by reason, of the processes forgotten so far.
        var unresolvedFrames: [String: Int] = [:]

        mutating func collectUnresolved(_ decoder: StackDecoder<Int32>) {
            for (reason, count) in decoder.unresolvedFrames { unresolvedFrames[reason, default: 0] += count }
        }
    }

    public init(options: RecordOptions) throws {
        let probed = try Preflight.check()
        let features = options.oldestKernelMode ? probed.asOldestSupported : probed
        kernelFeatures = features
        self.options = options
        // Before the slow part (loading BPF): a Ctrl-C from now on ends the recording cleanly.
        signalSources = Self.installSignalHandlers(setting: stopRequested)
        // Attaching to running processes, their Python stacks are sampled before the native unwinder is verified (most
        // of the load); a launched command starts once everything is loaded, so its first samples have native frames.
        if case .command = options.target { defersNativeStage = false } else { defersNativeStage = !options.pythonOnly }
        // Read while the BPF object loads: each takes tens of milliseconds, and sampling needs both. So does locating
        // the --pid targets: their files' symbols read (25 ms beside a target busy on every CPU). --all and --cgroup scan
        // /proc in `run`, not earlier: a process that starts between the scan and the exec hook's attachment is missed.
        let locatorCache = InterpreterLocator.FileCache()
        self.locatorCache = locatorCache
        if case .pids(let ids) = options.target {
            locatingPids = BackgroundResult {
                // A thread id (as top shows them) stands for its process: the BPF program keys by process.
                var pids: [Int32] = []
                for pid in ids.map(ProcessScanner.threadGroup(of:)) where !pids.contains(pid) { pids.append(pid) }
                return pids.map { pid in (pid, Result { try InterpreterLocator.locate(pid: pid, cache: locatorCache) }) }
            }
        } else {
            locatingPids = nil
        }
        // Sampling does not wait for the kernel's symbols when attaching (see KernelSymbolsSource); a launched command
        // starts once they are read, so that it never runs before a failure to read them is known.
        kernelSymbols = options.pythonOnly ? nil
            : KernelSymbolsSource({ try KernelSymbolsCache.read(cachingIn: options.tableCacheDirectory) }, then: { [loopWakeup] in loopWakeup.signal() })
        sampler = try Sampler(
            features: features, ringBufferBytes: options.ringBufferBytes, collectStatistics: options.bpfStatistics,
            kernelStacks: !options.pythonOnly, nativeStacks: !options.pythonOnly, unwindTableBytes: options.unwindTableBytes,
            followProcesses: options.followsProcesses, cgroupFD: options.cgroup?.fd,
            offCPUPeriod: options.mode.hasIntervals ? UInt64(1_000_000_000 / max(options.rate, 1)) : nil,
            samplesOnCPU: options.mode != .offcpu, gilOnly: options.mode == .gil, deferNativeStage: defersNativeStage,
            kernelTypes: KernelTypes.load(cachingIn: options.tableCacheDirectory))
        nativeTables = options.pythonOnly ? nil
            : NativeTableLoader(store: UnwindTableStore(
                rows: sampler.unwindRows.base, capacity: sampler.unwindRowCapacity, debugDirectories: options.debugDirectories,
                cache: UnwindTableCache.inDirectory(options.tableCacheDirectory)))
        if case .command = options.target { try kernelSymbols?.wait() }
        // The directories were already searched when each file's symbols were read: debuginfod is what is left.
        lateFrameNamer = LateFrameNamer(debugDirectories: [], debuginfod: options.pythonOnly ? nil : options.debuginfod)
        profile = Profile(sampleRate: options.rate, startDate: 0)
        profile.mode = options.mode
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
        if defersNativeStage {
            nativeStageLoad = BackgroundResult({ [sampler] in try sampler.loadNativeStage() },
                                               then: { [loopWakeup] in loopWakeup.signal() })
        }
        try announceStartWhenReady()
        reportNativeStacksReadyIfDue()

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
                let tracked = lock.withLock { followed.tree }
                return (runningTargets + tracked).contains { kill($0, 0) == 0 || errno != ESRCH }
            }
            while !timeToStop() && targetsLeft() {
                try announceStartWhenReady()
                reportNativeStacksReadyIfDue()
                refreshStaleMappings()
                followNewProcesses()
                reportProgressIfDue()
                waitForWork()
            }
            // Ended before they were read (a short --duration): the profile names kernel frames, or the error says why not.
            try kernelSymbols?.wait()
        }
        sampler.stop()
        return finish()
    }

    /// For --pid and --all: locates and registers the processes, returns their pids.
    private func registerRunningTargets() throws -> [Int32] {
        switch options.target {
        case .pids:
            let located = try locatingPids!.value()
            for (pid, interpreter) in located {
                do {
                    try register(try interpreter.get())
                } catch InterpreterError.notPython where options.allowNonPython && !options.pythonOnly {
                    try registerNative(pid: pid)
                } catch InterpreterError.notPython where options.subprocesses {
                    // A launcher (a shell, a supervisor): its Python children are what --subprocesses is for.
                }
                lock.withLock { followed.name(pid, subprocesses: options.subprocesses) }
            }
            return located.map(\.pid)
        case .all:
            // Those running now; the ones that start later come through exec events.
            let (found, skipped) = ProcessScanner.pythonProcesses(cache: locatorCache)
            lock.withLock { skipped.forEach { statistics.skip($0) } }
            for interpreter in found { try register(interpreter) }
            return found.map(\.pid)
        case .cgroup(let directory):
            // As --all, among the processes of the cgroup (checked before their files are read).
            let (found, skipped) = ProcessScanner.pythonProcesses(cache: locatorCache) { Containers.isProcess($0, under: directory) }
            lock.withLock { skipped.forEach { statistics.skip($0) } }
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
        lock.withLock { followed.name(child.pid, subprocesses: options.subprocesses) }
        var located = false
        var unusable: Error?
        var exitStatus: Int32?
        while !timeToStop() {
            if !located && unusable == nil {
                do {
                    let interpreter = try InterpreterLocator.locate(pid: child.pid, cache: locatorCache)
                    if let registration = try registerPython(interpreter) { loadNativeStacksLater(of: interpreter, registration: registration) }
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
                exitStatus = status
                break
            }
            refreshStaleMappings()
            followNewProcesses()
            reportProgressIfDue()
            if located || unusable != nil { waitForWork() } else { usleep(2_000) }
        }
        let registeredPython = lock.withLock {
            statistics.commandExitStatus = exitStatus
            return statistics.registeredPythonProcesses > 0
        }
        // With --subprocesses the command may be a launcher whose children ran Python.
        if !located, exitStatus != nil, !registeredPython {
            throw unusable ?? RecordError.neverPython(command: arguments.joined(separator: " "))
        }
    }

    /// Registers a process found before sampling starts. Its Python stacks are sampled from the start; its native tables
    /// load in the background, first come first served, and its samples are marked until then (`onNativeStacksReady`
    /// says when the last of these processes has them).
    private func register(_ interpreter: PythonInterpreter) throws {
        guard let registration = try registerPython(interpreter), nativeTables != nil else { return }
        lock.withLock {
            startingTables.count += 1
            startingTables.pending += 1
        }
        loadNativeStacksLater(of: interpreter, registration: registration) { [self] in
            lock.withLock { startingTables.pending -= 1 }
            loopWakeup.signal()
        }
    }

    /// Calls `onStarted` once the kernel's symbols are read (at once when they are not collected, or were read before
    /// sampling started). Unreadable ones (kptr_restrict) end the recording with that error, its only line of output,
    /// as they would have before sampling started had it waited for them.
    private func announceStartWhenReady() throws {
        guard !announcedStart else { return }
        if let kernelSymbols {
            if let failure = kernelSymbols.failure { throw failure }
            guard kernelSymbols.isReady else { return }
        }
        announcedStart = true
        onStarted?(lock.withLock { table.count })
    }

    /// Recording loop: calls `onNativeStacksReady` once every process registered at the start has its native tables, and
    /// the native unwinder is loaded.
    private func reportNativeStacksReadyIfDue() {
        guard startMonotonic != 0, announcedStart else { return }
        // And the native unwinder, when it is loaded after the start.
        if let nativeStageLoad {
            guard case .success? = nativeStageLoad.finished else { return }
        }
        let ready: Int? = lock.withLock {
            guard startingTables.count > 0, startingTables.pending == 0, !startingTables.reported else { return nil }
            startingTables.reported = true
            return startingTables.count
        }
        if let ready { onNativeStacksReady?(ready, Self.monotonicNow() - startMonotonic) }
    }

    /// For a process registered while sampling: its native tables load in the background, its samples are marked until
    /// then.
    private func loadNativeStacksLater(of interpreter: PythonInterpreter, registration: UInt64, then done: @escaping () -> Void = {}) {
        let pid = interpreter.pid
        nativeTables?.loadLater(pid: pid, interpreterFile: interpreter.binaryPath) { [self] result in
            do {
                try giveMappings(try result.get(), pid: pid, registration: registration)
            } catch {
                // Exited meanwhile, or its maps are unreadable: its samples keep their Python and kernel frames.
                lock.withLock { statistics.skip("native stacks of process \(pid): \(error)") }
            }
            done()
        }
    }

    /// Native stacks for a registered process, once the unwind tables of its files are loaded. Kept only if the process
    /// is still that registration (it may have exited or exec'ed meanwhile).
    private func giveMappings(_ native: NativeProcess, pid: Int32, registration: UInt64) throws {
        try lock.withLock {
            guard table[pid]?.registration == registration else { return }
            try sampler.setMappings(pid: pid, native.bpfValue())
            _ = table.setNative(native, pid: pid, registration: registration)
        }
    }

    /// Makes the interpreter's process a target: its Python stacks are sampled from here on. Returns its registration,
    /// or nil when `isCurrent` (asked under the lock, which the exec and exit events take too) says the registration
    /// is stale: a forked child that exec'ed another program before it was registered.
    private func registerPython(_ interpreter: PythonInterpreter, isCurrent: () -> Bool = { true }) throws -> UInt64? {
        let pid = interpreter.pid
        let description = ProfiledProcess(
            pid: pid, commandLine: ProcessScanner.commandLine(pid: pid), pythonVersion: interpreter.version.description,
            containerID: Containers.containerID(pid: pid) ?? "")
        let decoder = makeDecoder(interpreter: interpreter)
        // --mode gil keeps the samples of the GIL's holder: a build that does not say who holds it gives none.
        if options.mode == .gil, let reason = interpreter.gilProbeUnavailable { throw RecordError.noGILProbe(reason) }
        return try lock.withLock {
            guard isCurrent() else { return nil }
            try sampler.add(interpreter)
            statistics.registeredPythonProcesses += 1
            if !interpreter.debugOffsetsMismatch.isEmpty {
                statistics.debugOffsetsMismatches[interpreter.binaryPath] = interpreter.debugOffsetsMismatch
            }
            return table.register(pid: pid, description: description, interpreter: interpreter, decoder: decoder)
        }
    }

    /// A process that does not run Python: native and kernel stacks only.
    private func registerNative(pid: Int32) throws {
        guard let nativeTables else { return }
        let native = try nativeTables.load(pid: pid, interpreterFile: nil)
        let description = ProfiledProcess(pid: pid, commandLine: ProcessScanner.commandLine(pid: pid), pythonVersion: "",
                                          containerID: Containers.containerID(pid: pid) ?? "")
        try lock.withLock {
            try sampler.setMappings(pid: pid, native.bpfValue())
            let registration = table.register(pid: pid, description: description, interpreter: nil,
                                              decoder: makeDecoder(interpreter: nil))
            _ = table.setNative(native, pid: pid, registration: registration)
        }
        try sampler.addNative(pid: pid)
    }

    private func makeDecoder(interpreter: PythonInterpreter?) -> StackDecoder<Int32> {
        StackDecoder(interpreter: interpreter, native: nil, kernelSymbols: kernelSymbols,
                     showInterpreterFrames: options.showInterpreterFrames) { [unowned self] frame in
            if let code = frame.unnamed { lateFrameNamer.notice(code) }
            profileLock.lock()
            defer { profileLock.unlock() }
            return profile.intern(frame)
        }
    }

    /// Ends the recording as SIGINT would: `run()` returns what was collected.
    public func stop() {
        stopRequested.set()
    }

    /// Reads the profile recorded so far, under the lock the drain thread takes to add a sample: for live views, which
    /// must not keep it long.
    public func withProfile<T>(_ body: (Profile) -> T) -> T {
        profileLock.lock()
        defer { profileLock.unlock() }
        return body(profile)
    }

    /// Like `withProfile`, then forgets the samples `body` was given: a live view that keeps its own counts takes
    /// them a refresh at a time, so that a long session does not keep every sample. `run()` returns those not taken.
    public func withProfileTakingSamples<T>(_ body: (Profile) -> T) -> T {
        profileLock.lock()
        defer { profileLock.unlock() }
        let result = body(profile)
        samplesTaken += profile.samples.count
        profile.samples.removeAll(keepingCapacity: true)
        return result
    }

    /// Nanoseconds since sampling started, the clock of `Sample.time`; 0 before `onStarted`.
    public var elapsed: UInt64 {
        startMonotonic == 0 ? 0 : Self.monotonicNow() - startMonotonic
    }

    /// For a recording written a period at a time (`record --rotate`): hands `body` the profile holding only the
    /// samples recorded before `end` (nanoseconds since sampling started), then forgets them; later ones stay for the
    /// next call or for `run()`. Returns nil, and gives nothing, once `run()` has collected the samples left: those are
    /// in the profile it returns, so each sample is taken exactly once whichever comes first.
    ///
    /// Only the samples are taken: frames, stacks, thread names and processes stay, and keep growing for the whole
    /// recording, so that the indices of samples taken earlier still hold.
    public func takeSamples<T>(recordedBefore end: UInt64, _ body: (Profile) -> T) -> T? {
        profileLock.lock()
        defer { profileLock.unlock() }
        guard !finished else { return nil }
        var taken = profile
        taken.samples = profile.samples.filter { $0.time < end }
        profile.samples.removeAll { $0.time < end }
        samplesTaken += taken.samples.count
        return body(taken)
    }

    /// Of the profile's frames no symbol named (by index), those the debug files arrived so far name: for a live view,
    /// which renames them in place. Without waiting.
    public func namesArrived(_ frames: [Int32: Frame]) -> [Int32: Frame] {
        frames.isEmpty ? [:] : lateFrameNamer.namesArrived(frames)
    }

    /// A period of a rotating recording (`takeSamples`) with its frames named from the debug files found so far
    /// (debuginfod's answers keep coming for later periods and for the end). Without waiting, and without the profile
    /// lock.
    public func namingLateFrames(_ period: Profile) -> Profile {
        lateFrameNamer.name(period, waitingUntil: nil, final: false).0
    }

    private func reportProgressIfDue() {
        guard let onProgress else { return }
        let now = Self.monotonicNow()
        guard now - lastProgress >= 1_000_000_000 else { return }
        lastProgress = now
        let progress = withProfile {
            RecordingProgress(seconds: Double(now - startMonotonic) / 1e9, samples: samplesTaken + $0.samples.count,
                              processes: $0.processes.count)
        }
        onProgress(progress)
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
            if options.takesEveryNewProgram || followed.tree.contains(pid) || followed.namedTargets.contains(pid) {
                followed.schedule(pid, now: Self.monotonicNow())
                loopWakeup.signal()
            }
        case RECORD_FORK.rawValue:
            let child = Int32(bitPattern: event.tid)
            if options.subprocesses && followed.tree.contains(pid) { followed.tree.insert(child) }
            // A forked Python process runs the same interpreter at the same addresses: register it as is. A
            // process forked before its parent was located (it forked at once) is located itself.
            if let interpreter = table[pid]?.interpreter, options.followsProcesses {
                followed.forks.append((interpreter, child))
                loopWakeup.signal()
            } else if followed.tree.contains(child) || followed.pending[pid] != nil {
                followed.schedule(child, now: Self.monotonicNow())
                loopWakeup.signal()
            }
        case RECORD_EXIT.rawValue:
            forget(pid)
            followed.tree.remove(pid)
            followed.namedTargets.remove(pid)
            followed.pending[pid] = nil
        default:
            break
        }
    }

    /// Drops an exited (or exec'ed) process from the BPF maps and the process table; its samples stay.
    /// On the drain thread, under the lock.
    private func forget(_ pid: Int32) {
        guard let state = table.forget(pid) else { return }
        try? sampler.remove(pid: pid)
        intake.collectUnresolved(state.decoder)
    }

    /// Recording loop: registers forked Python children, and locates the interpreter of processes that exec'ed,
    /// retrying while the dynamic loader maps libpython (after 1, 2, 4 ... 512 ms, then the process is taken
    /// for something else than Python).
    private func followNewProcesses() {
        let now = Self.monotonicNow()
        // Left queued: an exec event removes its child, and registering takes it (both under the lock).
        let (forks, due) = lock.withLock { (followed.forks, followed.due(now: now)) }

        for (parent, child) in forks {
            var interpreter = parent
            interpreter.pid = child
            let inCgroup = isInTargetCgroup(child)
            if let registration = try? registerPython(interpreter, isCurrent: { followed.takeFork(child) && inCgroup }) {
                loadNativeStacksLater(of: interpreter, registration: registration)
            }
        }
        for pid in due {
            guard isInTargetCgroup(pid) else {
                // Moved out of the cgroup since its exec (the BPF program reports only those inside), or gone.
                lock.withLock { followed.pending[pid] = nil }
                continue
            }
            do {
                let interpreter = try InterpreterLocator.locate(pid: pid, cache: locatorCache)
                if let registration = try registerPython(interpreter) { loadNativeStacksLater(of: interpreter, registration: registration) }
                lock.withLock { followed.pending[pid] = nil }
            } catch let error as InterpreterError {
                lock.withLock {
                    switch error {
                    case .notPython:
                        followed.retry(pid, now: now)
                    case .processGone:
                        followed.pending[pid] = nil
                    case .unsupportedVersion, .unknownVersion, .freeThreaded, .unknownLayout, .unreadable:
                        followed.pending[pid] = nil
                        statistics.skip("\(error)")
                    }
                }
            } catch {
                lock.withLock {
                    followed.pending[pid] = nil
                    statistics.skip("process \(pid): \(error)")
                }
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
        let wakeAt = lock.withLock {
            [now + 50_000_000, followed.nextAttempt, table.nextRefresh(interval: Self.refreshInterval)].compactMap { $0 }.min()!
        }
        guard wakeAt > now else { return }
        _ = loopWakeup.wait(timeout: .now() + .nanoseconds(Int(wakeAt - now)))
    }

    /// The least time between two re-reads of one process's maps.
    static let refreshInterval: UInt64 = 200_000_000

    /// Re-reads the maps of processes whose samples reached code in no known mapping (a library loaded after
    /// registration), at most every 200 ms per process, and gives the unwinder the new tables (in the background).
    private func refreshStaleMappings() {
        guard let nativeTables else { return }
        let due = lock.withLock { table.takeDueRefreshes(now: Self.monotonicNow(), interval: Self.refreshInterval) }
        guard !due.isEmpty else { return }
        nativeTables.refreshLater(due) { [self] pid, registration, native in
            // Unless it exited or exec'ed meanwhile (its pid may be another process's by now).
            try? giveMappings(native, pid: pid, registration: registration)
            lock.withLock {
                if let gap = table.closeUnknownCodeGap(pid, registration: registration, now: Self.monotonicNow()) {
                    statistics.newCodeGaps.append(gap)
                }
            }
        }
    }

    /// Runs on the drain thread for every ring buffer record: a sample (see struct sample in bpf/pybpfprof.h) or a
    /// process event.
    private func handle(_ bytes: UnsafeRawBufferPointer) {
        guard let record = SampleRecord(bytes) else { return }
        let pid = Int32(bitPattern: record.header.pid)
        guard record.isSample else {
            lock.withLock { handleProcessEvent(record.header) }
            return
        }
        guard let state = lock.withLock({ table.stateForDecoding(pid) }) else { return }
        // Without a lock: only this thread uses the decoder, and it interns new frames under `profileLock` itself.
        let decoded = state.decoder.decode(record)
        if decoded.reachedUnknownMapping, lock.withLock({ table.markStale(pid, now: Self.monotonicNow()) }) { loopWakeup.signal() }
        if record.has(SAMPLE_NATIVE_NOT_LOADED) { intake.nativeTablesNotLoaded += 1 }
        if let outcome = decoded.outcome {
            intake.splicing[outcome, default: 0] += 1
            intake.nativeStacks += 1
            if record.has(SAMPLE_NATIVE_COMPLETE) { intake.nativeStacksComplete += 1 }
        }
        profileLock.lock()
        let instance = state.instance ?? profile.add(state.description)
        var frames = decoded.frames
        if let leaf = Self.offCPULeaf(record) { frames.append(profile.intern(leaf)) }
        profile.samples.append(Sample(
            time: record.header.time_ns >= startMonotonic ? record.header.time_ns - startMonotonic : 0,
            cpu: record.header.cpu, process: instance, tid: Int32(bitPattern: record.header.tid),
            threadName: profile.intern(threadName: decoded.threadName), stack: profile.intern(stack: frames),
            weight: record.header.weight_ns > 0 ? record.header.weight_ns : profile.samplePeriod
        ))
        profileLock.unlock()
        if state.instance == nil { lock.withLock { table.setInstance(instance, pid: pid, registration: state.registration) } }
    }

    /// The marker an off-CPU interval's stack ends in: why its thread was off the CPU. nil for an on-CPU sample.
    static func offCPULeaf(_ record: SampleRecord) -> Frame? {
        guard record.isOffCPU else { return nil }
        switch UInt32(record.header.offcpu_state) {
        case OFFCPU_UNINTERRUPTIBLE.rawValue: return .offCPUDisk
        case OFFCPU_RUNNABLE.rawValue: return .offCPURunnable
        case OFFCPU_GIL.rawValue: return .waitingForGIL
        default: return .offCPUSleeping
        }
    }

    private func finish() -> (Profile, RecordingStatistics) {
        // Tables still compiling: their files count in the report.
        let unwindTables = nativeTables?.report()
        let counters = sampler.readCounters()
        // The drain thread has stopped: its counts are final.
        var statistics = lock.withLock {
            table.states.forEach { intake.collectUnresolved($0.decoder) }
            var statistics = self.statistics
            statistics.exitedProcesses = table.forgotten
            return statistics
        }
        statistics.unresolvedFrames = intake.unresolvedFrames
        statistics.splicing = intake.splicing
        statistics.nativeTablesNotLoaded = intake.nativeTablesNotLoaded
        statistics.nativeStacks = intake.nativeStacks
        statistics.nativeStacksComplete = intake.nativeStacksComplete
        statistics.unwindTables = unwindTables
        for entry in CounterCatalog.entries {
            let value = counters[entry.counter] ?? 0
            statistics.counters[entry.name] = value
            if entry.isError && value > 0 { statistics.errorCounters[entry.name] = value }
        }
        statistics.lostRecords = counters[COUNTER_RINGBUF_FULL] ?? 0
        statistics.offCPUSampledOut = counters[COUNTER_OFFCPU_SAMPLED_OUT] ?? 0
        statistics.offCPULostNanoseconds = counters[COUNTER_OFFCPU_LOST_NS] ?? 0
        // Tail calls run inside the invocation that started them and are accounted to on_sample. Divided by
        // profiled samples, so the figure includes the cheap early exits on every other process's ticks.
        let profiledSamples = (counters[COUNTER_SENT] ?? 0) + statistics.lostRecords
        if let sample = sampler.programStatistics(), profiledSamples > 0 {
            statistics.bpfInvocations = sample.runCount
            statistics.bpfNanosecondsPerSample = Double(sample.runTimeNanoseconds) / Double(profiledSamples)
        }
        do {
            try nativeStageLoad?.value()
        } catch {
            statistics.nativeStacksOff = "\(error)"
        }
        statistics.kernel = kernelFeatures.summary
        statistics.verifiedInstructions = sampler.verifiedInstructions
        profileLock.lock()
        defer { profileLock.unlock() }
        finished = true
        profile.duration = Self.monotonicNow() - startMonotonic
        profile.samples.sort { $0.time < $1.time }
        // A live view names its frames itself, in place (`namesArrived`): renaming here could merge frames and so
        // renumber those it holds.
        guard options.namesFramesAtEnd else { return (profile, statistics) }
        let (named, lateNaming) = lateFrameNamer.name(profile, waitingUntil: Self.monotonicNow() + options.debuginfodWaitAtEnd)
        statistics.lateNaming = lateNaming
        return (named, statistics)
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
    private let lock = Lock()
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
