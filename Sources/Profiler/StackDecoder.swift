import CBPF
import CPython
import Native
import ProfileModel

/// Turns the BPF program's records of one process (`struct sample`: header, kernel return addresses, native
/// addresses, Python frames) into stacks, symbolized and spliced: Python frames in place of the eval loop's native
/// frames (StackSplicer), the interpreter's other frames hidden unless asked for, kernel frames below the
/// innermost user frame.
///
/// Generic over what a stack holds: the Recorder interns frames into its Profile and gets indices; `dump` takes the
/// frames themselves. Each distinct frame is resolved and interned once (by code object, native address or kernel
/// address), not once per sample. Not thread-safe: the Recorder uses it under its lock.
final class StackDecoder<FrameID: Hashable> {
    struct Stack {
        var header: sample_header
        /// Root first.
        var frames: [FrameID]
        /// nil when the record had no native frames.
        var outcome: StackSplicer.Outcome?
        var threadName: String
        /// A native address fell in no known mapping: the process mapped new code.
        var reachedUnknownMapping: Bool
    }

    private let symbolizer: PythonSymbolizer?
    /// Up to 3.10 every Python frame is a run of its own (`PythonOffsets.evalLoopCallPerFrame`).
    private let evalLoopCallPerFrame: Bool
    /// Which native frames are the eval loop's, in this interpreter's version.
    private let evalLoop: EvalLoop
    /// Its executable mappings, for native frames; replaced when the process maps new code.
    var native: NativeProcess? {
        didSet { nativeFrames = [:] }
    }
    private let kernelSymbols: KernelSymbolsSource?
    private let showInterpreterFrames: Bool
    private let intern: (Frame) -> FrameID
    private var pythonFrames: [PythonFrameKey: FrameID] = [:]
    private var nativeFrames: [NativeFrameKey: (frame: FrameID, role: StackSplicer.NativeRole, known: Bool)] = [:]
    private var kernelFrames: [UInt64: FrameID] = [:]
    private lazy var markers = (
        nativeIncomplete: intern(Frame(kind: .marker, name: "[native unwind incomplete]")),
        mismatch: intern(Frame(kind: .marker, name: "[python/native mismatch]")),
        notLoaded: intern(Frame(kind: .marker, name: "[native frames not loaded yet]")),
        truncated: intern(.truncated),
        noPython: intern(.noPython))
    /// Code objects that could not be resolved, by reason.
    private(set) var unresolvedFrames: [String: Int] = [:]

    /// - Parameters:
    ///   - interpreter: the process's interpreter; nil for a process that does not run Python.
    ///   - native: its executable mappings, for native frames; nil until they are loaded, or when native frames
    ///     are not collected.
    ///   - kernelSymbols: nil when kernel frames are not collected.
    init(interpreter: PythonInterpreter?, native: NativeProcess?, kernelSymbols: KernelSymbolsSource?, showInterpreterFrames: Bool,
         intern: @escaping (Frame) -> FrameID) {
        symbolizer = interpreter.map { PythonSymbolizer(interpreter: $0) }
        evalLoopCallPerFrame = interpreter?.offsets.evalLoopCallPerFrame ?? false
        evalLoop = EvalLoop(pythonMajor: interpreter?.version.major ?? 3)
        self.native = native
        self.kernelSymbols = kernelSymbols
        self.showInterpreterFrames = showInterpreterFrames
        self.intern = intern
    }

    /// The stack of one record; nil when the record is too short to hold a header.
    func decode(_ bytes: UnsafeRawBufferPointer) -> Stack? {
        guard let record = SampleRecord(bytes) else { return nil }
        return decode(record)
    }

    func decode(_ record: SampleRecord) -> Stack {
        // Python frames, leaf first; nil stands for a boundary between eval-loop calls.
        var python: [FrameID?] = []
        python.reserveCapacity(record.pythonCount)
        for index in 0..<record.pythonCount {
            let frame = record.pythonFrame(index)
            if frame.code == 0 && frame.instr == PY_FRAME_BOUNDARY {
                python.append(nil)
            } else {
                python.append(pythonFrame(frame))
            }
        }
        var runs = StackSplicer.runs(python, everyFrameIsARun: evalLoopCallPerFrame)
        // The walk stopped before the outermost Python frames: the marker stands where they are missing.
        if record.has(SAMPLE_TRUNCATED), !runs.isEmpty { runs[runs.count - 1].append(markers.truncated) }

        var nativeStack: [(frame: FrameID, role: StackSplicer.NativeRole)] = []
        nativeStack.reserveCapacity(record.nativeCount)
        var reachedUnknownMapping = record.has(SAMPLE_NATIVE_UNKNOWN_MAPPING)
        for index in 0..<record.nativeCount {
            let resolved = nativeFrame(raw: record.nativeAddress(index), isLeaf: index == 0)
            nativeStack.append((resolved.frame, resolved.role))
            if !resolved.known { reachedUnknownMapping = true }
        }

        var (stack, outcome) = StackSplicer.splice(
            native: nativeStack, pythonRuns: runs, nativeComplete: record.has(SAMPLE_NATIVE_COMPLETE),
            showInterpreterFrames: showInterpreterFrames,
            markers: .init(nativeIncomplete: markers.nativeIncomplete, mismatch: markers.mismatch))
        // Sampled while the process's tables were being compiled: say why this stack has no native frames
        // rather than let it pass for a complete one.
        if record.has(SAMPLE_NATIVE_NOT_LOADED) { stack.insert(markers.notLoaded, at: 0) }
        if stack.isEmpty { stack.append(markers.noPython) }
        // The kernel was running on the thread's behalf below its innermost user frame.
        for index in stride(from: record.kernelCount - 1, through: 0, by: -1) {
            stack.append(kernelFrame(record.kernelAddress(index)))
        }
        return Stack(header: record.header, frames: stack, outcome: record.nativeCount > 0 ? outcome : nil,
                     threadName: record.threadName, reachedUnknownMapping: reachedUnknownMapping)
    }

