import Foundation
import TestSupport
import XCTest

/// Native frames unwound in the kernel from call frame information (no frame pointers anywhere: the fixtures are
/// built with -O2 -fomit-frame-pointer, the pyenv CPythons and Debian's libraries without frame pointers), spliced
/// with the Python frames at the interpreter's eval loop.
final class MixedStackTests: IntegrationTestCase {
    private func isKernel(_ frame: ProfileFrame) -> Bool { frame.name.hasSuffix("_[k]") }

    /// Python `caller` calls the C function ext_outer_native, which calls the Python `callback`, which calls the C
    /// function ext_inner_native, where the time goes. On every supported CPython the default view shows exactly
    /// those four frames in that order (the interpreter's own native frames in between are hidden), with the
    /// Python frames on the lines that made the calls.
    func testExtensionCallingBackIntoPythonOnEveryInterpreter() throws {
        try checkExtensionCallingBackIntoPython()
    }

    /// The same, with the BPF program loaded as on Linux 5.10 (`--oldest-kernel-mode`): bounded loops chained by tail
    /// calls walk the native and Python stacks, and user registers come from the kernel stack.
    func testExtensionCallingBackIntoPythonInOldestKernelMode() throws {
        try checkExtensionCallingBackIntoPython(options: ["--oldest-kernel-mode"])
    }

    private func checkExtensionCallingBackIntoPython(options: [String] = []) throws {
        let workload = try Workload.load("native/callback_workload.py")
        let callerLine = try workload.line("caller-outer")
        let callbackLine = try workload.line("callback-inner")
        let expected = ["caller", "ext_outer_native", "callback", "ext_inner_native"]

        for (index, interpreter) in try PythonInterpreters.supported().enumerated() {
            // Built in the interpreter's root with its own compiler and headers, when it has one.
            let extensionDirectory = try buildCallbackExtension(for: interpreter, into: "ext-\(index)")
            try stage([workload.path], for: interpreter)
            let output = scratchFile("callback-\(index).folded")
            // 3 s of the workload's CPU time, whatever the machine's load (more with a slowdown factor): the tables of
            // the files it maps are compiled while it runs (0.6 to 0.9 s of it here, more for the roots' interpreters,
            // whose libc has a debug file), and until then its samples have Python frames only.
            let result = try runPyBPFProf(["record"] + options + ["--rate", "499", "-o", output, "--"]
                + interpreter.command([workload.path, extensionDirectory, "\(3 * Slowdown.factor)"])).requireSuccess()
            if !options.isEmpty {
                XCTAssertTrue(result.standardError.contains("tail-call walk"), "\(interpreter.label): the summary should name the path\n\(result.report)")
            }
            let stacks = try FoldedFile.stacks(at: output)
            let inInner = stacks.filter { $0.frames.last(where: { !isKernel($0) })?.name == "ext_inner_native" }
            let innerSamples = inInner.reduce(0) { $0 + $1.count }
            var exact = 0, marked = 0
            var other: [String: Int] = [:]
            for stack in inInner {
                let user = stack.frames.filter { !isKernel($0) }
                // The extension is loaded (dlopen) after the interpreter was registered: until its table is loaded
                // the unwinder stops at its frames, and says so. Counted apart, and bounded below.
                if user.contains(where: { $0.name == "[native unwind incomplete]" || $0.name == nativeFramesNotLoadedMarker }) {
                    marked += stack.count
                    continue
                }
                if let callerIndex = user.lastIndex(where: { $0.name == "caller" }),
                   user[callerIndex...].map(\.name) == expected,
                   user[callerIndex].line == callerLine, user[callerIndex + 2].line == callbackLine,
                   user[callerIndex + 1].file.hasPrefix("callback_ext"), user[callerIndex + 3].file.hasPrefix("callback_ext") {
                    exact += stack.count
                } else {
                    other[user.suffix(6).map(\.description).joined(separator: ";"), default: 0] += stack.count
                }
            }
            let share = Double(exact) / Double(max(innerSamples - marked, 1))
            print(String(format: "  %@: %d samples in ext_inner_native, %d marked incomplete (before the extension's table was loaded), "
                         + "%d of the rest (%.2f%%) exactly caller;ext_outer_native;callback;ext_inner_native",
                         interpreter.label, innerSamples, marked, exact, 100 * share))
            print("    \(result.recordingSummary)")
            // 3 s of CPU time at 499 Hz is about 1500 samples on any machine (1480-1510 measured, in 3.1 to 8.4 s of wall
            // time), 600-1310 of them in ext_inner_native (the fewest with 3.15 on a loaded machine): more than 300 are
            // left to judge the chains by (a share of 99% of 300 tells one wrong chain in a hundred).
            XCTAssertGreaterThan(innerSamples, 300, "\(interpreter.label): too few samples in ext_inner_native\n\(result.report)")
            XCTAssertLessThanOrEqual(Double(marked) / Double(innerSamples), 0.1, "\(interpreter.label): too many incomplete unwinds")
            XCTAssertGreaterThanOrEqual(share, 0.99, "\(interpreter.label): other shapes: \(other.sorted { $0.value > $1.value }.prefix(5))")
        }
    }

