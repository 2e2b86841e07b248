/// Where the fields pybpfprof reads live in one CPython minor version's structs.
///
/// The values come from `Scripts/gen-offsets`, which compiles a probe against each version's own headers
/// (internal ones included) and writes `GeneratedOffsets.swift`; nothing here is typed by hand. For 3.13+
/// the process's own `_Py_DebugOffsets` is read and checked against the table (see `DebugOffsets`).
public struct PythonOffsets: Equatable, Sendable {
    /// How a frame records its current instruction.
    public enum InstructionKind: Sendable, Equatable {
        /// `int f_lasti`: byte offset of the last instruction in `co_code` (3.8, 3.9).
        case lastiBytes
        /// `int f_lasti`: index of the last instruction in code units of 2 bytes (3.10).
        case lastiCodeUnits
        /// Pointer into the code object's inline bytecode (`prev_instr` 3.11-3.12, `instr_ptr` 3.13+).
        case pointer
    }

    public var major: Int
    public var minor: Int

    // Runtime, interpreter and thread state.
    /// `offsetof(_PyRuntimeState, interpreters.head)`
    public var runtimeInterpretersHead: Int
    /// `PyInterpreterState.tstate_head` (≤3.10) or `.threads.head` (3.11+)
    public var interpThreadsHead: Int
    public var tstateNext: Int
    public var tstateThreadId: Int
    /// `PyThreadState.native_thread_id`, the kernel's id of the thread (3.11+), else nil: 3.8-3.10 keep it only in
    /// their `threading.Thread` objects.
    public var tstateNativeThreadId: Int?
    /// `PyThreadState.frame` (≤3.10), `.cframe` (3.11, 3.12) or `.current_frame` (3.13+)
    public var tstateFrame: Int
    /// `_PyCFrame.current_frame` when `tstateFrame` points at a CFrame (3.11, 3.12), else nil.
    public var cframeCurrentFrame: Int?

    // Frames: PyFrameObject (≤3.10) or _PyInterpreterFrame (3.11+).
    public var frameBack: Int
    public var frameCode: Int
    public var frameInstr: Int
    /// `_PyInterpreterFrame.owner` (3.11+), else nil.
    public var frameOwner: Int?
    /// The lowest `owner` of a frame that runs no Python code, else nil (3.11 marks `is_entry` instead): the
    /// C-stack shim frame (`FRAME_OWNED_BY_CSTACK`, 3.12, 3.13) or the entry frame every
    /// `_PyEval_EvalFrameDefault` call pushes (`FRAME_OWNED_BY_INTERPRETER`, 3.14+). Such a frame is a boundary.
    public var frameBoundaryOwner: Int?
    /// Low bits of `f_executable` that tag the pointer rather than address the code object (`Py_TAG_BITS`: 3.14
    /// made it a `_PyStackRef`), else 0.
    public var frameCodeTagBits: Int
    /// `_PyInterpreterFrame.is_entry` (3.11 only): true on the first frame a `_PyEval_EvalFrameDefault` call runs.
    public var frameIsEntry: Int?
    public var instructionKind: InstructionKind

    // Code objects.
    public var codeFilename: Int
    public var codeName: Int
    /// `co_qualname` (3.11+), else nil.
    public var codeQualname: Int?
    public var codeFirstLineno: Int
    /// `co_lnotab` (≤3.9) or `co_linetable` (3.10+): a bytes object.
    public var codeLineTable: Int
    /// `co_code_adaptive`, the inline bytecode the instruction pointer points into (3.11+), else nil.
    public var codeCodeAdaptive: Int?
    /// Start of the 8 bytes hashed into the sample's code checksum: `co_firstlineno` and the int before it.
    public var codeChecksum: Int

    // Strings and bytes. The unicode fields are nil in 2.7, whose names are byte strings (`namesAreBytes`).
    /// `offsetof(PyASCIIObject, length)`
    public var unicodeLength: Int?
    /// `offsetof(PyASCIIObject, state)`: the bit field word with kind (bits 2-4), compact (5), ascii (6).
    public var unicodeState: Int?
    /// `sizeof(PyASCIIObject)`: where a compact ASCII string's characters start.
    public var unicodeASCIIData: Int?
    /// `sizeof(PyCompactUnicodeObject)`: where a compact non-ASCII string's characters start.
    public var unicodeCompactData: Int?
    /// `offsetof(PyVarObject, ob_size)` in a bytes object (2.7: `PyStringObject`).
    public var bytesSize: Int
    /// `offsetof(PyBytesObject, ob_sval)` (2.7: `PyStringObject`)
    public var bytesData: Int