    private func pythonFrame(_ sampled: py_frame) -> FrameID {
        let key = PythonFrameKey(code: sampled.code, checksum: sampled.checksum, instruction: sampled.instr)
        if let known = pythonFrames[key] { return known }
        let frame: Frame
        switch symbolizer?.frame(sampled) ?? .failure(.malformed) {
        case .success(let resolved):
            frame = resolved
        case .failure(let reason):
            unresolvedFrames["\(reason)", default: 0] += 1
            frame = Frame(kind: .marker, name: "[unknown code 0x\(String(sampled.code, radix: 16))]")
        }
        let id = intern(frame)
        pythonFrames[key] = id
        return id
    }

    /// The leaf's address is the interrupted instruction; every other one is a return address, looked up one byte
    /// back, inside the call instruction. `known` is false for an address in no known mapping.
    private func nativeFrame(raw: UInt64, isLeaf: Bool) -> (frame: FrameID, role: StackSplicer.NativeRole, known: Bool) {
        let key = NativeFrameKey(raw: raw, isLeaf: isLeaf)
        if let known = nativeFrames[key] { return known }
        let address = raw & ~UInt64(NATIVE_FRAME_POINTER_BIT)
        let lookup = isLeaf ? address : address &- 1
        let byFramePointer = raw & UInt64(NATIVE_FRAME_POINTER_BIT) != 0 ? NativeNames.framePointerSuffix : ""
        var frame = Frame(kind: .native, name: "[unknown 0x\(String(address, radix: 16))]\(byFramePointer)")
        var role = StackSplicer.NativeRole.other
        let mapping = native?.mapping(containing: lookup)
        if let mapping {
            if mapping.path.isEmpty {
                frame.name = "[anonymous 0x\(String(address, radix: 16))]\(byFramePointer)"
            } else if let bias = mapping.bias {
                let linkTimeAddress = lookup &- bias
                let name: String
                if let symbol = mapping.symbolizer?.symbol(at: linkTimeAddress) {
                    name = NativeNames.withoutSymbolVersion(symbol.name)
                } else {
                    // No symbol (a stripped file): the start of the FDE covering the address stands for its function,
                    // so that the samples of all its instructions add up in one frame, in every output format.
                    let functionStart = mapping.symbolizer?.unnamedFunctionStart(containing: linkTimeAddress) ?? linkTimeAddress
                    name = unknownNativeFrameName(path: mapping.path, address: functionStart)
                    // Where it is, to name it once a debug file turns up (debuginfod, `report --debug-dir`).
                    if let buildID = mapping.symbolizer?.buildID, !buildID.isEmpty {
                        frame.unnamed = UnnamedNativeCode(buildID: buildID, address: functionStart)
                    }
                }
                frame.name = name + byFramePointer
                frame.file = lastPathComponent(mapping.path)
                if mapping.isInterpreter {
                    switch evalLoop.part(symbol: name) {
                    case .call: role = .evalLoop
                    case .opcodeHandler: role = .evalLoopHandler
                    case .none: role = .interpreter
                    }
                }
            } else {
                frame.name = unknownNativeFrameName(path: mapping.path, address: address - mapping.start) + byFramePointer
            }
        }
        let resolved = (intern(frame), role, mapping != nil)
        nativeFrames[key] = resolved
        return resolved
    }

    private func kernelFrame(_ address: UInt64) -> FrameID {
        if let known = kernelFrames[address] { return known }
        let frame: Frame
        // Waits for the symbols the first time (see KernelSymbolsSource); each address is named once.
        if let (symbol, _) = kernelSymbols?.symbols?.symbolize(address) {
            frame = Frame(kind: .kernel, name: symbol.name, file: symbol.module)
        } else {
            frame = Frame(kind: .kernel, name: "[kernel 0x\(String(address, radix: 16))]")
        }
        let id = intern(frame)
        kernelFrames[address] = id
        return id
    }

    private struct PythonFrameKey: Hashable {
        var code: UInt64
        var checksum: UInt32
        var instruction: UInt32
    }

    private struct NativeFrameKey: Hashable {
        var raw: UInt64
        var isLeaf: Bool
    }
}

/// Names the splicer and the frames depend on, the same for every frame type.
enum NativeNames {
    /// Ends the name of a frame found by following the frame pointer, where no unwind row covered its callee.
    static let framePointerSuffix = " [fp]"

    /// `__libc_start_main@@GLIBC_2.34` -> `__libc_start_main`: .symtab names versioned definitions that way, and the
    /// version says nothing about where the time went.
    static func withoutSymbolVersion(_ name: String) -> String {
        guard let at = name.firstIndex(of: "@"), at != name.startIndex else { return name }
        return String(name[..<at])
    }
}
