import CBPF
import CPython
import CSystem
import FoundationEssentials
import Glibc
import Native

/// `dump` without the BPF task iterator: each thread of the process read from userspace into the record the iterator
/// would have written for it (a `dump_thread` and a `struct sample`), so that everything after the reading (torn
/// readings read again, running threads sampled with on_sample, decoding, splicing, rendering) is the iterator's.
/// For kernels that do not load `dump_threads` (sleepable task iterators and bpf_copy_from_user_task came in 5.18),
/// or when asked. Like the iterator it never stops, traces or writes the process:
/// - threads, their state, CPU and name: /proc/PID/task, `stat`, `comm`; the context switches of `status` (and the
///   state) before and after each thread's reading, as the iterator compares nvcsw + nivcsw;
/// - Python frames: the BPF program's walk over process_vm_readv (`PythonFrameWalk`), each thread's state found by
///   `ThreadIdentities` (userspace cannot read a thread's fsbase);
/// - native frames: from the pc and sp `syscall` shows of a thread blocked in the kernel (no rbp), unwound by the BPF
///   unwinder's rules over the same rows (`NativeUnwind`);
/// - kernel frames: `stack`, its `function+offset` turned back into addresses through /proc/kallsyms.
/// What this cannot show, the iterator can: native frames of a thread whose unwind needs rbp before a frame restores
/// it, and kernel frames on a kernel without CONFIG_STACKTRACE (no /proc/PID/task/TID/stack).
final class UserspaceThreadReader {
    private let pid: Int32
    private let walk: PythonFrameWalk
    private let nativeThreadIDOffset: Int?
    private let native: NativeUnwind?
    private let collectNativeStacks: Bool
    /// nil when kernel frames are not collected, or the kernel shows no thread's kernel stack.
    private let kernelSymbolNames: KernelSymbolNames?
    /// What the reader cannot show on this machine, for the dump's limits.
    let limits: [String]

    /// - Parameters:
    ///   - native: the process's mappings and unwind rows; nil when they could not be loaded (its records are then
    ///     flagged SAMPLE_NATIVE_NOT_LOADED, as the iterator flags a process without `process_mappings`).
    ///   - kernelSymbols: nil for no kernel frames.
    init(pid: Int32, interpreter: PythonInterpreter, memory: TargetMemory, native: NativeUnwind?, collectNativeStacks: Bool,
         kernelSymbols: KernelSymbols?) {
        self.pid = pid
        walk = PythonFrameWalk(process: py_process(interpreter), memory: memory)
        nativeThreadIDOffset = interpreter.offsets.tstateNativeThreadId
        self.native = native
        self.collectNativeStacks = collectNativeStacks
        let kernelStacksShown = FileManager.default.fileExists(atPath: "/proc/self/stack")
        kernelSymbolNames = kernelStacksShown ? kernelSymbols.map(KernelSymbolNames.init) : nil
        limits = kernelSymbols != nil && !kernelStacksShown
            ? ["no kernel frames: this kernel shows no thread's kernel stack (/proc/PID/task/TID/stack: CONFIG_STACKTRACE is off)"]
            : []
    }

    /// One reading of every thread of the process, in thread id order; threads gone meanwhile are left out.
    func read() -> [Dumper.ThreadRecord] {
        let directory = "/proc/\(pid)/task"
        let threads = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap { Int32($0) }.sorted()
        let listed = walk.isPythonProcess ? walk.listedThreadStates(nativeThreadIDOffset: nativeThreadIDOffset) : []
        let identities = ThreadIdentities.match(
            threads: threads, listed: listed, ownRobustListOffset: ThreadIdentities.ownRobustListOffset,
            robustListHead: ThreadIdentities.robustListHead(tid:))
        return threads.compactMap { read(tid: $0, identities: identities) }
    }

