import Foundation
import Glibc
import XCTest

/// How a recording starts and ends: threads that appear during it, and stopping it with a signal.
final class RecordingLifecycleTests: IntegrationTestCase {
    /// A thread the workload starts 1 s in, long after pybpfprof launched it, is found in the interpreter's
    /// thread list and has its Python stack: almost all its samples are in late_thread_work().
    func testThreadStartedDuringRecordingHasPythonStack() throws {
        let workload = try Workload.load()
        for interpreter in try PythonInterpreters.supported() {
            try stage([workload.path], for: interpreter)
            let output = scratchFile("late-\(interpreter.name).speedscope.json")
            let result = try runPyBPFProf(["record", "--rate", "499", "-o", output, "--"]
                + interpreter.command([workload.path, "late-thread"]))
            try result.requireSuccess()
            let lateTid = try printedThreadID("late-tid", in: result.standardOutput)
            let threads = try SpeedscopeFile.threads(at: output)
            let late = try XCTUnwrap(threads.first { $0.tid == lateTid },
                                     "\(interpreter): no samples for the late thread \(lateTid) among: \(threads.map(\.profileName))")
            let inWork = late.stacks.filter { $0.contains { $0.name == "late_thread_work" && $0.file == workload.path } }.count
            let share = Double(inWork) / Double(max(late.stacks.count, 1))
            // The others, by leaf frame: thread start-up and shut-down ([no Python frame], threading.py).
            let others = Dictionary(late.stacks.filter { !$0.contains { $0.name == "late_thread_work" } }
                .map { ($0.last?.name ?? "(empty)", 1) }, uniquingKeysWith: +)
            let othersText = others.isEmpty ? "none" : others.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            print(String(format: "  %@: late thread %d: %d samples, %d (%.1f%%) in late_thread_work; others: %@",
                         interpreter.label, lateTid, late.stacks.count, inWork, 100 * share, othersText))
            // It spins for 1 s of CPU time, however long a busy machine makes that: ~499 samples.
            XCTAssertGreaterThanOrEqual(late.stacks.count, 250, "\(interpreter): too few samples of the late thread")
            XCTAssertGreaterThanOrEqual(share, 0.9, "\(interpreter): \(inWork) of \(late.stacks.count) late thread samples are in late_thread_work")
        }
    }

    /// `pybpfprof -- CMD`, `pybpfprof --pid N`, `pybpfprof --all` record, as the tool's one-line usage shows them;
    /// `pybpfprof` alone prints the overview, `pybpfprof --version` the version.
    func testRecordIsTheDefaultSubcommand() throws {
        let workload = try Workload.load()
        let interpreter = try PythonInterpreters.debian311()
        let output = scratchFile("default.folded")
        try runPyBPFProf(["--rate", "499", "-o", output, "--"] + interpreter.command([workload.path, "shape", "--seconds", "1"]))
            .requireSuccess()
        let names = Set(try FoldedFile.stacks(at: output).flatMap { $0.frames.filter { $0.file == workload.path }.map(\.name) })
        XCTAssertTrue(names.isSuperset(of: ["run_shape", "heavy", "light"]), "recorded without `record`: \(names.sorted())")

        let overview = try runPyBPFProf([]).requireSuccess()
        XCTAssertTrue(overview.standardOutput.contains("record (default)"), overview.report)
        let version = try runPyBPFProf(["--version"]).requireSuccess()
        XCTAssertTrue(version.standardOutput.hasPrefix("pybpfprof "), version.report)
    }

    func testSIGINTWritesWhatWasCollected() throws {
        try checkStopsOnSignal(SIGINT, name: "SIGINT")
    }

    func testSIGTERMWritesWhatWasCollected() throws {
        try checkStopsOnSignal(SIGTERM, name: "SIGTERM")
    }

    /// `record --pid` without --duration runs until a signal, then writes the profile and exits 0.
    private func checkStopsOnSignal(_ signalNumber: Int32, name: String) throws {
        let workload = try Workload.load()
        let interpreter = try PythonInterpreters.debian311()
        let running = try start(interpreter.command([workload.path, "shape"]))
        try running.waitForLine("ready", timeout: 30)
        let output = scratchFile("signal.folded")
        let recorder = try start(try PyBPFProfBinary.path(), [
            "record", "--pid", "\(running.pid)", "--rate", "499", "-o", output,
        ])
        // Signalled once the workload has run 2 s of CPU time while sampled: from the line that says sampling has
        // started (loading BPF and reading the process's binaries come before it, and take a while on a busy machine
        // or with a debug build).
        try recorder.waitForLine("pybpfprof: sampling 1 process at 499 Hz (Ctrl-C to stop and write the profile)", timeout: 30,
                                 onStandardError: true)
        try running.waitForCPU(seconds: 2, timeout: 60)
        XCTAssertTrue(recorder.isRunning, "pybpfprof should record until signalled: \(recorder.standardError)")
        recorder.send(signalNumber)
        let result = try recorder.wait(timeout: 30)
        XCTAssertTrue(running.isRunning, "the workload should outlive the recording")
        running.killIfRunning()
        XCTAssertTrue(result.exitedNormally && result.status == 0, "pybpfprof should exit 0 on \(name): \(result.report)")

        let stacks = try FoldedFile.stacks(at: output)
        let samples = stacks.reduce(0) { $0 + $1.count }
        let names = Set(stacks.flatMap { $0.frames.filter { $0.file == workload.path }.map(\.name) })
        print("  \(name) after 2 s of the workload's CPU time: exit \(result.status), \(samples) samples, workload functions: \(names.sorted().joined(separator: ", "))")
        XCTAssertGreaterThanOrEqual(samples, 500, "2 s of CPU time sampled at 499 Hz should give about 1000 samples")
        for function in ["run_shape", "caller", "heavy", "light", "spin", "recurse", "worker_loop"] {
            XCTAssertTrue(names.contains(function), "the profile written on \(name) should show \(function)")
        }
    }
}
