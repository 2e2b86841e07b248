@testable import Profiler
import CPython
import XCTest

/// Splicing with strings for frames: `E` marks an eval-loop frame, `I` another interpreter frame, anything else is
/// outside the interpreter.
final class StackSplicerTests: XCTestCase {
    private let markers = StackSplicer.Markers(nativeIncomplete: "[incomplete]", mismatch: "[mismatch]")

    private func splice(_ native: [String], _ runs: [[String]], complete: Bool = true, interpreter: Bool = false)
        -> (stack: [String], outcome: StackSplicer.Outcome) {
        let roles = native.map { name -> (frame: String, role: StackSplicer.NativeRole) in
            (name, name.hasPrefix("E") ? .evalLoop : name.hasPrefix("I") ? .interpreter : .other)
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

    func testEvalLoopNamesIncludeCompilerSplitParts() {
        XCTAssertTrue(EvalLoop.contains(symbol: "_PyEval_EvalFrameDefault"))
        XCTAssertTrue(EvalLoop.contains(symbol: "_PyEval_EvalFrameDefault.cold"))
        XCTAssertTrue(EvalLoop.contains(symbol: "_PyEval_EvalFrameDefault.cold.12"))
        XCTAssertFalse(EvalLoop.contains(symbol: "_PyEval_EvalFrame"))
        XCTAssertFalse(EvalLoop.contains(symbol: "PyEval_EvalCode"))
        XCTAssertEqual(NativeNames.withoutSymbolVersion("__libc_start_main@@GLIBC_2.34"), "__libc_start_main")
        XCTAssertEqual(NativeNames.withoutSymbolVersion("memcpy@GLIBC_2.2.5"), "memcpy")
        XCTAssertEqual(NativeNames.withoutSymbolVersion("plain"), "plain")
    }
}
