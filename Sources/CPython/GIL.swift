import Native

/// How to tell, from a thread's `PyThreadState*`, whether that thread holds the GIL at this moment: the reads `record
/// --mode gil` makes in the BPF program for each sample, and `holdsGIL(tstate:memory:)` makes from userspace.
///
/// CPython keeps this in a different place in almost every version:
/// - 2.7-3.11 keep the holder's thread state in one pointer-sized slot, set when a thread takes the GIL and NULL while
///   it is released (`PyEval_SaveThread` swaps it out before releasing): the exported global `_PyThreadState_Current`
///   (2.7; 3.6, an `_Py_atomic_address` whose first member is the pointer), then `_PyRuntime.gilstate.tstate_current`.
/// - 3.12 made that slot a thread-local, which another thread cannot read; the GIL itself (`interp->ceval.gil`) names
///   its last holder and whether it is locked.
/// - 3.13 added a per-thread flag, a bit of `_status`; 3.14 made it an int of its own.
/// The 3.13+ flag needs one read; the GIL's fields would work there too, but need three.
public enum GILProbe: Equatable, Sendable {
    /// 2.7-3.11: `*(PyThreadState **)address == tstate`.
    case holderSlot(address: UInt64)
    /// 3.12: with `gil = *(void **)(*(void **)(tstate + tstateInterp) + cevalGIL)`, the thread holds the GIL iff
    /// `*(int *)(gil + locked) == 1 && *(PyThreadState **)(gil + lastHolder) == tstate`. `last_holder` stays set after
    /// a release, so `locked` must be checked too; there is a moment in `take_gil` when `locked` is already 1 and
    /// `last_holder` still the previous holder, too short to matter to a sampler.
    case interpreterGIL(tstateInterp: Int, cevalGIL: Int, locked: Int, lastHolder: Int)
    /// 3.13+: `(*(uint32_t *)(tstate + offset) & mask) != 0`: the `_status` bit field word in 3.13, `int holds_gil` from
    /// 3.14 (all bits set in `mask`).
    case threadStateFlag(offset: Int, mask: UInt32)

    /// The probe `offsets` describe, for an interpreter whose holder slot (2.7-3.11) is at `holderSlot`; nil when the
    /// version needs a slot and there is none.
    init?(offsets: PythonOffsets, holderSlot: UInt64?) {
        if let offset = offsets.tstateHoldsGIL, let mask = offsets.tstateHoldsGILMask {
            self = .threadStateFlag(offset: offset, mask: mask)
        } else if let cevalGIL = offsets.interpCevalGIL, let locked = offsets.gilLocked, let lastHolder = offsets.gilLastHolder {
            self = .interpreterGIL(tstateInterp: offsets.tstateInterp, cevalGIL: cevalGIL, locked: locked, lastHolder: lastHolder)
        } else if let holderSlot {
            self = .holderSlot(address: holderSlot)
        } else {
            return nil
        }
    }

    /// Whether the thread whose state is at `tstate` holds the GIL, read from the process's memory now. Throws when a
    /// read fails (a thread state freed meanwhile, an exited process).
    public func holdsGIL(tstate: UInt64, memory: some MemoryReading) throws -> Bool {
        switch self {
        case .holderSlot(let address):
            return try memory.readUInt64(address) == tstate
        case .interpreterGIL(let tstateInterp, let cevalGIL, let locked, let lastHolder):
            let interpreter = try memory.readUInt64(tstate &+ UInt64(tstateInterp))
            let gil = try memory.readUInt64(interpreter &+ UInt64(cevalGIL))
            return try memory.readUInt32(gil &+ UInt64(locked)) == 1 && memory.readUInt64(gil &+ UInt64(lastHolder)) == tstate
        case .threadStateFlag(let offset, let mask):
            return try memory.readUInt32(tstate &+ UInt64(offset)) & mask != 0
        }
    }
}

extension GILProbe: CustomStringConvertible {
    /// The probe as its case reads, addresses in hex: for logs and `dump`.
    public var description: String {
        switch self {
        case .holderSlot(let address):
            return "holderSlot(address: 0x\(String(address, radix: 16)))"
        case .interpreterGIL(let tstateInterp, let cevalGIL, let locked, let lastHolder):
            return "interpreterGIL(tstateInterp: \(tstateInterp), cevalGIL: \(cevalGIL), locked: \(locked), lastHolder: \(lastHolder))"
        case .threadStateFlag(let offset, let mask):
            return "threadStateFlag(offset: \(offset), mask: 0x\(String(mask, radix: 16)))"
        }
    }
}

