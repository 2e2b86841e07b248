import Foundation
import XCTest

/// `--version` and the summary say how the running kernel runs the BPF program, from what it offers (probed).
final class KernelPathTests: IntegrationTestCase {
    private var release: String {
        var names = utsname()
        uname(&names)
        return withUnsafeBytes(of: names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// This machine's kernel has bpf_loop and bpf_task_pt_regs: the loop walk, and no limits to state.
    func testVersionNamesTheKernelAndItsPath() throws {
        let result = try runPyBPFProf(["--version"]).requireSuccess()
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2, result.report)
        XCTAssertTrue(lines.first?.hasPrefix("pybpfprof ") ?? false, result.report)
        XCTAssertEqual(lines.last, "kernel \(release): bpf_loop walk, 256 native and 256 Python frames", result.report)
    }

    /// `--oldest-kernel-mode` loads the 5.10 path, and the summary says so with its limits, and the verifier's cost of
    /// each program it loaded.
    func testSummarySaysThePathAndTheVerifiersCost() throws {
        let output = scratchFile("oldest.folded")
        let result = try runPyBPFProf([
            "record", "--oldest-kernel-mode", "--bpf-stats", "--rate", "199", "-o", output, "--",
        ] + PythonInterpreters.debian311().command(["-c", "sum(range(3_000_000))"])).requireSuccess()
        XCTAssertTrue(result.standardError.contains(
            "kernel \(release): tail-call walk, 16 native and 32 Python frames per call, 256 and 256 at most; "
                + "user registers from the kernel stack; native stacks for 512 processes at most"), result.report)
        guard let verifier = result.standardError.split(separator: "\n").first(where: { $0.hasPrefix("BPF verifier: ") }) else {
            return XCTFail("no verifier line\n\(result.report)")
        }
        // Only the variants this path loads.
        for program in ["on_sample", "unwind_native_bounded", "walk_python_bounded", "on_exec", "on_fork", "on_exit"] {
            XCTAssertTrue(verifier.contains(" \(program) "), "\(program) missing: \(verifier)")
        }
        XCTAssertFalse(verifier.contains("_loop"), "a bpf_loop variant was loaded too: \(verifier)")
    }

    /// Attached to a running process, sampling starts before the native unwinder is verified (most of the BPF load), on
    /// both paths: the unwinder is loaded next through a second object that shares the first one's maps, after which
    /// every sample is unwound to the thread's entry; those before it have their Python frames and are marked. Waits for
    /// the ready line, then for a second of the target's CPU, however long a slow machine (an emulated 5.10) takes.
    func testNativeUnwinderLoadedAfterSamplingStartsOnBothPaths() throws {
        let script = scratchFile("spin.py")
        try "print('ready', flush=True)\ndef spin():\n    while True:\n        sum(range(10000))\nspin()\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        let running = try start(try PythonInterpreters.pyenv("3.12").command([script]))
        defer { running.killIfRunning() }
        try running.waitForLine("ready", timeout: 30)
        // This kernel's own path (bpf_loop from 5.17), and 5.10's.
        let hasLoop = try runPyBPFProf(["--version"]).requireSuccess().standardOutput.contains("bpf_loop walk")
        for (options, stage) in [([String](), hasLoop ? "unwind_native_loop" : "unwind_native_bounded"),
                                 (["--oldest-kernel-mode"], "unwind_native_bounded")] {
            let output = scratchFile("spin-\(stage).folded")
            let recorder = try start(try PyBPFProfBinary.path(), ["record", "--pid", "\(running.pid)", "--bpf-stats", "--rate", "499",
                                                                 "-o", output] + options)
            try recorder.waitForLine(nativeStacksReadyLine, timeout: 120, onStandardError: true)
            try running.waitForCPU(seconds: 1, timeout: 60)
            recorder.send(SIGINT)
            let result = try recorder.wait(timeout: 120).requireSuccess()
            let verifier = try XCTUnwrap(result.standardErrorLines.first { $0.hasPrefix("BPF verifier: ") }, result.report)
            XCTAssertTrue(verifier.contains(" \(stage) "), "\(stage) was not loaded: \(verifier)")
            XCTAssertFalse(result.standardError.contains("native stacks off"), result.report)
            // Before the stage was in its slot the Python walk ran without it: no sample lost its Python frames (without
            // that fallback, every sample before the ready line would have).
            let all = try FoldedFile.stacks(at: output)
            let stacks = all.filter { $0.pythonFrames.last?.name == "spin" }
            XCTAssertGreaterThanOrEqual(Double(stacks.reduce(0) { $0 + $1.count }) / Double(max(all.reduce(0) { $0 + $1.count }, 1)), 0.99,
                                        "samples without spin: \(all.filter { $0.pythonFrames.last?.name != "spin" }.prefix(3))")
            let marked = stacks.filter(\.nativeFramesNotLoaded).reduce(0) { $0 + $1.count }
            let loaded = stacks.filter { !$0.nativeFramesNotLoaded }
            let samples = loaded.reduce(0) { $0 + $1.count }
            let whole = loaded.filter { $0.frames.contains { $0.name == "__libc_start_main" } }.reduce(0) { $0 + $1.count }
            print("  \(stage): \(marked) samples before native stacks were ready, \(whole) of \(samples) after unwound to __libc_start_main")
            // About 499 in the second waited for.
            XCTAssertGreaterThan(samples, 200, result.report)
            XCTAssertGreaterThanOrEqual(Double(whole) / Double(max(samples, 1)), 0.95, result.report)
        }
    }

    /// The deferred native stage is put into its slots while samples are taken, and the kernel patches the jumps into a
    /// slot one program at a time. A deep stack needs the bounded stage's next batches from the first sample that enters
    /// it: none may fail its tail call then. With the stage calling itself through its entry slot, 5 of 30 such
    /// recordings here had one failed (a sample with no Python frames), as 1-2 in the guests' `--all` tests.
    func testNoTailCallFailsWhileTheNativeStageIsPutIntoItsSlots() throws {
        let workload = try Workload.load()
        // 3.8: about five native frames per Python call, so 400 calls need every batch of the native stage.
        let running = try start(try PythonInterpreters.pyenv("3.8").command([workload.path, "deep", "--depth", "400"]))
        defer { running.killIfRunning() }
        try running.waitForLine("ready", timeout: 30)
        var marked = 0, afterReady = 0
        for run in 1...30 {
            let output = scratchFile("deep-\(run).folded")
            let recorder = try start(try PyBPFProfBinary.path(), ["record", "--oldest-kernel-mode", "--pid", "\(running.pid)",
                                                                 "--rate", "1999", "-o", output])
            // The stage is in its slots once this line is printed: the samples that matter were taken by then.
            try recorder.waitForLine(nativeStacksReadyLine, timeout: 120, onStandardError: true)
            try running.waitForCPU(seconds: 0.05, timeout: 60)
            recorder.send(SIGINT)
            let result = try recorder.wait(timeout: 120).requireSuccess()
            let errors = result.standardErrorLines.first { $0.hasPrefix("errors: ") } ?? "no errors line"
            XCTAssertFalse(errors.contains("tail calls failed"), "run \(run): \(errors)")
            let stacks = try FoldedFile.stacks(at: output)
            XCTAssertTrue(stacks.allSatisfy { $0.pythonFrames.count == 256 }, "run \(run): a sample lost Python frames")
            marked += stacks.filter(\.nativeFramesNotLoaded).reduce(0) { $0 + $1.count }
            afterReady += stacks.filter { !$0.nativeFramesNotLoaded }.reduce(0) { $0 + $1.count }
        }
        print("  30 recordings: \(marked) samples before the native stage was in its slots, \(afterReady) after")
        // Both sides of the moment were sampled (about 200 before and 100 after, per recording).
        XCTAssertGreaterThan(marked, 300)
        XCTAssertGreaterThan(afterReady, 300)
    }
}
