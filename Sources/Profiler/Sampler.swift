import BPFKit
import FoundationEssentials
import CBPF
import CPython
import Native

/// The kernel side of a recording: the loaded BPF program, its maps, its perf events, and the ring
/// buffer drained on a thread of its own. One cleanup path: `stop()` (also run by deinit).
final class Sampler {
    private let program: SamplerProgram
    private var object: BPFObject { program.object }
    private let processes: BPFMap
    private let processMappings: BPFMap
    private let counters: BPFMap
    /// The `unwind_rows` array, written directly (see UnwindTableStore).
    let unwindRows: MappedArrayMap
    let unwindRowCapacity: Int
    private let ringBufferFD: Int32
    private var attachment: CPUClockAttachment?
    private var reader: RingBufferReader?
    private var drainThread: DedicatedThread?
    /// Guards `draining`.
    private let drainingLock = Lock()
    private var draining = false
    private var statistics: BPFStatistics?
    private let sampleProgram: OpaquePointer
    /// Process events (exec, fork, exit), reported into the sample ring buffer.
    private let eventPrograms: [(String, OpaquePointer)]
    private var eventLinks: [ProgramLink] = []
    /// --mode wall|offcpu: on_switch_out, and on_switch_in with the kernel function it is attached to.
    private let switchOutProgram: (program: OpaquePointer, name: String)?
    private let switchIn: (program: OpaquePointer, function: String)?
    private var switchLinks: [ProgramLink] = []
    /// Whether the cpu-clock perf events are attached (not in --mode offcpu).
    private let samplesOnCPU: Bool

    /// How long records may wait in the ring buffer before the drain thread reads them. 10 ms when following
    /// processes: a starting interpreter frees the code objects of the modules it imports right after running
    /// them, and the drain thread can only name a frame whose code object is still there to read.
    let pollIntervalMilliseconds: Int32

    /// - Parameters:
    ///   - ringBufferBytes: a power of two, at least a page.
    ///   - unwindTableBytes: memory for the native unwind rows of every file (preallocated by the kernel).
    ///   - cgroupFD: an open cgroup v2 directory: only its tasks and those of the cgroups below it are sampled and
    ///     reported (`--cgroup`, `--container`); nil for every task. Only read here: the caller keeps it open.
    ///   - offCPUPeriod: records the intervals threads spend off a CPU, weighed against this period in nanoseconds
    ///     (`offcpu_period_ns` in bpf/pybpfprof.h); nil: none.
    ///   - samplesOnCPU: attaches the cpu-clock perf events (false: off-CPU intervals only).
    ///   - gilOnly: sends only the samples of threads that hold the GIL (`--mode gil`).
    ///   - deferNativeStage: the native unwinder is loaded by `loadNativeStage()`, after sampling has started (see
    ///     SamplerProgram).
    ///   - kernelTypes: the kernel's types the program relocates against (see KernelTypes); nil: libbpf reads the kernel's BTF.
    init(features: KernelFeatures, ringBufferBytes: UInt32, collectStatistics: Bool, kernelStacks: Bool, nativeStacks: Bool,
         unwindTableBytes: Int, followProcesses: Bool, cgroupFD: Int32? = nil, offCPUPeriod: UInt64? = nil,
         samplesOnCPU: Bool = true, gilOnly: Bool = false, deferNativeStage: Bool = false, kernelTypes: KernelTypes? = nil) throws {
        self.samplesOnCPU = samplesOnCPU
        // Before anything is loaded: a kernel without the hook is refused with its one-line reason.
        let switchInFunction = try offCPUPeriod.map { _ in
            // The kprobe PMU is there when the kernel was built with CONFIG_KPROBES (every distribution's kernel is).
            guard FileManager.default.fileExists(atPath: "/sys/bus/event_source/devices/kprobe") else {
                throw PreflightError.noKprobes(release: features.release)
            }
            guard let function = SamplerProgram.switchInFunction(kallsyms: (try? KernelFile.text("/proc/kallsyms")) ?? "") else {
                throw PreflightError.noSwitchInHook(release: features.release)
            }
            return function
        }
        pollIntervalMilliseconds = followProcesses ? 10 : 50
        // A Python-only recording keeps a one-row array: nothing to preallocate.
        let unwindRowCapacity = nativeStacks ? max(1, unwindTableBytes / MemoryLayout<unwind_row>.stride) : 1
        self.unwindRowCapacity = unwindRowCapacity
        var configuration = pybpfprof_config()
        configuration.collect_native_stacks = nativeStacks ? 1 : 0
        configuration.collect_kernel_stacks = kernelStacks ? 1 : 0
        configuration.report_process_events = followProcesses ? 1 : 0
        configuration.restrict_to_cgroup = cgroupFD != nil ? 1 : 0
        // Records wake the drain thread only past a quarter of the buffer; otherwise its timed poll (pollInterval)
        // collects them. See wakeup_bytes in bpf/pybpfprof.h.
        configuration.wakeup_bytes = UInt64(ringBufferBytes / 4)
        configuration.offcpu_period_ns = offCPUPeriod ?? 0
        configuration.gil_only = gilOnly ? 1 : 0
        program = try SamplerProgram(
            features: features, deferNativeStage: deferNativeStage && nativeStacks, kernelTypes: kernelTypes,
            configuration: configuration
        ) { object in
            try object.setMaxEntries(map: .samples, ringBufferBytes)
            try object.setMaxEntries(map: .unwind_rows, UInt32(unwindRowCapacity))
        }
        let object = program.object
        if let cgroupFD {
            // Before any program is attached: with the restriction on and no cgroup, nothing would be sampled.
            try BPFMap(fd: try object.mapFD(.target_cgroup)).update(UInt32(0), UInt32(bitPattern: cgroupFD))
        }
        processes = BPFMap(fd: try object.mapFD(.processes))
        processMappings = BPFMap(fd: try object.mapFD(.process_mappings))
        unwindRows = try MappedArrayMap(
            fd: try object.mapFD(.unwind_rows), valueSize: MemoryLayout<unwind_row>.stride, entries: unwindRowCapacity)
        counters = BPFMap(fd: try object.mapFD(.counters))
        ringBufferFD = try object.mapFD(.samples)
        sampleProgram = try object.program(.on_sample)
        eventPrograms = try SamplerProgram.processEventPrograms.map { ($0.rawValue, try object.program($0)) }
        switchOutProgram = try program.switchOutProgram.map { (try object.program($0), $0.rawValue) }
        switchIn = try switchInFunction.map { (try object.program(.on_switch_in), $0) }
        if collectStatistics { statistics = try BPFStatistics() }
    }