    // Whether a thread holds the GIL: see `GILProbe`, which is built from these.
    /// `PyThreadState.interp`: the thread's interpreter.
    public var tstateInterp: Int
    /// `offsetof(_PyRuntimeState, gilstate.tstate_current)` (3.7-3.11), else nil: the `PyThreadState*` of the thread that
    /// holds the GIL, NULL while none does. (2.7 and 3.6 keep it in the exported global `_PyThreadState_Current`; 3.12
    /// made it a thread-local.)
    public var runtimeTstateCurrent: Int?
    /// `PyInterpreterState.ceval.gil` (3.12+), else nil: a pointer to the interpreter's `struct _gil_runtime_state`.
    public var interpCevalGIL: Int?
    /// `offsetof(struct _gil_runtime_state, locked)` (3.12+), else nil: an int, 1 while the GIL is held.
    public var gilLocked: Int?
    /// `offsetof(struct _gil_runtime_state, last_holder)` (3.12+), else nil: the last holder's `PyThreadState*`, left
    /// set when it releases the GIL (so only with `locked` does it name the holder).
    public var gilLastHolder: Int?
    /// The 4-byte word of `PyThreadState` that says whether its thread holds the GIL (3.13+), else nil: `_status`, a word
    /// of bit fields, in 3.13; `int holds_gil` from 3.14.
    public var tstateHoldsGIL: Int?
    /// The bits of the `tstateHoldsGIL` word that are `holds_gil`: the bit field's bit in 3.13 (as the compiler laid it
    /// out), every bit of the int from 3.14; nil with `tstateHoldsGIL`.
    public var tstateHoldsGILMask: UInt32?
    /// `PyThreadState.gil_requested`, an int, non-zero while the thread waits for the GIL (3.15+), else nil.
    public var tstateGILRequested: Int?
    /// `offsetof(_PyRuntimeState, ceval.gil)` (3.7-3.11), else nil: the GIL, a `struct _gil_runtime_state` in `_PyRuntime`
    /// (from 3.12 each interpreter points at its own: `interpCevalGIL`).
    public var runtimeGIL: Int?
    /// `offsetof(struct _gil_runtime_state, cond)` (3.7+), else nil: the GIL's condition variables and mutexes, which a
    /// thread waiting for the GIL blocks on, lie from here to the struct's end (`gilSize`). See `GILWaitRange`.
    public var gilCond: Int?
    /// `sizeof(struct _gil_runtime_state)` (3.7+), else nil.
    public var gilSize: Int?

    /// Where this version's `_Py_DebugOffsets` keeps the values checked against this table (3.13+).
    public var debugOffsets: DebugOffsetsLayout?

