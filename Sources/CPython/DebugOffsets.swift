import Native

/// CPython 3.13+ publishes its own struct offsets in `_Py_DebugOffsets`, the first field of `_PyRuntime`.
/// pybpfprof reads them from the process and checks them against the generated table: a build with a
/// different layout (another compiler, a patched interpreter, a patch release that moved a field: py-spy's
/// issue 852) is profiled with its own values. Values that do not fit the structs they describe, or a
/// free-threaded build, are refused: never a walk with offsets that would read the wrong fields.
enum DebugOffsets {
    static let cookie = Array("xdebugpy".utf8)

    /// Reads the process's `_Py_DebugOffsets` and reconciles the table with it.
    static func reconcile(
        _ offsets: inout PythonOffsets, layout: DebugOffsetsLayout, pid: Int32, version: PythonVersion, runtimeAddress: UInt64
    ) throws -> [String] {
        do {
            let bytes = try ProcessMemory(pid: pid).read(runtimeAddress, count: layout.size)
            return try reconcile(&offsets, layout: layout, debugOffsets: bytes)
        } catch let error as ProcessMemoryError {
            throw InterpreterError.unreadable(pid: pid, reason: "reading _Py_DebugOffsets: \(error)")
        } catch let error as DebugOffsetsError {
            switch error.kind {
            case .freeThreaded: throw InterpreterError.freeThreaded(pid: pid, version: version)
            case .unknownLayout: throw InterpreterError.unknownLayout(pid: pid, version: version, detail: error.description)
            }
        }
    }

    struct DebugOffsetsError: Error, CustomStringConvertible {
        enum Kind { case freeThreaded, unknownLayout }
        var kind: Kind
        var description: String
    }

    /// Replaces every table value that the process's `_Py_DebugOffsets` (its bytes) contradicts and
    /// returns a line for each field that differed.
    static func reconcile(
        _ offsets: inout PythonOffsets, layout: DebugOffsetsLayout, debugOffsets bytes: [UInt8]
    ) throws -> [String] {
        guard Array(bytes.prefix(8)) == cookie else {
            throw DebugOffsetsError(kind: .unknownLayout, description: "_Py_DebugOffsets has no 'xdebugpy' cookie")
        }
        if let hex = bytes.uint64(at: layout.version) {
            let version = PythonVersion(hex: UInt32(truncatingIfNeeded: hex))
            guard version.major == offsets.major, version.minor == offsets.minor else {
                throw DebugOffsetsError(
                    kind: .unknownLayout, description: "_Py_DebugOffsets says \(version), the binary \(offsets.major).\(offsets.minor)")
            }
        }
        if let freeThreaded = bytes.uint64(at: layout.freeThreaded), freeThreaded != 0 {
            throw DebugOffsetsError(kind: .freeThreaded, description: "free-threaded build")
        }
        var differing: [String] = []
        /// Adopts the process's value of one field when it is plausible and differs from the table's.
        func reconcile(_ name: String, _ table: Int?, at position: Int, store: (Int) -> Void) {
            guard let value = bytes.uint64(at: position), value < 1 << 20, table != Int(value) else { return }
            differing.append("\(name): table \(table.map(String.init) ?? "none"), process \(value)")
            store(Int(value))
        }
        reconcile("interpreters_head", offsets.runtimeInterpretersHead, at: layout.runtimeInterpretersHead) { offsets.runtimeInterpretersHead = $0 }
        reconcile("threads_head", offsets.interpThreadsHead, at: layout.interpThreadsHead) { offsets.interpThreadsHead = $0 }
        reconcile("thread_state.next", offsets.tstateNext, at: layout.tstateNext) { offsets.tstateNext = $0 }
        reconcile("thread_state.thread_id", offsets.tstateThreadId, at: layout.tstateThreadId) { offsets.tstateThreadId = $0 }
        reconcile("thread_state.native_thread_id", offsets.tstateNativeThreadId, at: layout.tstateNativeThreadId) {
            offsets.tstateNativeThreadId = $0
        }
        reconcile("thread_state.current_frame", offsets.tstateFrame, at: layout.tstateCurrentFrame) { offsets.tstateFrame = $0 }
        reconcile("interpreter_frame.previous", offsets.frameBack, at: layout.framePrevious) { offsets.frameBack = $0 }
        reconcile("interpreter_frame.executable", offsets.frameCode, at: layout.frameExecutable) { offsets.frameCode = $0 }
        reconcile("interpreter_frame.instr_ptr", offsets.frameInstr, at: layout.frameInstrPtr) { offsets.frameInstr = $0 }
        reconcile("interpreter_frame.owner", offsets.frameOwner, at: layout.frameOwner) { offsets.frameOwner = $0 }
        reconcile("code_object.filename", offsets.codeFilename, at: layout.codeFilename) { offsets.codeFilename = $0 }
        reconcile("code_object.name", offsets.codeName, at: layout.codeName) { offsets.codeName = $0 }
        reconcile("code_object.qualname", offsets.codeQualname, at: layout.codeQualname) { offsets.codeQualname = $0 }
        reconcile("code_object.linetable", offsets.codeLineTable, at: layout.codeLineTable) { offsets.codeLineTable = $0 }
        reconcile("code_object.firstlineno", offsets.codeFirstLineno, at: layout.codeFirstLineno) { offsets.codeFirstLineno = $0 }
        reconcile("code_object.co_code_adaptive", offsets.codeCodeAdaptive, at: layout.codeCodeAdaptive) { offsets.codeCodeAdaptive = $0 }
        // What the GIL tests read (GILProbe). The word holding holds_gil is published as thread_state.status in 3.13 (its
        // bit is the table's) and thread_state.holds_gil from 3.15; 3.14 publishes it nowhere.
        reconcile("thread_state.interp", offsets.tstateInterp, at: layout.tstateInterp) { offsets.tstateInterp = $0 }
        reconcile("interpreter_state.ceval_gil", offsets.interpCevalGIL, at: layout.interpCevalGIL) { offsets.interpCevalGIL = $0 }
        if let position = layout.tstateHoldsGIL {
            reconcile(offsets.major == 3 && offsets.minor == 13 ? "thread_state.status" : "thread_state.holds_gil",
                      offsets.tstateHoldsGIL, at: position) { offsets.tstateHoldsGIL = $0 }
        }
        if let position = layout.tstateGILRequested {
            reconcile("thread_state.gil_requested", offsets.tstateGILRequested, at: position) { offsets.tstateGILRequested = $0 }
        }
        // The process publishes the GIL's fields as offsets in the interpreter (of its embedded `_gil`): the differences
        // are their offsets in `struct _gil_runtime_state`, which ceval.gil points at.
        if let gil = bytes.uint64(at: layout.interpGIL) {
            func field(_ name: String, _ table: Int?, at position: Int, store: (Int) -> Void) {
                guard let value = bytes.uint64(at: position), value >= gil, value - gil < 1 << 20, table != Int(value - gil) else { return }
                differing.append("\(name): table \(table.map(String.init) ?? "none"), process \(value - gil)")
                store(Int(value - gil))
            }
            field("gil_runtime_state.locked", offsets.gilLocked, at: layout.interpGILLocked) { offsets.gilLocked = $0 }
            field("gil_runtime_state.last_holder", offsets.gilLastHolder, at: layout.interpGILHolder) { offsets.gilLastHolder = $0 }
        }
        // The checksum window is the int before co_firstlineno, wherever that moved.
        offsets.codeChecksum = offsets.codeFirstLineno - 4
        try checkFits(offsets, layout: layout, debugOffsets: bytes)
        return differing
    }