    private func read(tid: Int32, identities: ThreadIdentities) -> Dumper.ThreadRecord? {
        let files = "/proc/\(pid)/task/\(tid)/"
        guard let switchesBefore = (try? KernelFile.text(files + "status")).flatMap(ThreadProcFiles.contextSwitches(status:)),
              let scheduler = (try? KernelFile.text(files + "stat")).flatMap(ThreadProcFiles.schedulerState(stat:))
        else { return nil }
        var header = sample_header()
        header.time_ns = Recorder.monotonicNow()
        header.pid = UInt32(bitPattern: pid)
        header.tid = UInt32(bitPattern: tid)
        header.cpu = scheduler.cpu
        header.record_type = UInt16(RECORD_SAMPLE.rawValue)
        let name = ((try? KernelFile.text(files + "comm")) ?? "").trimming(while: \.isNewline)
        withUnsafeMutableBytes(of: &header.comm) { comm in
            for (index, byte) in name.utf8.prefix(Int(TASK_COMM_LEN) - 1).enumerated() { comm[index] = byte }
        }
        var thread = dump_thread()
        thread.state = ThreadProcFiles.kernelState(scheduler.state)
        var notes: [String] = []

        // As the iterator: a running thread's kernel stack and user registers are stale while it runs; Dumper samples it.
        var kernel: [UInt64] = [], nativeFrames: [UInt64] = []
        if scheduler.state == "R" {
            thread.flags |= DUMP_THREAD_ON_CPU.rawValue
        } else {
            if let kernelSymbolNames, let text = try? KernelFile.text(files + "stack") {
                var unnamed: [String] = []
                for frame in ThreadProcFiles.kernelFrames(stack: text).prefix(Int(KERNEL_MAX_FRAMES)) {
                    if let address = frame.address(names: kernelSymbolNames) { kernel.append(address) } else { unnamed.append(frame.function) }
                }
                if !unnamed.isEmpty {
                    notes.append("kernel frames left out, not in /proc/kallsyms: \(unnamed.joined(separator: ", "))")
                }
            }
            if collectNativeStacks {
                let (frames, flags, note) = unwindNative(syscall: try? KernelFile.text(files + "syscall"))
                nativeFrames = frames
                header.flags |= UInt16(flags)
                notes += note.map { [$0] } ?? []
            }
        }

        let pointer = identities.threadPointers[tid]
        var frame: UInt64 = 0
        if let tstate = pointer.flatMap(walk.threadState(threadPointer:)) {
            header.tstate = tstate
            frame = walk.currentFrame(of: tstate)
        } else if pointer == nil && identities.unmatchedStates > 0 {
            notes.append("no Python frames: which of the \(identities.unmatchedStates) Python thread state"
                + "\(identities.unmatchedStates == 1 ? "" : "s") left over is this thread's could not be told "
                + "(this Python records no kernel thread id, and the thread's libc registered no robust futex list)")
        }
        var python: [py_frame] = []
        if frame != 0 {
            let walked = walk.frames(from: frame)
            python = walked.frames
            header.flags |= UInt16(walked.flags)
        } else {
            header.flags |= UInt16(SAMPLE_NO_PYTHON.rawValue)
        }
        return record(thread: thread, header: header, kernel: kernel, native: nativeFrames, python: python,
                      before: (switchesBefore, scheduler.state), notes: notes, tid: tid)
    }

    /// The record, flagged DUMP_THREAD_SWITCHED if the thread ran while it was read (or is gone now). Its context
    /// switches count the times it left a CPU; one woken while read and still running has not left it yet, so its
    /// state is compared too. Reading it takes milliseconds here, not the iterator's microseconds.
    private func record(thread: dump_thread, header: sample_header, kernel: [UInt64], native: [UInt64], python: [py_frame],
                        before: (switches: UInt64, state: Character), notes: [String], tid: Int32) -> Dumper.ThreadRecord {
        var thread = thread
        let files = "/proc/\(pid)/task/\(tid)/"
        let switches = (try? KernelFile.text(files + "status")).flatMap(ThreadProcFiles.contextSwitches(status:))
        let state = (try? KernelFile.text(files + "stat")).flatMap(ThreadProcFiles.schedulerState(stat:))?.state
        if switches != before.switches || state != before.state { thread.flags |= DUMP_THREAD_SWITCHED.rawValue }
        return Dumper.ThreadRecord(thread: thread, header: header, kernel: kernel, native: native, python: python, notes: notes)
    }