    public init(
        major: Int, minor: Int,
        runtimeInterpretersHead: Int, interpThreadsHead: Int, tstateNext: Int, tstateThreadId: Int, tstateNativeThreadId: Int?,
        tstateFrame: Int, cframeCurrentFrame: Int?,
        frameBack: Int, frameCode: Int, frameCodeTagBits: Int, frameInstr: Int, frameOwner: Int?, frameBoundaryOwner: Int?,
        frameIsEntry: Int?,
        instructionKind: InstructionKind,
        codeFilename: Int, codeName: Int, codeQualname: Int?, codeFirstLineno: Int, codeLineTable: Int,
        codeCodeAdaptive: Int?, codeChecksum: Int,
        unicodeLength: Int?, unicodeState: Int?, unicodeASCIIData: Int?, unicodeCompactData: Int?,
        bytesSize: Int, bytesData: Int,
        tstateInterp: Int, runtimeTstateCurrent: Int?, interpCevalGIL: Int?, gilLocked: Int?, gilLastHolder: Int?,
        tstateHoldsGIL: Int?, tstateHoldsGILMask: UInt32?, tstateGILRequested: Int?,
        runtimeGIL: Int?, gilCond: Int?, gilSize: Int?,
        debugOffsets: DebugOffsetsLayout?
    ) {
        self.major = major; self.minor = minor
        self.runtimeInterpretersHead = runtimeInterpretersHead; self.interpThreadsHead = interpThreadsHead
        self.tstateNext = tstateNext; self.tstateThreadId = tstateThreadId
        self.tstateNativeThreadId = tstateNativeThreadId
        self.tstateFrame = tstateFrame; self.cframeCurrentFrame = cframeCurrentFrame
        self.frameBack = frameBack; self.frameCode = frameCode; self.frameInstr = frameInstr
        self.frameOwner = frameOwner; self.frameBoundaryOwner = frameBoundaryOwner; self.frameCodeTagBits = frameCodeTagBits
        self.frameIsEntry = frameIsEntry
        self.instructionKind = instructionKind
        self.codeFilename = codeFilename; self.codeName = codeName; self.codeQualname = codeQualname
        self.codeFirstLineno = codeFirstLineno; self.codeLineTable = codeLineTable
        self.codeCodeAdaptive = codeCodeAdaptive; self.codeChecksum = codeChecksum
        self.unicodeLength = unicodeLength; self.unicodeState = unicodeState
        self.unicodeASCIIData = unicodeASCIIData; self.unicodeCompactData = unicodeCompactData
        self.bytesSize = bytesSize; self.bytesData = bytesData
        self.tstateInterp = tstateInterp; self.runtimeTstateCurrent = runtimeTstateCurrent
        self.interpCevalGIL = interpCevalGIL; self.gilLocked = gilLocked; self.gilLastHolder = gilLastHolder
        self.tstateHoldsGIL = tstateHoldsGIL; self.tstateHoldsGILMask = tstateHoldsGILMask
        self.tstateGILRequested = tstateGILRequested
        self.runtimeGIL = runtimeGIL; self.gilCond = gilCond; self.gilSize = gilSize
        self.debugOffsets = debugOffsets
    }

    /// The generated table entry for a minor version, or nil when pybpfprof has none.
    public static func forVersion(major: Int, minor: Int) -> PythonOffsets? {
        generatedTable.first { $0.major == major && $0.minor == minor }
    }

    public static var supportedVersions: [(major: Int, minor: Int)] {
        generatedTable.map { ($0.major, $0.minor) }
    }

    /// The symbol whose address plus `runtimeInterpretersHead` holds the first interpreter: `_PyRuntime` (3.7+), or in
    /// 2.7 and 3.6 the static `interp_head` itself, which only a binary's full symbol table names.
    public var runtimeSymbol: String { (major, minor) >= (3, 7) ? "_PyRuntime" : "interp_head" }

    /// 2.7's names and file names are byte strings (`PyStringObject`), read with the bytes offsets.
    public var namesAreBytes: Bool { major == 2 }

    /// Most bytes of a frame the walk reads at once: the BPF program's PY_FRAME_READ_MAX (a test keeps the two equal).
    public static let frameReadLimit = 128

    /// Bytes of a frame struct the walk reads at once: up to the end of the last field it uses.
    public var frameReadSize: Int {
        let instructionSize = instructionKind == .pointer ? 8 : 4
        return [frameBack + 8, frameCode + 8, frameInstr + instructionSize, (frameOwner ?? 0) + 1, (frameIsEntry ?? 0) + 1].max()!
    }

    /// Whether each Python frame has its own call of the eval loop on the native stack (up to 3.10). From 3.11 one
    /// call runs every frame called from Python, and the walk marks where each call's frames end.
    public var evalLoopCallPerFrame: Bool { major < 3 || minor <= 10 }
}