extension PythonInterpreter {
    /// How to tell whether a thread holds the GIL in this interpreter; nil when this build lacks what it takes (see
    /// `gilProbeUnavailable`).
    public var gilProbe: GILProbe? {
        GILProbe(offsets: offsets, holderSlot: gilHolderSlot)
    }

    /// Why `gilProbe` is nil, as one line a user can read; nil when there is a probe.
    public var gilProbeUnavailable: String? {
        guard gilProbe == nil else { return nil }
        if offsets.runtimeSymbol == "interp_head" {
            return "\(binaryPath) (Python \(version)) does not define \(InterpreterLocator.currentThreadStateSymbol), where "
                + "Python \(version.major).\(version.minor) keeps the thread that holds the GIL: pybpfprof cannot tell which "
                + "thread holds it in process \(pid)"
        }
        return "pybpfprof does not know where Python \(version) keeps the thread that holds the GIL (process \(pid))"
    }

    /// The slot holding the GIL holder's thread state in 2.7-3.11: `_PyThreadState_Current` (2.7, 3.6) or
    /// `_PyRuntime.gilstate.tstate_current` (3.7-3.11).
    private var gilHolderSlot: UInt64? {
        if let offset = offsets.runtimeTstateCurrent { return runtimeAddress &+ UInt64(offset) }
        return currentThreadStateAddress
    }
}

/// Where a thread that waits for the GIL is blocked: in a futex on a word of the GIL's condition variables or mutexes
/// (`take_gil` waits on `cond` under `mutex`; a thread made to drop the GIL waits on `switch_cond` until another has
/// taken it), which lie in `struct _gil_runtime_state` from `cond` to its end. `record --mode wall` tells an off-CPU
/// interval spent there from other sleeps by the futex's address, which the BPF program reads from the thread's
/// registers as it entered the system call.
///
/// 3.7-3.11 keep the GIL in `_PyRuntime`; from 3.12 the main interpreter points at its own. 3.2-3.6 keep the same four
/// objects in statics of ceval.c, and 2.7 has a semaphore behind the static `PyThread_type_lock interpreter_lock`: local
/// symbols, which the full symbol table names (a 2.7 or 3.6 is only profiled with it: their `interp_head` is local too).
public enum GILWaitRange: Equatable, Sendable {
    /// 3.6 and 3.7-3.11: `[start, start + size)`.
    case address(start: UInt64, size: Int)
    /// 3.12+: with `gil = *(void **)(*(void **)interpretersHead + cevalGIL)`, `[gil + start, gil + start + size)`.
    case interpreterGIL(cevalGIL: Int, start: Int, size: Int)
    /// 2.7: `[*slot, *slot + size)`, the `sem_t` that `interpreter_lock` points at.
    case pointer(slot: UInt64, size: Int)

    /// ceval_gil.h's statics in 3.2-3.6: the mutexes and condition variables threads wait on for the GIL.
    static let staticNames = ["gil_cond", "gil_mutex", "switch_cond", "switch_mutex"]
    /// The four statics are spanned as one range when they lie this close together (they are adjacent in `.bss`, 176
    /// bytes with glibc, in every build seen); else `gil_cond` alone, where waiters spend their time.
    static let maximumStaticSpan: UInt64 = 256
    /// glibc's `sem_t` on x86_64, whose first word is the futex `sem_wait` sleeps on.
    static let semaphoreSize = 32