    /// The native frames of a thread that is not running, from the registers /proc/PID/task/TID/syscall shows.
    private func unwindNative(syscall: String?) -> (frames: [UInt64], flags: UInt32, note: String?) {
        guard let native else { return ([], SAMPLE_NATIVE_NOT_LOADED.rawValue, nil) }
        guard let syscall, let entry = ThreadProcFiles.kernelEntry(syscall: syscall) else {
            // `running`: it was woken (or never slept) between its state and its registers; the context switches say so.
            return ([], 0, "no native frames: its user registers could not be read (it ran meanwhile)")
        }
        guard entry.pc != 0, entry.sp != 0 else {
            return ([], 0, "no native frames: no user registers (the thread is exiting)")
        }
        let outcome = native.unwind(pc: entry.pc, sp: entry.sp)
        var note: String?
        if let address = outcome.neededUnknownRBP {
            note = "native frames end at 0x\(String(address, radix: 16)): unwinding its caller needs rbp, which "
                + "/proc/PID/task/TID/syscall does not show (the BPF task iterator reads it; Linux 5.18)"
        }
        return (outcome.addresses, outcome.flags, note)
    }
}

// MARK: - Memory

/// The memory of the process being dumped, as the userspace reader reads it: `ProcessMemory` (process_vm_readv) in a
/// dump, byte ranges in a dictionary in the unit tests.
protocol TargetMemory {
    func read(_ address: UInt64, count: Int) throws -> [UInt8]
}

extension ProcessMemory: TargetMemory {}

extension TargetMemory {
    /// 8 bytes, little-endian; nil when they cannot be read.
    func uint64(at address: UInt64) -> UInt64? {
        (try? read(address, count: 8))?.uint64(at: 0)
    }
}

// MARK: - Python frames

/// The BPF program's Python walk (`scan_thread_list`, `current_frame_of`, `walk_one_frame` and `emit_boundary` in
/// bpf/pybpfprof.bpf.c) over memory read from userspace: the same `py_process` value, reads, bounds, masks and flags,
/// so that a thread's Python frames are what the iterator would have written for it.
struct PythonFrameWalk {
    let process: py_process
    let memory: TargetMemory

    /// One state of the interpreter's thread list, with the ids that tell whose it is.
    struct ListedThreadState: Equatable {
        var address: UInt64
        /// `thread_id`: its thread's pthread_self(), the thread's fsbase on x86_64 (what the BPF program matches).
        var threadPointer: UInt64
        /// `native_thread_id` (3.11+): its thread's kernel thread id; nil before 3.11, or when unreadable.
        var nativeThreadID: UInt64?
    }

    /// A Python process (not a native one registered for its native frames only).
    var isPythonProcess: Bool { process.interpreters_head != 0 }

    /// The interpreter's first PY_MAX_THREADS_SCAN thread states in the order `scan_thread_list` visits them; empty
    /// before the interpreter has one, after finalization, and when the list cannot be read.
    func listedThreadStates(nativeThreadIDOffset: Int?) -> [ListedThreadState] {
        var listed: [ListedThreadState] = []
        visitThreadStates { tstate in
            listed.append(ListedThreadState(
                address: tstate, threadPointer: memory.uint64(at: tstate &+ UInt64(process.offsets.tstate_thread_id)) ?? 0,
                nativeThreadID: nativeThreadIDOffset.flatMap { memory.uint64(at: tstate &+ UInt64($0)) }))
            return true
        }
        return listed
    }

