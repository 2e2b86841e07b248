@testable import Profiler
import CPython
import XCTest

/// Splicing with strings for frames: `E` marks an eval-loop frame, `H` an opcode handler of a tail-calling interpreter,
/// `I` another interpreter frame, anything else is outside the interpreter.
final class StackSplicerTests: XCTestCase {
    private let markers = StackSplicer.Markers(nativeIncomplete: "[incomplete]", mismatch: "[mismatch]")

    private func splice(_ native: [String], _ runs: [[String]], complete: Bool = true, interpreter: Bool = false)
        -> (stack: [String], outcome: StackSplicer.Outcome) {
        let roles = native.map { name -> (frame: String, role: StackSplicer.NativeRole) in
            (name, name.hasPrefix("E") ? .evalLoop : name.hasPrefix("H") ? .evalLoopHandler : name.hasPrefix("I") ? .interpreter : .other)
        }
        return StackSplicer.splice(native: roles, pythonRuns: runs, nativeComplete: complete,
                                   showInterpreterFrames: interpreter, markers: markers)
    }

    func testEachEvalLoopFrameIsReplacedByItsRun() {
        // Leaf first: inner C function, the eval loop running `callback`, outer C function, the eval loop running
        // `caller` and `main`, then the thread's entry.
        let native = ["inner", "I-call", "E1", "outer", "I-call2", "E2", "I-main", "libc_start"]
        let (stack, outcome) = splice(native, [["callback"], ["caller", "main"]])
        XCTAssertEqual(outcome, .spliced)
        XCTAssertEqual(stack, ["libc_start", "main", "caller", "outer", "callback", "inner"])
    }

    func testInterpreterFramesShownOnRequest() {
        let (stack, _) = splice(["inner", "E1", "I-main"], [["f", "g"]], interpreter: true)
        XCTAssertEqual(stack, ["I-main", "E1", "g", "f", "inner"])
    }

    func testIncompleteNativeUnwindPutsOuterRunsAboveAMarker() {
        let (stack, outcome) = splice(["inner", "E1", "outer"], [["callback"], ["caller"], ["main"]], complete: false)
        XCTAssertEqual(outcome, .nativeIncomplete)
        XCTAssertEqual(stack, ["main", "caller", "[incomplete]", "outer", "callback", "inner"])
    }

    func testCountMismatchIsMarkedNotInterleaved() {
        // A complete native stack with two eval-loop frames but one run of Python frames.
        let (stack, outcome) = splice(["inner", "E1", "outer", "E2", "root"], [["f"]])
        XCTAssertEqual(outcome, .mismatch)
        XCTAssertEqual(stack, ["[mismatch]", "f", "root", "outer", "inner"])
    }

    func testMoreEvalFramesThanRunsIsAMismatchEvenWhenIncomplete() {
        let (_, outcome) = splice(["E1", "E2"], [["f"]], complete: false)
        XCTAssertEqual(outcome, .mismatch)
    }

    func testNoNativeFramesKeepsPythonFrames() {
        let (stack, outcome) = splice([], [["f"], ["g", "h"]])
        XCTAssertEqual(outcome, .pythonOnly)
        XCTAssertEqual(stack, ["h", "g", "f"])
    }

    func testRunsSplitAtBoundaries() {
        XCTAssertEqual(StackSplicer.runs(["a", "b", nil, "c", nil], everyFrameIsARun: false), [["a", "b"], ["c"]])
        // A shim right at the leaf: the innermost eval-loop call has not pushed a frame yet.
        XCTAssertEqual(StackSplicer.runs([nil, "a", nil], everyFrameIsARun: false), [[], ["a"]])
        // A walk cut short after the last boundary keeps its frames as a last run.
        XCTAssertEqual(StackSplicer.runs(["a", nil, "b"], everyFrameIsARun: false), [["a"], ["b"]])
        XCTAssertEqual(StackSplicer.runs(["a", "b"], everyFrameIsARun: true), [["a"], ["b"]])
        // 3.15: the sentinel base frame after the outermost entry frame closes no call, at the leaf shim or not.
        XCTAssertEqual(StackSplicer.runs(["a", nil, "b", nil, nil], everyFrameIsARun: false), [["a"], ["b"]])
        XCTAssertEqual(StackSplicer.runs([nil, "a", nil, nil], everyFrameIsARun: false), [[], ["a"]])
    }

