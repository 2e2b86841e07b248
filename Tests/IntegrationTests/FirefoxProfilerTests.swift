import Foundation
import TestSupport
import XCTest

/// A Firefox Profiler file from a real recording of the `shape` workload passes the profiler's integrity
/// checks (FirefoxProfileChecker) and shows the workload's two threads under its one process, with
/// Python frames on their files and lines and the native frames below them.
final class FirefoxProfilerTests: IntegrationTestCase {
    func testRecordedFirefoxProfileOfTheShapeWorkload() throws {
        let workload = try Workload.load()
        let interpreter = try PythonInterpreters.pyenv("3.12")
        let output = scratchFile("out.firefox.json")
        let result = try runPyBPFProf([
            "record", "--format", "firefox", "--rate", "499", "-o", output, "--",
        ] + interpreter.command([workload.path, "shape", "--seconds", "2"])).requireSuccess()
        let mainTid = try printedThreadID("main-tid", in: result.standardOutput)
        let workerTid = try printedThreadID("worker-tid", in: result.standardOutput)

        guard let data = FileManager.default.contents(atPath: output) else {
            throw IntegrationError("pybpfprof wrote no profile at \(output)\n\(result.report)")
        }
        let document = Array(data)
        let problems = FirefoxProfileChecker.problems(in: document)
        XCTAssertEqual(problems, [],
                       "the recorded file breaks the processed profile format:\n" + problems.joined(separator: "\n"))
        let profile = try FirefoxProfileChecker.read(document)
        let threads = profile.threads
        let summary = threads.map { "pid \($0.pid) tid \($0.tid) \($0.name): \($0.stacks.count) samples" }
        print("  \(interpreter.label): " + summary.joined(separator: "; ") + "\n    pybpfprof: \(result.recordingSummary)")

        // Two threads, under one process: the launched workload's, whose main thread's id is its pid.
        XCTAssertEqual(Set(threads.map(\.pid)), ["\(mainTid)"], "one process, the workload's: \(summary)")
        XCTAssertEqual(threads.map(\.tid).sorted(), [Int(mainTid), Int(workerTid)].sorted(),
                       "the main thread and the worker: \(summary)")
        let main = try XCTUnwrap(threads.first { $0.tid == Int(mainTid) })
        let worker = try XCTUnwrap(threads.first { $0.tid == Int(workerTid) })
        XCTAssertTrue(main.isMainThread)
        XCTAssertFalse(worker.isMainThread)
        for thread in threads {
            XCTAssertFalse(thread.name.isEmpty, "tid \(thread.tid) has no name")
            XCTAssertEqual(thread.processName?.contains(workload.path), true,
                           "the process is named by its command line: \(thread.processName ?? "none")")
            // Sample times increase, and each sample is at its own time.
            XCTAssertTrue(zip(thread.times, thread.times.dropFirst()).allSatisfy { $0 < $1 },
                          "tid \(thread.tid): sample times should increase")
            XCTAssertGreaterThanOrEqual(thread.times.first ?? -1, 0)
        }
        // 2 s at 499 Hz with the main thread busy throughout.
        XCTAssertGreaterThan(main.stacks.count, 500, "too few main-thread samples")
        XCTAssertGreaterThan(worker.stacks.count, 20, "too few worker samples")
        let interval = 1000.0 / 499
        XCTAssertEqual(profile.interval, interval, accuracy: 1e-6)
        // The recording starts about when the workload does: its first sample within a few seconds.
        XCTAssertLessThan(abs(profile.startTime / 1000 - Date().timeIntervalSince1970), 120, "meta.startTime is the wall clock")

        // Python frames: category Python, in their file on a line of it.
        let frames = Set(threads.flatMap { $0.stacks.joined() })
        let spans = try workload.functionSpans()
        let workloadFrames = frames.filter { $0.file == workload.path }
        XCTAssertFalse(workloadFrames.isEmpty, "no frame in \(workload.path)")
        for frame in workloadFrames {
            XCTAssertEqual(frame.category, "Python", "\(frame)")
            // A module's first instruction (RESUME, 3.11+) is on line 0 in CPython's own location table: a sample at
            // the module's start (one in a run, rarely) has `<module>` on line 0.
            XCTAssertGreaterThan(frame.line, frame.name == "<module>" ? -1 : 0, "\(frame) has no line")
            XCTAssertEqual(frame.functionLine, frame.line, "\(frame): funcTable.lineNumber")
            if let span = spans[frame.name] {
                XCTAssertTrue(span.contains(frame.line), "\(frame) should be on a line of \(frame.name) (\(span))")
            }
        }
        for name in ["run_shape", "caller", "heavy", "spin", "worker_loop", "worker_compute"] {
            XCTAssertTrue(workloadFrames.contains { $0.name == name }, "no \(name) frame")
        }
        XCTAssertTrue(worker.stacks.contains { $0.contains { $0.name == "worker_loop" } }, "the worker runs worker_loop")
        XCTAssertFalse(main.stacks.contains { $0.contains { $0.name == "worker_loop" } }, "worker_loop only in the worker")
        for frame in frames where frame.file.hasSuffix(".py") {
            XCTAssertEqual(frame.category, "Python", "\(frame)")
        }

        // Native frames: category Native, in their library; the main thread starts in libc.
        let libcStart = frames.filter { $0.name == "__libc_start_main" }
        XCTAssertFalse(libcStart.isEmpty, "no __libc_start_main frame")
        for frame in libcStart {
            XCTAssertEqual(frame.category, "Native", "\(frame)")
            XCTAssertTrue(frame.file.hasPrefix("libc"), "\(frame) should be in libc")
        }
        // Samples taken while the tables still compiled (slow in a debug build on a loaded machine) are marked as
        // such and have no native frames: they are counted apart.
        let loaded = main.stacks.filter { !$0.contains { $0.name == nativeFramesNotLoadedMarker } }
        let withLibcStart = loaded.filter { $0.contains { $0.name == "__libc_start_main" } }
        XCTAssertGreaterThan(withLibcStart.count * 2, loaded.count, "most main-thread stacks should reach "
                             + "__libc_start_main: \(withLibcStart.count) of \(loaded.count) (\(main.stacks.count) in all)")
        // Below the native entry frames come the Python frames, which begin at <module>.
        if let stack = withLibcStart.first(where: { $0.contains { $0.name == "spin" } }) {
            let start = stack.firstIndex { $0.name == "__libc_start_main" }!
            let module = stack.firstIndex { $0.name == "<module>" }
            XCTAssertNotNil(module, "a spin() stack without <module>: \(stack)")
            if let module { XCTAssertLessThan(start, module, "libc's entry is the caller of <module>: \(stack)") }
        } else {
            XCTFail("no main-thread sample in spin() reaching __libc_start_main")
        }
        // Kernel frames, when a sample caught one, are Kernel.
        for frame in frames where frame.category == "Kernel" {
            XCTAssertTrue(frame.file.isEmpty, "\(frame)")
        }
    }
}