    /// `scan_thread_list`: the first of the listed states whose `thread_id` is `threadPointer`; nil if none is.
    func threadState(threadPointer: UInt64) -> UInt64? {
        guard isPythonProcess, threadPointer != 0 else { return nil }
        var found: UInt64?
        visitThreadStates { tstate in
            guard memory.uint64(at: tstate &+ UInt64(process.offsets.tstate_thread_id)) == threadPointer else { return true }
            found = tstate
            return false
        }
        return found
    }

    /// Calls `body` with each of the first PY_MAX_THREADS_SCAN states of the list until it returns false. An unreadable
    /// `next` ends the list, as a failed read returns 0 in BPF.
    private func visitThreadStates(_ body: (UInt64) -> Bool) {
        guard let interpreter = memory.uint64(at: process.interpreters_head), interpreter != 0,
              var tstate = memory.uint64(at: interpreter &+ UInt64(process.offsets.interp_threads_head))
        else { return }
        var visited = 0
        while tstate != 0 && visited < Int(PY_MAX_THREADS_SCAN) {
            guard body(tstate) else { return }
            visited += 1
            tstate = memory.uint64(at: tstate &+ UInt64(process.offsets.tstate_next)) ?? 0
        }
    }

    /// `current_frame_of`: the frame the thread executes, 0 if none.
    func currentFrame(of tstate: UInt64) -> UInt64 {
        let offsets = process.offsets
        var frame = memory.uint64(at: tstate &+ UInt64(offsets.tstate_frame)) ?? 0
        if frame != 0 && offsets.cframe_current_frame != UInt16(PY_OFFSET_NONE) {
            frame = memory.uint64(at: frame &+ UInt64(offsets.cframe_current_frame)) ?? 0
        }
        return frame
    }

    /// The frames from `leaf` outwards as the iterator's bpf_loop of `walk_one_frame` records them: at most
    /// PY_MAX_FRAMES steps and entries (boundaries included). Flags: SAMPLE_READ_ERROR when a frame could not be read,
    /// SAMPLE_TRUNCATED when frames were left.
    func frames(from leaf: UInt64) -> (frames: [py_frame], flags: UInt32) {
        let offsets = process.offsets
        let maxFrames = Int(PY_MAX_FRAMES), bufferSize = Int(PY_FRAME_READ_MAX)
        let readSize = min(Int(offsets.frame_read_size), bufferSize)
        let none = UInt16(PY_OFFSET_NONE)
        var frames: [py_frame] = []
        var flags: UInt32 = 0
        var frame = leaf
        func appendBoundary() {
            if frames.count < maxFrames { frames.append(py_frame(code: 0, instr: PY_FRAME_BOUNDARY, checksum: 0)) }
        }
        for _ in 0..<maxFrames {
            guard frame != 0, frames.count < maxFrames else { break }
            guard let read = try? memory.read(frame, count: readSize) else {
                flags |= SAMPLE_READ_ERROR.rawValue
                frame = 0
                break
            }
            let buffer = read + [UInt8](repeating: 0, count: bufferSize + 8 - readSize)
            // The BPF program's masks, which keep its loads inside its buffer, pick the same fields here.
            func u64(_ offset: UInt16) -> UInt64 { buffer.uint64(at: Int(offset) & (bufferSize - 8)) ?? 0 }
            func u32(_ offset: UInt16) -> UInt32 { buffer.uint32(at: Int(offset) & (bufferSize - 4)) ?? 0 }
            func byte(_ offset: UInt16) -> UInt8 { buffer[Int(offset) & (bufferSize - 1)] }
            let code = u64(offsets.frame_code) & ~UInt64(offsets.code_tag_bits)
            frame = u64(offsets.frame_previous)
            if offsets.frame_owner != none && byte(offsets.frame_owner) >= offsets.owner_boundary {
                appendBoundary()
                continue
            }
            let instr = offsets.instr_kind == UInt8(PY_INSTR_LASTI.rawValue)
                ? u32(offsets.frame_instr) : UInt32(truncatingIfNeeded: u64(offsets.frame_instr) &- code)
            let window = code != 0 ? memory.uint64(at: code &+ UInt64(offsets.code_checksum)) ?? 0 : 0
            frames.append(py_frame(code: code, instr: instr, checksum: UInt32(truncatingIfNeeded: (window &* 0x9E37_79B9_7F4A_7C15) >> 32)))
            if offsets.frame_is_entry != none && byte(offsets.frame_is_entry) != 0 { appendBoundary() }
        }
        if frame != 0 { flags |= SAMPLE_TRUNCATED.rawValue }
        return (frames, flags)
    }
}