    /// The tail-calling interpreter of 3.14+ (clang builds: python-build-standalone, uv) runs each opcode in a handler
    /// function of its own, right above the `_PyEval_EvalFrameDefault` frame that set the call up: one call, not two.
    /// No such build is available here; the stack is the shape CPython's design gives (the handlers tail-call each
    /// other, and the entry frame escapes into the frame chain, so `_PyEval_EvalFrameDefault` stays on the stack).
    func testTailCallingInterpreterHandlersArePartOfTheirCall() {
        // Leaf first: C code called by a CALL handler running `callback`, outer C code called by another handler
        // running `caller` and `main`.
        let native = ["inner", "H-_TAIL_CALL_CALL", "E1", "outer", "H-_TAIL_CALL_CALL_BUILTIN_FAST.llvm.123", "E2", "libc_start"]
        let (stack, outcome) = splice(native, [["callback"], ["caller", "main"]])
        XCTAssertEqual(outcome, .spliced)
        XCTAssertEqual(stack, ["libc_start", "main", "caller", "outer", "callback", "inner"])
        // Sampled inside a handler: the leaf is the handler, the call below it.
        XCTAssertEqual(splice(["H-_TAIL_CALL_BINARY_OP", "E1", "libc_start"], [["f", "main"]]).stack, ["libc_start", "main", "f"])
        // A handler with no eval-loop frame below it stands for the call.
        XCTAssertEqual(splice(["H-_TAIL_CALL_BINARY_OP", "libc_start"], [["f"]]).outcome, .spliced)

        let loop = EvalLoop(pythonMajor: 3)
        XCTAssertEqual(loop.part(symbol: "_TAIL_CALL_CALL_BUILTIN_FAST.llvm.10282351651392433962"), .opcodeHandler)
        XCTAssertEqual(loop.part(symbol: "_TAIL_CALL_start_frame"), .opcodeHandler)
    }

    func testEvalLoopNamesIncludeCompilerSplitParts() {
        let loop = EvalLoop(pythonMajor: 3)
        XCTAssertEqual(loop.part(symbol: "_PyEval_EvalFrameDefault"), .call)
        XCTAssertEqual(loop.part(symbol: "_PyEval_EvalFrameDefault.cold"), .call)
        XCTAssertEqual(loop.part(symbol: "_PyEval_EvalFrameDefault.cold.12"), .call)
        XCTAssertEqual(loop.part(symbol: "_PyEval_EvalFrame"), .none)
        XCTAssertEqual(loop.part(symbol: "PyEval_EvalCode"), .none)
        // 3.6+'s PyEval_EvalFrameEx only hands the frame to _PyEval_EvalFrameDefault; in 2.7 it is the loop.
        XCTAssertEqual(loop.part(symbol: "PyEval_EvalFrameEx"), .none)
        XCTAssertEqual(EvalLoop(pythonMajor: 2).part(symbol: "PyEval_EvalFrameEx"), .call)
        XCTAssertEqual(EvalLoop(pythonMajor: 2).part(symbol: "_PyEval_EvalFrameDefault"), .none)
        XCTAssertEqual(NativeNames.withoutSymbolVersion("__libc_start_main@@GLIBC_2.34"), "__libc_start_main")
        XCTAssertEqual(NativeNames.withoutSymbolVersion("memcpy@GLIBC_2.2.5"), "memcpy")
        XCTAssertEqual(NativeNames.withoutSymbolVersion("plain"), "plain")
    }
}
