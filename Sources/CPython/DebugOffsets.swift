import Native

/// CPython 3.13+ publishes its own struct offsets in `_Py_DebugOffsets`, the first field of `_PyRuntime`.
/// pybpfprof reads them from the process and checks them against the generated table: a build with a
/// different layout (another compiler, a patched interpreter) is profiled with its own values.
enum DebugOffsets {
    static let cookie = Array("xdebugpy".utf8)

    /// Replaces every table value that the process's `_Py_DebugOffsets` contradicts and returns the
    /// names of the fields that differed.
    static func reconcile(
        _ offsets: inout PythonOffsets, layout: DebugOffsetsLayout, pid: Int32, runtimeAddress: UInt64
    ) throws -> [String] {
        let bytes: [UInt8]
        do {
            bytes = try ProcessMemory(pid: pid).read(runtimeAddress, count: layout.size)
        } catch {
            throw InterpreterError.unreadable(pid: pid, reason: "reading _Py_DebugOffsets: \(error)")
        }
        guard Array(bytes.prefix(8)) == cookie else {
            throw InterpreterError.unreadable(pid: pid, reason: "_Py_DebugOffsets has no 'xdebugpy' cookie")
        }
        if let hex = bytes.uint64(at: layout.version) {
            let version = PythonVersion(hex: UInt32(truncatingIfNeeded: hex))
            guard version.major == offsets.major, version.minor == offsets.minor else {
                throw InterpreterError.unreadable(
                    pid: pid, reason: "_Py_DebugOffsets says \(version), the binary \(offsets.major).\(offsets.minor)")
            }
        }
        var differing: [String] = []
        func check(_ name: String, _ field: WritableKeyPath<PythonOffsets, Int>, _ position: Int) {
            guard let value = bytes.uint64(at: position), value < 1 << 20 else { return }
            if offsets[keyPath: field] != Int(value) {
                differing.append("\(name): table \(offsets[keyPath: field]), process \(value)")
                offsets[keyPath: field] = Int(value)
            }
        }
        check("interpreters_head", \.runtimeInterpretersHead, layout.runtimeInterpretersHead)
        check("threads_head", \.interpThreadsHead, layout.interpThreadsHead)
        check("thread_state.next", \.tstateNext, layout.tstateNext)
        check("thread_state.thread_id", \.tstateThreadId, layout.tstateThreadId)
        check("thread_state.current_frame", \.tstateFrame, layout.tstateCurrentFrame)
        check("interpreter_frame.previous", \.frameBack, layout.framePrevious)
        check("interpreter_frame.executable", \.frameCode, layout.frameExecutable)
        check("interpreter_frame.instr_ptr", \.frameInstr, layout.frameInstrPtr)
        check("code_object.filename", \.codeFilename, layout.codeFilename)
        check("code_object.name", \.codeName, layout.codeName)
        check("code_object.linetable", \.codeLineTable, layout.codeLineTable)
        check("code_object.firstlineno", \.codeFirstLineno, layout.codeFirstLineno)
        if let owner = bytes.uint64(at: layout.frameOwner), owner < 1 << 20, offsets.frameOwner != Int(owner) {
            differing.append("interpreter_frame.owner: table \(offsets.frameOwner ?? -1), process \(owner)")
            offsets.frameOwner = Int(owner)
        }
        if let qualname = bytes.uint64(at: layout.codeQualname), qualname < 1 << 20, offsets.codeQualname != Int(qualname) {
            differing.append("code_object.qualname: table \(offsets.codeQualname ?? -1), process \(qualname)")
            offsets.codeQualname = Int(qualname)
        }
        if let adaptive = bytes.uint64(at: layout.codeCodeAdaptive), adaptive < 1 << 20,
           offsets.codeCodeAdaptive != Int(adaptive) {
            differing.append("code_object.co_code_adaptive: table \(offsets.codeCodeAdaptive ?? -1), process \(adaptive)")
            offsets.codeCodeAdaptive = Int(adaptive)
        }
        // The checksum window is the int before co_firstlineno, wherever that moved.
        offsets.codeChecksum = offsets.codeFirstLineno - 4
        return differing
    }
}