// MARK: - Thread states

/// Which thread runs which of the interpreter's thread states, as far as userspace can tell. The BPF program matches a
/// thread's fsbase, its pthread_self(), against each state's `thread_id`; /proc shows no thread's fsbase, so the
/// threads are paired with the listed states by what userspace can see, most certain first:
/// 1. `native_thread_id` (3.11+): the thread's kernel id, stored by CPython next to `thread_id`.
/// 2. The robust futex list head glibc registers for every thread (get_robust_list, which only checks permission):
///    it lies inside the thread's struct pthread, at one offset from pthread_self() for one libc build. The offset
///    is the difference (below 4 KiB) that pairs the most threads with listed states; of equally good ones, our own
///    libc's.
/// 3. Then one thread and one state left over belong together.
/// Each thread's pthread_self() found so stands for its fsbase: the walk then finds its state as `scan_thread_list`.
struct ThreadIdentities: Equatable {
    /// pthread_self() of each thread paired with a listed state.
    var threadPointers: [Int32: UInt64] = [:]
    /// Listed states no thread was paired with: a thread without a pointer may be one of theirs.
    var unmatchedStates = 0

    /// Offsets of the robust list head inside struct pthread that are considered (glibc x86_64: 0x2e0).
    static let robustListOffsetLimit: UInt64 = 4096

    static func match(threads: [Int32], listed: [PythonFrameWalk.ListedThreadState], ownRobustListOffset: UInt64?,
                      robustListHead: (Int32) -> UInt64?) -> ThreadIdentities {
        var identities = ThreadIdentities()
        var states = listed.filter { $0.threadPointer != 0 }
        var unmatched = threads
        func pair(_ tid: Int32, _ pointer: UInt64) {
            identities.threadPointers[tid] = pointer
            unmatched.removeAll { $0 == tid }
            if let index = states.firstIndex(where: { $0.threadPointer == pointer }) { states.remove(at: index) }
        }

        for state in listed where state.threadPointer != 0 {
            if let id = state.nativeThreadID, let tid = Int32(exactly: id), unmatched.contains(tid) { pair(tid, state.threadPointer) }
        }

        if !states.isEmpty && !unmatched.isEmpty {
            let heads = Dictionary(uniqueKeysWithValues: unmatched.compactMap { tid in robustListHead(tid).map { (tid, $0) } }
                .filter { $0.1 != 0 })
            var pairedBy: [UInt64: Int] = [:]
            for (_, head) in heads {
                let offsets = Set(states.compactMap { state in
                    head >= state.threadPointer && head - state.threadPointer < robustListOffsetLimit ? head - state.threadPointer : nil
                })
                for offset in offsets { pairedBy[offset, default: 0] += 1 }
            }
            let most = pairedBy.values.max() ?? 0
            let best = pairedBy.filter { $0.value == most }.map(\.key)
            let offset = best.count == 1 ? best.first : best.first { $0 == ownRobustListOffset }
            if let offset {
                for (tid, head) in heads.sorted(by: { $0.key < $1.key }) where states.contains(where: { $0.threadPointer == head &- offset }) {
                    pair(tid, head &- offset)
                }
            }
        }

        if states.count == 1 && unmatched.count == 1 { pair(unmatched[0], states[0].threadPointer) }
        identities.unmatchedStates = states.count
        return identities
    }