/// Byte positions, inside `_Py_DebugOffsets` (the first field of `_PyRuntime` from 3.13), of the
/// `uint64_t` entries that correspond to `PythonOffsets` fields. Generated with the table.
public struct DebugOffsetsLayout: Equatable, Sendable {
    public var size: Int                     // sizeof(_Py_DebugOffsets)
    public var version: Int                  // offsetof(version): PY_VERSION_HEX of the process
    public var runtimeInterpretersHead: Int  // runtime_state.interpreters_head
    public var interpThreadsHead: Int        // interpreter_state.threads_head
    public var tstateNext: Int               // thread_state.next
    public var tstateThreadId: Int           // thread_state.thread_id
    public var tstateNativeThreadId: Int     // thread_state.native_thread_id
    public var tstateCurrentFrame: Int       // thread_state.current_frame
    public var framePrevious: Int            // interpreter_frame.previous
    public var frameExecutable: Int          // interpreter_frame.executable
    public var frameInstrPtr: Int            // interpreter_frame.instr_ptr
    public var frameOwner: Int               // interpreter_frame.owner
    public var codeFilename: Int             // code_object.filename
    public var codeName: Int                 // code_object.name
    public var codeQualname: Int             // code_object.qualname
    public var codeLineTable: Int            // code_object.linetable
    public var codeFirstLineno: Int          // code_object.firstlineno
    public var codeCodeAdaptive: Int         // code_object.co_code_adaptive
    public var freeThreaded: Int             // free_threaded: non-zero in a free-threaded build (another object layout)
    public var tstateSize: Int               // thread_state.size: sizeof(PyThreadState)
    public var frameSize: Int                // interpreter_frame.size: sizeof(_PyInterpreterFrame)
    public var codeSize: Int                 // code_object.size: sizeof(PyCodeObject)
    public var interpSize: Int               // interpreter_state.size: sizeof(PyInterpreterState)
    public var tstateInterp: Int             // thread_state.interp
    public var interpCevalGIL: Int           // interpreter_state.ceval_gil: the pointer to the interpreter's GIL
    // The embedded GIL (`interp->_gil`, the one the main interpreter's ceval.gil points at) and two of its fields, as
    // offsets in PyInterpreterState: the struct's own offsets of `locked` and `last_holder` are the differences.
    public var interpGIL: Int                // interpreter_state.gil_runtime_state
    public var interpGILLocked: Int          // interpreter_state.gil_runtime_state_locked
    public var interpGILHolder: Int          // interpreter_state.gil_runtime_state_holder
    /// The word holding `holds_gil`: thread_state.status in 3.13 (the bit field's word), thread_state.holds_gil in
    /// 3.15+; nil in 3.14, whose `_Py_DebugOffsets` publishes neither. The bit is never published: the table's.
    public var tstateHoldsGIL: Int?
    public var tstateGILRequested: Int?      // thread_state.gil_requested (3.15+), else nil

    public init(
        size: Int, version: Int, runtimeInterpretersHead: Int, interpThreadsHead: Int, tstateNext: Int,
        tstateThreadId: Int, tstateNativeThreadId: Int, tstateCurrentFrame: Int, framePrevious: Int, frameExecutable: Int,
        frameInstrPtr: Int, frameOwner: Int, codeFilename: Int, codeName: Int, codeQualname: Int,
        codeLineTable: Int, codeFirstLineno: Int, codeCodeAdaptive: Int, freeThreaded: Int, tstateSize: Int, frameSize: Int,
        codeSize: Int, interpSize: Int, tstateInterp: Int, interpCevalGIL: Int, interpGIL: Int, interpGILLocked: Int,
        interpGILHolder: Int, tstateHoldsGIL: Int?, tstateGILRequested: Int?
    ) {
        self.size = size; self.version = version
        self.runtimeInterpretersHead = runtimeInterpretersHead; self.interpThreadsHead = interpThreadsHead
        self.tstateNext = tstateNext; self.tstateThreadId = tstateThreadId
        self.tstateNativeThreadId = tstateNativeThreadId
        self.tstateCurrentFrame = tstateCurrentFrame; self.framePrevious = framePrevious
        self.frameExecutable = frameExecutable; self.frameInstrPtr = frameInstrPtr
        self.frameOwner = frameOwner; self.codeFilename = codeFilename; self.codeName = codeName
        self.codeQualname = codeQualname; self.codeLineTable = codeLineTable
        self.codeFirstLineno = codeFirstLineno; self.codeCodeAdaptive = codeCodeAdaptive
        self.freeThreaded = freeThreaded; self.tstateSize = tstateSize; self.frameSize = frameSize; self.codeSize = codeSize
        self.interpSize = interpSize; self.tstateInterp = tstateInterp; self.interpCevalGIL = interpCevalGIL
        self.interpGIL = interpGIL; self.interpGILLocked = interpGILLocked; self.interpGILHolder = interpGILHolder
        self.tstateHoldsGIL = tstateHoldsGIL; self.tstateGILRequested = tstateGILRequested
    }
}
