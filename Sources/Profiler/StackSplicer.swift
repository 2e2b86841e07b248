import ProfileModel

/// Splices a sample's Python frames into its native stack: each native frame of the interpreter's eval loop
/// (`_PyEval_EvalFrameDefault`, its `.cold` part included) is replaced by the Python frames that call was running.
///
/// Which Python frames one eval-loop call runs depends on the version: exactly one frame up to 3.10; from 3.11 the
/// BPF walk sends a boundary after the outermost frame of each call (`is_entry` in 3.11, the C-stack shim frame
/// from 3.12), so the frames come in runs, one run per call. Runs and eval-loop frames are matched one to one from
/// the leaf. When the counts disagree the frames are not interleaved at all: the sample keeps every frame, Python
/// frames above native ones, under a mismatch marker, and is counted.
enum StackSplicer {
    enum NativeRole: Equatable {
        /// An activation of the interpreter's eval loop: replaced by Python frames.
        case evalLoop
        /// An opcode handler of a tail-calling interpreter (`EvalLoop.Part.opcodeHandler`): part of the eval-loop call
        /// next outward, or, with no such frame right below it, the call itself.
        case evalLoopHandler
        /// Other code of the interpreter itself (libpython, the python executable): hidden unless asked for.
        case interpreter
        /// Extensions, shared libraries, libc, JIT code.
        case other
    }

    typealias Outcome = SpliceOutcome

    struct Markers<Frame> {
        var nativeIncomplete: Frame
        var mismatch: Frame
    }

    /// - Parameters:
    ///   - native: native frames, leaf first, with their roles.
    ///   - pythonRuns: runs of Python frames, innermost run first, each leaf first.
    ///   - nativeComplete: the native unwind reached the thread's outermost frame.
    /// - Returns: the stack, root first.
    static func splice<Frame>(
        native: [(frame: Frame, role: NativeRole)], pythonRuns: [[Frame]], nativeComplete: Bool,
        showInterpreterFrames: Bool, markers: Markers<Frame>
    ) -> (stack: [Frame], outcome: Outcome) {
        if native.isEmpty {
            return (pythonRuns.flatMap { $0 }.reversed(), .pythonOnly)
        }
        // Only a tail-calling interpreter has handler frames: other stacks are used as they are, not copied per sample.
        let native = !native.contains(where: { $0.role == .evalLoopHandler }) ? native : native.indices.map { index -> (frame: Frame, role: NativeRole) in
            guard native[index].role == .evalLoopHandler else { return native[index] }
            let outward = index + 1 < native.count ? native[index + 1].role : nil
            let partOfOutwardCall = outward == .evalLoop || outward == .evalLoopHandler
            return (native[index].frame, partOfOutwardCall ? .interpreter : .evalLoop)
        }
        func shown(_ role: NativeRole) -> Bool { role == .other || showInterpreterFrames }
        let evalFrames = native.reduce(0) { $0 + ($1.role == .evalLoop ? 1 : 0) }
        let fits = evalFrames == pythonRuns.count || (!nativeComplete && evalFrames < pythonRuns.count)
        guard fits else {
            var leafFirst = native.filter { shown($0.role) }.map(\.frame)
            leafFirst += pythonRuns.flatMap { $0 }
            leafFirst.append(markers.mismatch)
            return (leafFirst.reversed(), .mismatch)
        }
        var leafFirst: [Frame] = []
        var run = 0
        for (frame, role) in native {
            switch role {
            case .evalLoop:
                // The run's frames are the eval loop's callees: leafward of it.
                leafFirst += pythonRuns[run]
                if showInterpreterFrames { leafFirst.append(frame) }
                run += 1
            case .interpreter, .other, .evalLoopHandler:
                if shown(role) { leafFirst.append(frame) }
            }
        }
        if nativeComplete { return (leafFirst.reversed(), .spliced) }
        leafFirst.append(markers.nativeIncomplete)
        for outer in pythonRuns[run...] { leafFirst += outer }
        return (leafFirst.reversed(), .nativeIncomplete)
    }

    /// Splits the BPF walk's Python frames (leaf first, with boundaries) into runs, one per eval-loop call.
    /// Up to 3.10 each frame is its own run; from 3.11 runs end at boundaries. Frames after the last boundary (a
    /// truncated walk) form a last run. A boundary at the leaf is an eval-loop call that has not pushed its first frame
    /// yet (an empty run); any other boundary right after one closes no call: 3.15 ends every thread's chain in a
    /// sentinel frame (`base_frame`) after the outermost call's entry frame.
    static func runs<Frame>(_ frames: [Frame?], everyFrameIsARun: Bool) -> [[Frame]] {
        if everyFrameIsARun { return frames.compactMap { $0.map { [$0] } } }
        var runs: [[Frame]] = []
        var current: [Frame] = []
        for frame in frames {
            if let frame {
                current.append(frame)
            } else if !current.isEmpty || runs.isEmpty {
                runs.append(current)
                current = []
            }
        }
        if !current.isEmpty { runs.append(current) }
        return runs
    }
}

/// How a sample's Python frames went into its native stack (`StackSplicer.splice`), counted in the recording's
/// statistics.
public enum SpliceOutcome: Hashable, Sendable, CustomStringConvertible {
    /// Every eval-loop frame got its run of Python frames.
    case spliced
    /// No native frames to splice into (Python-only recording, or no native stack).
    case pythonOnly
    /// The native unwind stopped before the thread's entry: the Python runs it did not reach are placed
    /// above an incomplete-unwind marker.
    case nativeIncomplete
    /// Eval-loop frames and Python runs disagree in number: nothing interleaved, marked.
    case mismatch

    public var description: String {
        switch self {
        case .spliced: return "spliced"
        case .pythonOnly: return "no native frames"
        case .nativeIncomplete: return "native unwind incomplete"
        case .mismatch: return "python/native mismatch"
        }
    }
}