    /// The robust futex list head thread `tid` registered; nil when it cannot be read, 0 for none.
    static func robustListHead(tid: Int32) -> UInt64? {
        var head: UInt = 0
        return csystem_robust_list_head(tid, &head) == 0 ? UInt64(head) : nil
    }

    /// Where our own libc keeps a thread's robust list head in its struct pthread (it registers one per thread).
    static let ownRobustListOffset: UInt64? = {
        let pointer = UInt64(pthread_self())
        guard let head = robustListHead(tid: 0), head >= pointer, head - pointer < robustListOffsetLimit else { return nil }
        return head - pointer
    }()
}

// MARK: - Native frames

/// The BPF program's native unwinder (`find_mapping`, `find_row` and `unwind_native_step` in bpf/pybpfprof.bpf.c)
/// over the same mappings and rows, from the registers /proc/PID/task/TID/syscall shows: pc and sp, not rbp. rbp is
/// unknown until a frame's rule restores it from where the callee saved it; a rule that needs it before then (a CFA
/// from rbp, or code without a rule, which falls back to the frame pointer) ends the unwind there.
struct NativeUnwind {
    /// The entries of the process's `process_mappings`: sorted by start, not overlapping.
    let mappings: [exec_mapping]
    /// Entry `index` of `unwind_rows`; nil past its end.
    let row: (UInt32) -> unwind_row?
    let memory: TargetMemory

    struct Outcome: Equatable {
        /// Leaf first: pc, then return addresses; NATIVE_FRAME_POINTER_BIT marks one found by the frame pointer.
        var addresses: [UInt64] = []
        /// SAMPLE_NATIVE_COMPLETE, SAMPLE_NATIVE_TRUNCATED or SAMPLE_NATIVE_UNKNOWN_MAPPING, as the BPF unwinder sets them.
        var flags: UInt32 = 0
        /// The last frame's address when the unwind stopped because its rule needed rbp before it was known.
        var neededUnknownRBP: UInt64?
    }

    func unwind(pc: UInt64, sp: UInt64) -> Outcome {
        var outcome = Outcome()
        var pc = pc, sp = sp
        var bp: UInt64?
        var framePointerBit: UInt64 = 0
        for _ in 0...Int(NATIVE_MAX_FRAMES) {
            if outcome.addresses.count >= Int(NATIVE_MAX_FRAMES) {
                outcome.flags |= SAMPLE_NATIVE_TRUNCATED.rawValue
                break
            }
            let isLeaf = outcome.addresses.isEmpty
            outcome.addresses.append(pc | framePointerBit)
            // A return address may be the first instruction of the next function (after a noreturn call): look up the call.
            let lookup = isLeaf ? pc : pc &- 1
            guard let mapping = mapping(containing: lookup) else {
                outcome.flags |= SAMPLE_NATIVE_UNKNOWN_MAPPING.rawValue
                break
            }
            let found = row(of: mapping, at: lookup)
            let kind = found.map { UInt32($0.cfa_kind) } ?? UNWIND_NO_RULE.rawValue
            let cfaOffset = UInt64(bitPattern: Int64(found?.cfa_offset ?? 0))
            var cfa: UInt64
            var callerBP = bp
            switch kind {
            case UNWIND_CFA_RSP.rawValue:
                cfa = sp &+ cfaOffset
            case UNWIND_CFA_RBP.rawValue:
                guard let bp else {
                    outcome.neededUnknownRBP = pc
                    return outcome
                }
                cfa = bp &+ cfaOffset
            case UNWIND_CFA_PLT.rawValue:
                cfa = sp &+ 8 &+ ((pc & 15) >= cfaOffset ? 8 : 0)
            case UNWIND_END_OF_STACK.rawValue:
                outcome.flags |= SAMPLE_NATIVE_COMPLETE.rawValue
                return outcome
            case UNWIND_NO_RULE.rawValue:
                // The frame-pointer convention: [rbp] = caller's rbp, [rbp + 8] = return address.
                guard let bp else {
                    outcome.neededUnknownRBP = pc
                    return outcome
                }
                guard bp >= sp else { return outcome }
                cfa = bp &+ 16
                callerBP = memory.uint64(at: bp) ?? 0
            default:
                return outcome
            }
            if kind == UNWIND_NO_RULE.rawValue {
                framePointerBit = UInt64(NATIVE_FRAME_POINTER_BIT)
            } else {
                framePointerBit = 0
                if let found, found.rbp_offset != 0 {
                    guard let saved = memory.uint64(at: cfa &+ UInt64(bitPattern: Int64(found.rbp_offset) * 8)) else { return outcome }
                    callerBP = saved
                }
            }
            guard let returnAddress = memory.uint64(at: cfa &- 8) else { return outcome }
            // Callers live higher up the stack; anything else is a corrupt frame or a wrong rule.
            guard cfa > sp else { return outcome }
            if returnAddress == 0 {
                outcome.flags |= SAMPLE_NATIVE_COMPLETE.rawValue
                return outcome
            }
            pc = returnAddress
            sp = cfa
            bp = callerBP
        }
        return outcome
    }