    /// --interpreter-frames keeps libpython's frames: the eval loop appears, and the Python frames sit above the
    /// native frame of the eval loop that runs them.
    func testInterpreterFramesFlagShowsTheEvalLoop() throws {
        let interpreter = try PythonInterpreters.pyenv("3.12")
        let workload = try Workload.load("native/callback_workload.py")
        let extensionDirectory = try buildCallbackExtension(for: interpreter, into: "ext")
        try stage([workload.path], for: interpreter)
        let output = scratchFile("internals.folded")
        try runPyBPFProf(["record", "--interpreter-frames", "--rate", "499", "-o", output, "--"]
            + interpreter.command([workload.path, extensionDirectory, "2"])).requireSuccess()
        let stacks = try FoldedFile.stacks(at: output).filter { $0.frames.contains { $0.name == "ext_inner_native" } }
        let samples = stacks.reduce(0) { $0 + $1.count }
        var evalBelowCallback = 0
        for stack in stacks {
            guard let callback = stack.frames.lastIndex(where: { $0.name == "callback" }) else { continue }
            if callback > 0, stack.frames[callback - 1].name.hasPrefix("_PyEval_EvalFrameDefault") { evalBelowCallback += stack.count }
        }
        XCTAssertGreaterThan(samples, 300)
        XCTAssertGreaterThan(Double(evalBelowCallback) / Double(samples), 0.95,
                             "callback should sit right above the eval loop's native frame")
    }

    /// A C program without frame pointers, a known call chain ten deep, on the main thread and on a second thread:
    /// nearly every sample carries the whole chain down to the thread's entry (_start, clone3).
    func testTenDeepChainWithoutFramePointersUnwindsToTheThreadEntry() throws {
        let program = try NativeFixtures.buildProgram(
            source: Checkout.fixtures.appendingPathComponent("native/chain10.c").path, into: scratchFile("chain"))
        // It runs until killed: a loaded machine can take seconds to start the recording.
        let target = try start(program, ["600"])
        let output = scratchFile("chain.folded")
        let (recording, cpuSeconds) = try recordMeasuringCPU(of: target.pid, [
            "record", "--pid", String(target.pid), "--allow-non-python", "--rate", "499", "--duration", "3", "-o", output,
        ])
        target.killIfRunning()
        let result = try recording.requireSuccess()
        let chain = (1...10).map { String(format: "chain_%02d", $0) }
        var total = 0, complete = 0
        var incomplete: [String: Int] = [:]
        for stack in try FoldedFile.stacks(at: output) {
            let user = stack.frames.filter { !isKernel($0) }
            guard let leaf = user.last, leaf.name.hasPrefix("chain_") else { continue }
            total += stack.count
            let names = user.map(\.name)
            let entry = names.first
            let caller = names.firstIndex(where: { $0 == "main" || $0 == "thread_entry" })
            if let caller, Array(names[(caller + 1)...]) == chain, entry == "_start" || entry == "clone3" || entry == "__clone3" {
                complete += stack.count
            } else {
                incomplete[names.joined(separator: ";"), default: 0] += stack.count
            }
        }
        let share = Double(complete) / Double(max(total, 1))
        print(String(format: "  %d samples in the chain, %d (%.2f%%) with the whole chain down to the thread entry", total, complete, 100 * share))
        print("    \(result.recordingSummary)")
        // Two busy threads, about 499 samples a second of the CPU they got while sampled (6 s on 2 idle CPUs).
        XCTAssertGreaterThan(Double(total), 0.5 * 499 * cpuSeconds, "\(cpuSeconds) s of CPU\n\(result.report)")
        XCTAssertGreaterThan(total, 300, result.report)
        XCTAssertGreaterThanOrEqual(share, 0.99, "incomplete: \(incomplete.sorted { $0.value > $1.value }.prefix(5))")
    }

    /// Generated code in anonymous memory has no unwind information: the unwinder falls back to the frame pointer
    /// there, marks the frame it found that way (`[fp]`), and goes on to the thread's entry with the tables.
    func testCodeWithoutUnwindInformationFallsBackToTheFramePointerVisibly() throws {
        let program = try NativeFixtures.buildProgram(
            source: Checkout.fixtures.appendingPathComponent("native/jit_frames.c").path, into: scratchFile("jit"))
        // It runs until killed: a loaded machine can take seconds to start the recording.
        let target = try start(program, ["600"])
        let output = scratchFile("jit.folded")
        let (recording, cpuSeconds) = try recordMeasuringCPU(of: target.pid, [
            "record", "--pid", String(target.pid), "--allow-non-python", "--rate", "499", "--duration", "2", "-o", output,
        ])
        target.killIfRunning()
        let result = try recording.requireSuccess()
        let expected = ["_start", "__libc_start_main", "__libc_start_call_main", "main", "jit_caller [fp]", "[anonymous]", "jit_burn"]
        var total = 0, matching = 0
        var other: [String: Int] = [:]
        for stack in try FoldedFile.stacks(at: output) {
            let names = stack.frames.filter { !isKernel($0) }.map { $0.name.hasPrefix("[anonymous 0x") ? "[anonymous]" : $0.name }
            guard names.last == "jit_burn" else { continue }
            total += stack.count
            if names == expected { matching += stack.count } else { other[names.joined(separator: ";"), default: 0] += stack.count }
        }
        print("  \(matching) of \(total) samples in jit_burn unwound through the generated code to _start")
        print("    \(result.recordingSummary)")
        // About 499 a second of the CPU it got while sampled (2 s on an idle machine), nearly all of it in jit_burn.
        XCTAssertGreaterThan(Double(total), 0.5 * 499 * cpuSeconds, "\(cpuSeconds) s of CPU\n\(result.report)")
        XCTAssertGreaterThan(total, 100, result.report)
        XCTAssertGreaterThanOrEqual(Double(matching) / Double(max(total, 1)), 0.99, "other shapes: \(other.sorted { $0.value > $1.value }.prefix(5))")
    }
}