    /// The range of a 2.7 or 3.6 binary, at link-time addresses (see `relocated(by:)`), from its full symbol table; nil
    /// when the symbols are not there (a stripped build).
    public static func statics(in elf: ELFFile) -> GILWaitRange? {
        if let lock = elf.scanForSymbol(named: "interpreter_lock"), lock.size == 8 {
            return .pointer(slot: lock.value, size: semaphoreSize)
        }
        let symbols = staticNames.compactMap { elf.scanForSymbol(named: $0) }.filter { $0.value != 0 && $0.size > 0 && $0.size <= 128 }
        guard let cond = symbols.first(where: { $0.name == "gil_cond" }) else { return nil }
        let start = symbols.map(\.value).min() ?? cond.value
        let end = symbols.map { $0.value + $0.size }.max() ?? cond.value + cond.size
        if symbols.count == staticNames.count && end - start <= maximumStaticSpan {
            return .address(start: start, size: Int(end - start))
        }
        return .address(start: cond.value, size: Int(cond.size))
    }

    /// The range with its link-time addresses moved by a load bias.
    public func relocated(by bias: UInt64) -> GILWaitRange {
        switch self {
        case .address(let start, let size): return .address(start: start &+ bias, size: size)
        case .pointer(let slot, let size): return .pointer(slot: slot &+ bias, size: size)
        case .interpreterGIL: return self
        }
    }

    /// Whether `address`, a futex's, lies in the GIL's waiting words, read from the process's memory now.
    public func contains(_ address: UInt64, interpretersHead: UInt64, memory: some MemoryReading) throws -> Bool {
        let first: UInt64, size: Int
        switch self {
        case .address(let start, let bytes):
            (first, size) = (start, bytes)
        case .interpreterGIL(let cevalGIL, let start, let bytes):
            let gil = try memory.readUInt64(try memory.readUInt64(interpretersHead) &+ UInt64(cevalGIL))
            guard gil != 0 else { return false }
            (first, size) = (gil &+ UInt64(start), bytes)
        case .pointer(let slot, let bytes):
            let lock = try memory.readUInt64(slot)
            guard lock != 0 else { return false }
            (first, size) = (lock, bytes)
        }
        return address >= first && address - first < UInt64(size)
    }
}

extension PythonInterpreter {
    /// Where this interpreter's threads wait for the GIL; nil for a 2.7 or 3.6 without its local symbols (see
    /// `GILWaitRange`).
    public var gilWaitRange: GILWaitRange? {
        if let staticGILWaitRange { return staticGILWaitRange }
        guard let cond = offsets.gilCond, let size = offsets.gilSize, size > cond else { return nil }
        if let runtimeGIL = offsets.runtimeGIL {
            return .address(start: runtimeAddress &+ UInt64(runtimeGIL + cond), size: size - cond)
        }
        if let cevalGIL = offsets.interpCevalGIL { return .interpreterGIL(cevalGIL: cevalGIL, start: cond, size: size - cond) }
        return nil
    }
}

/// One entry of an interpreter's thread list.
public struct ThreadStateEntry: Equatable, Sendable {
    /// The `PyThreadState*`.
    public var address: UInt64
    /// `thread_id`: its thread's `pthread_self()` (what `threading.get_ident()` returns).
    public var threadID: UInt64
    /// `native_thread_id` (3.11+): its thread's kernel id; nil before 3.11.
    public var nativeThreadID: UInt64?

    public init(address: UInt64, threadID: UInt64, nativeThreadID: UInt64?) {
        self.address = address
        self.threadID = threadID
        self.nativeThreadID = nativeThreadID
    }
}

extension PythonInterpreter {
    /// The thread states of the first interpreter (the main one), in list order (the newest thread first), at most
    /// `limit` of them: a list that does not end by then is taken for a cycle read while it changed. Empty before the
    /// interpreter exists; throws when a read fails.
    public func threadStates(memory: some MemoryReading, limit: Int = 1024) throws -> [ThreadStateEntry] {
        let interpreter = try memory.readUInt64(interpretersHeadAddress)
        guard interpreter != 0 else { return [] }
        var entries: [ThreadStateEntry] = []
        var tstate = try memory.readUInt64(interpreter &+ UInt64(offsets.interpThreadsHead))
        while tstate != 0 && entries.count < limit {
            entries.append(ThreadStateEntry(
                address: tstate, threadID: try memory.readUInt64(tstate &+ UInt64(offsets.tstateThreadId)),
                nativeThreadID: try offsets.tstateNativeThreadId.map { try memory.readUInt64(tstate &+ UInt64($0)) }))
            tstate = try memory.readUInt64(tstate &+ UInt64(offsets.tstateNext))
        }
        return entries
    }
}