    deinit { stop() }

    /// Loads the native unwinder when `init` deferred it (nothing otherwise). Safe while sampling: samples go without
    /// native frames until it is in place.
    func loadNativeStage() throws {
        try program.loadNativeStage()
    }

    /// Tells the BPF program about a Python process.
    func add(_ interpreter: PythonInterpreter) throws {
        try processes.update(UInt32(bitPattern: interpreter.pid), py_process(interpreter))
    }

    /// Tells the BPF program about a process that does not run Python: native and kernel stacks only.
    func addNative(pid: Int32) throws {
        try processes.update(UInt32(bitPattern: pid), py_process())
    }

    /// Gives the native unwinder a process's executable mappings (a `struct process_mappings`).
    func setMappings(pid: Int32, _ value: [UInt8]) throws {
        precondition(value.count == MemoryLayout<process_mappings>.size)
        try value.withUnsafeBytes { try processMappings.update(UInt32(bitPattern: pid), bytes: $0) }
    }

    /// Forgets a process. The BPF program has usually deleted its `processes` entry itself already (on exit or
    /// exec, see on_exec): a missing entry is not an error.
    func remove(pid: Int32) throws {
        try processes.delete(UInt32(bitPattern: pid))
        try processMappings.delete(UInt32(bitPattern: pid))
    }

    /// Starts the drain thread, then the perf events. `handler` runs on the drain thread.
    func start(frequency: Int, handler: @escaping (UnsafeRawBufferPointer) -> Void) throws {
        let reader = try RingBufferReader(mapFD: ringBufferFD, handler: handler)
        self.reader = reader
        draining = true
        drainThread = try DedicatedThread(name: "pybpfprof-drain") { [drainingLock, pollIntervalMilliseconds] in
            while true {
                drainingLock.lock()
                let keepGoing = self.draining
                drainingLock.unlock()
                guard keepGoing else { break }
                // poll() only reads after a wakeup; records written without one are consumed here.
                _ = try? reader.poll(timeoutMilliseconds: pollIntervalMilliseconds)
                _ = try? reader.drain()
            }
        }
        eventLinks = try eventPrograms.map { try ProgramLink(program: $1, name: $0) }
        // Switch-in first: a start stored before it is attached would be found only at the thread's next switch-in.
        if let switchIn {
            switchLinks.append(try ProgramLink(program: switchIn.program, name: "on_switch_in", kernelFunction: switchIn.function))
        }
        if let switchOutProgram { switchLinks.append(try ProgramLink(program: switchOutProgram.program, name: switchOutProgram.name)) }
        if samplesOnCPU { attachment = try CPUClockAttachment(program: sampleProgram, frequency: frequency) }
    }