    /// Every field the walk reads lies inside the struct the process says it belongs to, and a frame's fields inside
    /// what the BPF program reads of a frame at once: anything else is a layout this pybpfprof does not know.
    static func checkFits(_ offsets: PythonOffsets, layout: DebugOffsetsLayout, debugOffsets bytes: [UInt8]) throws {
        func size(_ position: Int, _ name: String) throws -> Int {
            guard let value = bytes.uint64(at: position), value > 0, value < 1 << 24 else {
                throw DebugOffsetsError(kind: .unknownLayout, description: "\(name).size is implausible")
            }
            return Int(value)
        }
        let threadState = try size(layout.tstateSize, "thread_state")
        let frame = try size(layout.frameSize, "interpreter_frame")
        let code = try size(layout.codeSize, "code_object")
        let interpreter = try size(layout.interpSize, "interpreter_state")
        let fields: [(String, Int?, Int, Int)] = [  // name, offset, bytes read, struct size
            ("thread_state.next", offsets.tstateNext, 8, threadState),
            ("thread_state.thread_id", offsets.tstateThreadId, 8, threadState),
            ("thread_state.native_thread_id", offsets.tstateNativeThreadId, 8, threadState),
            ("thread_state.current_frame", offsets.tstateFrame, 8, threadState),
            ("thread_state.interp", offsets.tstateInterp, 8, threadState),
            ("thread_state.holds_gil", offsets.tstateHoldsGIL, 4, threadState),
            ("thread_state.gil_requested", offsets.tstateGILRequested, 4, threadState),
            ("interpreter_state.ceval_gil", offsets.interpCevalGIL, 8, interpreter),
            ("interpreter_frame.previous", offsets.frameBack, 8, frame),
            ("interpreter_frame.executable", offsets.frameCode, 8, frame),
            ("interpreter_frame.instr_ptr", offsets.frameInstr, 8, frame),
            ("interpreter_frame.owner", offsets.frameOwner, 1, frame),
            ("code_object.filename", offsets.codeFilename, 8, code),
            ("code_object.name", offsets.codeName, 8, code),
            ("code_object.qualname", offsets.codeQualname, 8, code),
            ("code_object.linetable", offsets.codeLineTable, 8, code),
            ("code_object.firstlineno", offsets.codeFirstLineno, 4, code),
            ("code_object.co_code_adaptive", offsets.codeCodeAdaptive, 0, code),
        ]
        for (name, offset, length, structSize) in fields {
            guard let offset else { continue }
            if offset < 0 || offset + length > structSize {
                throw DebugOffsetsError(kind: .unknownLayout, description: "\(name) at \(offset) is outside its \(structSize)-byte struct")
            }
        }
        if offsets.frameReadSize > PythonOffsets.frameReadLimit {
            throw DebugOffsetsError(
                kind: .unknownLayout,
                description: "a frame's fields end at byte \(offsets.frameReadSize), beyond the \(PythonOffsets.frameReadLimit) read per frame")
        }
    }
}
