import CBPF
import CPython
import Foundation
import Native

/// Turns the BPF program's records of one process (`struct sample`: header, kernel return addresses, native
/// addresses, Python frames) into stacks of frames, symbolized and spliced as a recording's are: Python frames
/// in place of the eval loop's native frames (StackSplicer), the interpreter's other frames hidden unless asked
/// for, kernel frames below the innermost user frame.
///
/// Used by `dump`, which has no Profile to intern frames into. Recorder.handle and Recorder.nativeFrame do the
/// same work with interning and per-recording caches; they are meant to become users of this type (kept apart
/// for now so that the two could change independently).
final class StackDecoder {
    struct Stack {
        var header: sample_header
        /// Root first.
        var frames: [Frame]
        var outcome: StackSplicer.Outcome
        var threadName: String
    }

    private let symbolizer: PythonSymbolizer?
    private let pythonMinor: Int
    private let native: NativeProcess?
    private let kernelSymbols: KernelSymbols?
    private let showInterpreterFrames: Bool
    /// Each distinct frame is resolved once.
    private var pythonFrames: [PythonFrameKey: Frame] = [:]
    private var nativeFrames: [NativeFrameKey: (frame: Frame, role: StackSplicer.NativeRole)] = [:]
    /// Code objects that could not be resolved, by reason.
    private(set) var unresolvedFrames: [String: Int] = [:]

    static let markers = (
        nativeIncomplete: Frame(kind: .marker, name: "[native unwind incomplete]"),
        mismatch: Frame(kind: .marker, name: "[python/native mismatch]"),
        notLoaded: Frame(kind: .marker, name: "[native frames not loaded yet]"))

    /// - Parameters:
    ///   - interpreter: the process's interpreter; nil for a process that does not run Python.
    ///   - native: its executable mappings, for native frames; nil when native frames were not collected.
    ///   - kernelSymbols: nil when kernel frames were not collected.
    init(interpreter: PythonInterpreter?, native: NativeProcess?, kernelSymbols: KernelSymbols?, showInterpreterFrames: Bool) {
        symbolizer = interpreter.map { PythonSymbolizer(interpreter: $0) }
        pythonMinor = interpreter?.version.minor ?? 0
        self.native = native
        self.kernelSymbols = kernelSymbols
        self.showInterpreterFrames = showInterpreterFrames
    }

    /// The stack of one record; nil when the record is too short to hold a header.
    func decode(_ record: UnsafeRawBufferPointer) -> Stack? {
        let headerSize = MemoryLayout<sample_header>.size
        let frameSize = MemoryLayout<py_frame>.size
        guard record.count >= headerSize else { return nil }
        let header = record.loadUnaligned(as: sample_header.self)
        let kernelCount = min(Int(header.kernel_frame_count), (record.count - headerSize) / 8)
        let nativeStart = headerSize + kernelCount * 8
        let nativeCount = min(Int(header.native_frame_count), (record.count - nativeStart) / 8)
        let pythonStart = nativeStart + nativeCount * 8
        let frameCount = min(Int(header.py_frame_count), (record.count - pythonStart) / frameSize)
        let flags = UInt32(header.flags)

        // Python frames, leaf first; nil stands for a boundary between eval-loop calls.
        var python: [Frame?] = []
        python.reserveCapacity(frameCount)
        for index in 0..<frameCount {
            let frame = record.loadUnaligned(fromByteOffset: pythonStart + index * frameSize, as: py_frame.self)
            if frame.code == 0 && frame.instr == PY_FRAME_BOUNDARY {
                python.append(nil)
            } else {
                python.append(pythonFrame(frame))
            }
        }
        var runs = StackSplicer.runs(python, everyFrameIsARun: pythonMinor <= 10)
        // The walk stopped before the outermost Python frames: the marker stands where they are missing.
        if flags & SAMPLE_TRUNCATED.rawValue != 0, !runs.isEmpty { runs[runs.count - 1].append(.truncated) }

        var nativeStack: [(frame: Frame, role: StackSplicer.NativeRole)] = []
        nativeStack.reserveCapacity(nativeCount)
        for index in 0..<nativeCount {
            let raw = record.loadUnaligned(fromByteOffset: nativeStart + index * 8, as: UInt64.self)
            nativeStack.append(nativeFrame(raw: raw, isLeaf: index == 0))
        }

        var (stack, outcome) = StackSplicer.splice(
            native: nativeStack, pythonRuns: runs, nativeComplete: flags & SAMPLE_NATIVE_COMPLETE.rawValue != 0,
            showInterpreterFrames: showInterpreterFrames,
            markers: .init(nativeIncomplete: Self.markers.nativeIncomplete, mismatch: Self.markers.mismatch))
        if flags & SAMPLE_NATIVE_NOT_LOADED.rawValue != 0 { stack.insert(Self.markers.notLoaded, at: 0) }
        if stack.isEmpty { stack.append(.noPython) }
        // The kernel was running on the thread's behalf below its innermost user frame.
        for index in stride(from: kernelCount - 1, through: 0, by: -1) {
            stack.append(kernelFrame(record.loadUnaligned(fromByteOffset: headerSize + index * 8, as: UInt64.self)))
        }
        let threadName = withUnsafeBytes(of: header.comm) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        return Stack(header: header, frames: stack, outcome: outcome, threadName: threadName)
    }

    private func pythonFrame(_ sampled: py_frame) -> Frame {
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
        pythonFrames[key] = frame
        return frame
    }

    /// As Recorder.nativeFrame: the leaf's address is the interrupted instruction, every other one a return
    /// address, looked up one byte back, inside the call instruction.
    private func nativeFrame(raw: UInt64, isLeaf: Bool) -> (frame: Frame, role: StackSplicer.NativeRole) {
        let key = NativeFrameKey(raw: raw, isLeaf: isLeaf)
        if let known = nativeFrames[key] { return known }
        let address = raw & ~UInt64(NATIVE_FRAME_POINTER_BIT)
        let lookup = isLeaf ? address : address &- 1
        let byFramePointer = raw & UInt64(NATIVE_FRAME_POINTER_BIT) != 0 ? " [fp]" : ""
        var frame = Frame(kind: .native, name: "[unknown 0x\(String(address, radix: 16))]\(byFramePointer)")
        var role = StackSplicer.NativeRole.other
        if let mapping = native?.mapping(containing: lookup) {
            if mapping.path.isEmpty {
                frame.name = "[anonymous 0x\(String(address, radix: 16))]\(byFramePointer)"
            } else if let bias = mapping.bias {
                let linkTimeAddress = lookup &- bias
                let name = mapping.symbolizer?.symbol(at: linkTimeAddress).map { Recorder.withoutSymbolVersion($0.name) }
                    ?? unknownNativeFrameName(path: mapping.path, address: linkTimeAddress)
                frame.name = name + byFramePointer
                frame.file = (mapping.path as NSString).lastPathComponent
                if mapping.isInterpreter { role = Recorder.isEvalLoop(name) ? .evalLoop : .interpreter }
            } else {
                frame.name = unknownNativeFrameName(path: mapping.path, address: address - mapping.start) + byFramePointer
            }
        }
        nativeFrames[key] = (frame, role)
        return (frame, role)
    }

    private func kernelFrame(_ address: UInt64) -> Frame {
        guard let (symbol, _) = kernelSymbols?.symbolize(address) else {
            return Frame(kind: .kernel, name: "[kernel 0x\(String(address, radix: 16))]")
        }
        return Frame(kind: .kernel, name: symbol.name, file: symbol.module)
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