    /// Detaches the perf events, waits for the drain thread and consumes what is left in the buffer.
    func stop() {
        attachment?.detach()
        attachment = nil
        switchLinks.forEach { $0.detach() }
        switchLinks = []
        eventLinks.forEach { $0.detach() }
        eventLinks = []
        guard let reader else { return }
        drainingLock.lock()
        draining = false
        drainingLock.unlock()
        drainThread?.join()
        drainThread = nil
        _ = try? reader.drain()
        self.reader = nil
    }

    /// The BPF program's counters summed over CPUs.
    func readCounters() -> [counter: UInt64] {
        var result: [counter: UInt64] = [:]
        for index in 0..<COUNTER_COUNT.rawValue {
            let values = (try? counters.perCPUValues(UInt32(index), as: UInt64.self)) ?? []
            result[counter(rawValue: index)] = values.reduce(0, +)
        }
        return result
    }

    /// Kernel statistics of on_sample (only with `collectStatistics`). The stages it tail-calls run within its
    /// invocation and are accounted to it.
    func programStatistics() -> BPFProgramStats? {
        guard statistics != nil else { return nil }
        return try? BPFProgramStats.read(program: sampleProgram)
    }

    /// Instructions the verifier processed, per loaded program.
    var verifiedInstructions: [String: Int] { program.verifiedInstructions }
}

extension py_process {
    /// The BPF map value for an interpreter: where its thread list starts and its struct offsets.
    init(_ interpreter: PythonInterpreter) {
        let offsets = interpreter.offsets
        func u16(_ value: Int?) -> UInt16 { value.map { UInt16($0) } ?? UInt16(PY_OFFSET_NONE) }
        var fields = py_offsets()
        fields.interp_threads_head = u16(offsets.interpThreadsHead)
        fields.tstate_next = u16(offsets.tstateNext)
        fields.tstate_thread_id = u16(offsets.tstateThreadId)
        fields.tstate_frame = u16(offsets.tstateFrame)
        fields.cframe_current_frame = u16(offsets.cframeCurrentFrame)
        fields.frame_previous = u16(offsets.frameBack)
        fields.frame_code = u16(offsets.frameCode)
        fields.frame_instr = u16(offsets.frameInstr)
        fields.frame_owner = u16(offsets.frameOwner)
        fields.frame_is_entry = u16(offsets.frameIsEntry)
        fields.frame_read_size = UInt16(offsets.frameReadSize)
        fields.code_checksum = u16(offsets.codeChecksum)
        fields.instr_kind = UInt8(offsets.instructionKind == .pointer ? PY_INSTR_POINTER.rawValue : PY_INSTR_LASTI.rawValue)
        fields.owner_boundary = offsets.frameBoundaryOwner.map { UInt8($0) } ?? 0xff
        fields.code_tag_bits = UInt8(offsets.frameCodeTagBits)
        var gil = gil_probe()
        switch interpreter.gilProbe {
        case .holderSlot(let address):
            gil.kind = UInt8(GIL_PROBE_HOLDER_SLOT.rawValue)
            gil.holder_slot = address
        case .interpreterGIL(let tstateInterp, let cevalGIL, let locked, let lastHolder):
            gil.kind = UInt8(GIL_PROBE_INTERPRETER_GIL.rawValue)
            gil.tstate_interp = UInt16(tstateInterp)
            gil.interp_ceval_gil = UInt16(cevalGIL)
            gil.gil_locked = UInt16(locked)
            gil.gil_last_holder = UInt16(lastHolder)
        case .threadStateFlag(let offset, let mask):
            gil.kind = UInt8(GIL_PROBE_THREAD_STATE_FLAG.rawValue)
            gil.flag_offset = UInt16(offset)
            gil.flag_mask = mask
        case nil:
            gil.kind = UInt8(GIL_PROBE_NONE.rawValue)
        }
        switch interpreter.gilWaitRange {
        case .address(let start, let size):
            gil.wait_kind = UInt8(GIL_WAIT_ADDRESS.rawValue)
            gil.wait_start = start
            gil.wait_size = UInt16(size)
        case .interpreterGIL(let cevalGIL, let start, let size):
            gil.wait_kind = UInt8(GIL_WAIT_INTERPRETER_GIL.rawValue)
            gil.interp_ceval_gil = UInt16(cevalGIL)
            gil.wait_start = UInt64(start)
            gil.wait_size = UInt16(size)
        case .pointer(let slot, let size):
            gil.wait_kind = UInt8(GIL_WAIT_POINTER.rawValue)
            gil.wait_start = slot
            gil.wait_size = UInt16(size)
        case nil:
            gil.wait_kind = UInt8(GIL_WAIT_NONE.rawValue)
        }
        self.init(interpreters_head: interpreter.interpretersHeadAddress, offsets: fields, gil: gil)
    }
}