    /// `find_mapping`: the mapping holding `pc`.
    private func mapping(containing pc: UInt64) -> exec_mapping? {
        guard let index = mappings.lastIndex(withKeyAtMost: pc, key: \.start), pc < mappings[index].end else { return nil }
        return mappings[index]
    }

    /// `find_row`: the last of the mapping's file's rows at or below `pc`.
    private func row(of mapping: exec_mapping, at pc: UInt64) -> unwind_row? {
        guard pc >= mapping.table_base, pc - mapping.table_base <= UInt64(UInt32.max) else { return nil }
        let address = UInt32(pc - mapping.table_base)
        var low = mapping.first_row, size = mapping.row_count
        guard size != 0, size <= UInt32(UNWIND_ROWS_PER_FILE_MAX) else { return nil }
        while size > 1 {
            let half = size / 2, middle = low &+ half
            guard let candidate = row(middle) else { return nil }
            if candidate.address <= address { low = middle }
            size -= half
        }
        guard let found = row(low), found.address <= address else { return nil }
        return found
    }
}

// MARK: - /proc

/// What the userspace reader takes from a thread's files under /proc/PID/task/TID. Parsing only: the unit tests give
/// it text.
enum ThreadProcFiles {
    struct SchedulerState: Equatable {
        /// `R` running or runnable, `S` sleeping, `D` disk sleep, ... (fs/proc/array.c)
        var state: Character
        /// The CPU it runs on, or last ran on.
        var cpu: UInt32
    }

    /// `stat`: the state (field 3) and the CPU (field 39). The command (field 2) may hold spaces and parentheses: the
    /// fields are counted from its closing parenthesis, the last one in the line.
    static func schedulerState(stat: String) -> SchedulerState? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 36, let state = fields[0].first, let cpu = UInt32(fields[36]) else { return nil }
        return SchedulerState(state: state, cpu: cpu)
    }

    /// The `task->__state` the iterator would have read for a state letter (include/linux/sched.h), so that both
    /// readings are described alike. A zombie's or dead task's is TASK_DEAD.
    static func kernelState(_ letter: Character) -> UInt32 {
        switch letter {
        case "R": return 0
        case "S": return 0x1
        case "D": return 0x2
        case "T": return 0x4
        case "t": return 0x8
        case "Z", "X": return 0x80
        case "P": return 0x40
        case "I": return 0x402
        default: return 0x1
        }
    }

    /// The user registers saved when the thread entered the kernel, as `syscall` shows them: `NR ARG1..ARG6 SP PC` in a
    /// system call, `-1 SP PC` in the kernel otherwise (a page fault); nil for `running` (or anything else).
    struct KernelEntry: Equatable {
        /// The system call number, negative when not in one.
        var systemCall: Int64
        var sp: UInt64
        var pc: UInt64
    }

    static func kernelEntry(syscall: String) -> KernelEntry? {
        let fields = syscall.split(whereSeparator: \.isWhitespace)
        guard fields.count == 3 || fields.count == 9, let number = Int64(fields[0]),
              let sp = hexadecimal(fields[fields.count - 2]), let pc = hexadecimal(fields[fields.count - 1])
        else { return nil }
        return KernelEntry(systemCall: number, sp: sp, pc: pc)
    }

    /// `status`: voluntary + involuntary context switches, the iterator's nvcsw + nivcsw.
    static func contextSwitches(status: String) -> UInt64? {
        var voluntary: UInt64?, involuntary: UInt64?
        for line in status.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let value = UInt64(parts[1].trimming(while: \.isWhitespace))
            if parts[0] == "voluntary_ctxt_switches" { voluntary = value }
            if parts[0] == "nonvoluntary_ctxt_switches" { involuntary = value }
        }
        guard let voluntary, let involuntary else { return nil }
        return voluntary &+ involuntary
    }

    /// One line of `stack`: `[<ADDRESS>] FUNCTION+0xOFFSET/0xSIZE [MODULE]`, ADDRESS shown as 0 since Linux 4.x.
    struct KernelFrame: Equatable {
        var shownAddress: UInt64
        var function: String
        var offset: UInt64
        var size: UInt64
        /// "[module]", or "" for the kernel image.
        var module: String

        /// The return address: the shown one, else the function's address in kallsyms plus the offset.
        func address(names: KernelSymbolNames) -> UInt64? {
            if shownAddress != 0 { return shownAddress }
            return names.address(of: function, module: module, size: size).map { $0 &+ offset }
        }
    }

    /// The frames of `stack`, innermost first; lines that are not a frame are skipped.
    static func kernelFrames(stack: String) -> [KernelFrame] {
        stack.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("[<"), let close = line.firstRange(of: ">] ") else { return nil }
            let shown = hexadecimal(line[line.index(line.startIndex, offsetBy: 2)..<close.lowerBound]) ?? 0
            let words = line[close.upperBound...].split(separator: " ")
            guard let symbol = words.first, let plus = symbol.lastIndex(of: "+"), let slash = symbol.lastIndex(of: "/"),
                  plus < slash, let offset = hexadecimal(symbol[symbol.index(after: plus)..<slash]),
                  let size = hexadecimal(symbol[symbol.index(after: slash)...])
            else { return nil }
            let module = words.count > 1 && words[1].hasPrefix("[") ? String(words[1]) : ""
            return KernelFrame(shownAddress: shown, function: String(symbol[..<plus]), offset: offset, size: size, module: module)
        }
    }

    /// `0x7ffd1234` or `7ffd1234`.
    private static func hexadecimal(_ text: Substring) -> UInt64? {
        UInt64(text.hasPrefix("0x") ? text.dropFirst(2) : text, radix: 16)
    }
}

// MARK: - Records

extension Dumper.ThreadRecord {
    /// A record as the iterator writes one: `struct sample`'s header, then the kernel, native and Python frames (see
    /// SAMPLE_BODY_SIZE), each list cut at its maximum; the frame counts and `record_size` follow from the lists.
    init(thread: dump_thread, header: sample_header, kernel: [UInt64], native: [UInt64], python: [py_frame], notes: [String]) {
        let kernel = kernel.prefix(Int(KERNEL_MAX_FRAMES)), native = native.prefix(Int(NATIVE_MAX_FRAMES))
        let python = python.prefix(Int(PY_MAX_FRAMES))
        var header = header
        header.kernel_frame_count = UInt16(kernel.count)
        header.native_frame_count = UInt16(native.count)
        header.py_frame_count = UInt16(python.count)
        var bytes = withUnsafeBytes(of: header) { Array($0) }
        for address in kernel + native { withUnsafeBytes(of: address) { bytes += $0 } }
        for frame in python { withUnsafeBytes(of: frame) { bytes += $0 } }
        var thread = thread
        thread.record_size = UInt32(bytes.count)
        self.init(thread: thread, sample: bytes, notes: notes)
    }
}
