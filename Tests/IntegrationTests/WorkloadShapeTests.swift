import Foundation
import XCTest

/// Profiles the workload's `shape` mode on every supported CPython, once attaching by `--pid` and once
/// launching it with `-- CMD`, and checks the profile against what the workload is known to do: names,
/// file, line numbers and call order of its frames, heavy():light() as the workload's own CPU clock has it (3:1 work; under emulation, either that or the work's), a recursion of
/// RECURSION_DEPTH + 1 frames, and a second thread that has its own samples and only its own functions.
final class WorkloadShapeTests: IntegrationTestCase {
    /// Samples per second per CPU. 3 s of it give about 1000 samples under heavy() and light(), so the
    /// 4-sigma bound on heavy()'s share (3/4) is about ±0.055, a heavy:light ratio between 2.3 and 4.1.
    static let rate = 499
    static let seconds = 3
    /// Longer on a slow machine (emulation): the ratio test needs enough samples under heavy() and light().
    static var recordingSeconds: Double { Double(seconds) * Slowdown.factor }

    func testCPython2_7() throws { try checkShape(PythonInterpreters.pyenv("2.7", program: "python2.7")) }
    func testCPython3_6() throws { try checkShape(PythonInterpreters.pyenv("3.6")) }
    func testCPython3_7() throws { try checkShape(PythonInterpreters.pyenv("3.7")) }
    func testCPython3_8() throws { try checkShape(PythonInterpreters.pyenv("3.8")) }
    func testCPython3_9() throws { try checkShape(PythonInterpreters.pyenv("3.9")) }
    func testCPython3_10() throws { try checkShape(PythonInterpreters.pyenv("3.10")) }
    func testCPython3_11() throws { try checkShape(PythonInterpreters.pyenv("3.11")) }
    func testCPython3_12() throws { try checkShape(PythonInterpreters.pyenv("3.12")) }
    func testCPython3_13() throws { try checkShape(PythonInterpreters.pyenv("3.13")) }
    func testDebianCPython3_11() throws { try checkShape(PythonInterpreters.debian311()) }
    // Debian's own builds, in the roots Scripts/setup --tests makes.
    func testDebianTrixieCPython3_13() throws { try checkShape(PythonInterpreters.debianRoot("trixie", "3.13")) }
    func testDebianSidCPython3_13() throws { try checkShape(PythonInterpreters.debianRoot("sid", "3.13")) }
    func testDebianSidCPython3_14() throws { try checkShape(PythonInterpreters.debianRoot("sid", "3.14")) }
    func testDebianSidCPython3_15() throws { try checkShape(PythonInterpreters.debianRoot("sid", "3.15")) }

    /// pybpfprof passes the launched command's exit status through, after writing the profile.
    func testCommandExitStatusIsPassedThrough() throws {
        let workload = try Workload.load()
        let interpreter = try PythonInterpreters.debian311()
        let output = scratchFile("exit-status.folded")
        let result = try runPyBPFProf([
            "record", "--rate", "\(Self.rate)", "-o", output, "--",
        ] + interpreter.command([workload.path, "shape", "--seconds", "0.5", "--exit-status", "3"]))
        XCTAssertTrue(result.exitedNormally, result.report)
        XCTAssertEqual(result.status, 3, "pybpfprof should exit with the command's status 3: \(result.report)")
        let samples = try FoldedFile.stacks(at: output).reduce(0) { $0 + $1.count }
        XCTAssertGreaterThan(samples, 0, "the profile of a command that failed should still be written")
        print("  exit status 3 passed through; \(samples) samples written")
    }

    private func checkShape(_ interpreter: PythonInterpreter) throws {
        let workload = try Workload.load()
        let expectations = try ShapeExpectations(workload: workload)

        try stage([workload.path], for: interpreter)
        // --pid: attach once the workload has started its worker and printed "ready". (In a Debian root the process
        // started is chroot, which execs the interpreter: its pid is the interpreter's.)
        let running = try start(interpreter.command([workload.path, "shape"]))
        try running.waitForLine("ready", timeout: 30)
        let byPidOutput = scratchFile("by-pid.speedscope.json")
        let recorder = try start(try PyBPFProfBinary.path(), [
            "record", "--pid", "\(running.pid)", "--rate", "\(Self.rate)", "-o", byPidOutput,
        ])
        // The workload's account of its CPU time starts afresh once sampling has (SIGUSR1), and ends as the recording
        // does: its SIGTERM ends both. The time before the recorder had started (seconds under emulation, the recorder
        // busy loading beside it) once pulled the account away from the profile (3.20 against 2.48, a 6.8 guest).
        try recorder.waitForLine("pybpfprof: sampling ", timeout: 120, onStandardError: true)
        running.send(SIGUSR1)
        try running.waitForCPU(seconds: Self.recordingSeconds, timeout: 120)
        // SIGTERM: the workload stops and prints its own account of its CPU time in heavy() and light().
        running.send(SIGTERM)
        let ended = try running.wait(timeout: 30)
        let byPid = try recorder.wait(timeout: 120)
        try byPid.requireSuccess()
        XCTAssertEqual(ended.status, 0, "the workload should stop cleanly on SIGTERM: \(ended.report)")
        let byPidMain = try printedThreadID("main-tid", in: running.standardOutput)
        XCTAssertEqual(byPidMain, running.pid, "the workload's main thread id should be its pid")
        try expectations.check(
            profile: byPidOutput, label: "\(interpreter) --pid", summary: byPid.recordingSummary, pid: running.pid, mainTid: byPidMain,
            workerTid: try printedThreadID("worker-tid", in: running.standardOutput),
            measuredCPU: try WorkloadCPUAccount(printedIn: ended.standardOutput))

        // -- CMD: pybpfprof launches the workload, which runs a fixed time and exits 0.
        let byCommandOutput = scratchFile("by-command.speedscope.json")
        let byCommand = try runPyBPFProf([
            "record", "--rate", "\(Self.rate)", "-o", byCommandOutput, "--",
        ] + interpreter.command([workload.path, "shape", "--seconds", "\(Self.recordingSeconds)"]))
        try byCommand.requireSuccess()
        // The launched command's stdout is pybpfprof's, and its main thread's id is its pid.
        let byCommandMain = try printedThreadID("main-tid", in: byCommand.standardOutput)
        try expectations.check(
            profile: byCommandOutput, label: "\(interpreter) -- CMD", summary: byCommand.recordingSummary, pid: byCommandMain,
            mainTid: byCommandMain,
            workerTid: try printedThreadID("worker-tid", in: byCommand.standardOutput),
            measuredCPU: try WorkloadCPUAccount(printedIn: byCommand.standardOutput))
    }
}

/// The main thread's CPU time in heavy() and light() by the workload's own clock (its "shape-cpu H L" line, in ns).
/// heavy() does three times light()'s work, but what share of the CPU that takes is the machine's business: under
/// emulation on a host loaded with other guests it was 3.84:1 once. The profile's share must match this account.
private struct WorkloadCPUAccount {
    let heavy: Double
    let light: Double
    var heavyShare: Double { heavy / max(heavy + light, 1) }

    init(printedIn output: String) throws {
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("shape-cpu ") }) else {
            throw IntegrationError("the workload printed no shape-cpu line:\n\(output.suffix(2000))")
        }
        let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard fields.count == 2, fields[0] + fields[1] > 0 else { throw IntegrationError("bad shape-cpu line: \(line)") }
        heavy = fields[0]
        light = fields[1]
    }
}

/// What a profile of the `shape` workload must show, with the lines taken from the fixture's markers.
private struct ShapeExpectations {
    let workload: Workload
    /// Recursive calls below the first call to recurse().
    let recursionDepth: Int
    /// Every workload function the main thread runs, with the lines it spans.
    let mainFunctions: [String: ClosedRange<Int>]
    let workerFunctions: [String: ClosedRange<Int>]
    /// Every function the fixture defines.
    let allFunctions: [String: ClosedRange<Int>]
    /// caller -> callee -> the caller's line while the callee runs. A frame of one of these callers that
    /// has a child must have that child, and be on that line.
    let callSites: [String: [String: Int]]

    init(workload: Workload) throws {
        self.workload = workload
        recursionDepth = try workload.integerConstant("RECURSION_DEPTH")
        var mainFunctions: [String: ClosedRange<Int>] = [:]
        for name in ["run_shape", "caller", "heavy", "light", "spin", "recurse"] {
            mainFunctions[name] = try workload.lines(ofFunction: name)
        }
        self.mainFunctions = mainFunctions
        allFunctions = try workload.functionSpans()
        workerFunctions = [
            "worker_loop": try workload.lines(ofFunction: "worker_loop"),
            "worker_compute": try workload.lines(ofFunction: "worker_compute"),
        ]
        callSites = [
            "run_shape": ["caller": try workload.line("main-caller"), "recurse": try workload.line("main-recurse")],
            "caller": ["heavy": try workload.line("caller-heavy"), "light": try workload.line("caller-light")],
            "heavy": ["spin": try workload.line("heavy-call")],
            "light": ["spin": try workload.line("light-call")],
            "recurse": ["recurse": try workload.line("recurse-self"), "spin": try workload.line("recurse-bottom")],
            "spin": [:],
            "worker_loop": ["worker_compute": try workload.line("worker-call")],
            "worker_compute": [:],
        ]
    }

    /// `summary` is pybpfprof's own account of the recording (samples, records lost, errors), printed
    /// beside the figures so that a failure's log shows whether the recording itself went wrong.
    func check(profile path: String, label: String, summary: String, pid: Int32, mainTid: Int32, workerTid: Int32,
               measuredCPU: WorkloadCPUAccount) throws {
        // The Python frames' shape; how they interleave with native frames is MixedStackTests' subject.
        let threads = try SpeedscopeFile.threads(at: path).map { thread in
            var python = thread
            python.stacks = thread.stacks.map { $0.filter(\.isPython) }
            return python
        }
        let names = threads.map(\.profileName).joined(separator: "; ")
        for thread in threads {
            XCTAssertEqual(thread.pid, pid, "\(label): a profile of another process: \(thread.profileName)")
        }
        let main = try XCTUnwrap(threads.first { $0.tid == mainTid }, "\(label): no profile for the main thread \(mainTid) among: \(names)")
        let worker = try XCTUnwrap(threads.first { $0.tid == workerTid }, "\(label): no profile for the worker thread \(workerTid) among: \(names)")

        // The walk reads a thread the tick interrupted, never stopped: one interrupted between the interpreter's
        // stores that link a new frame (which the C compiler may order either way) can be read half linked. That is
        // rare (none in most runs, one in 2,916 once on 6.12, three in 1,968 once on 5.10 under emulation on a host
        // loaded with two more guests); one sample in 250 is allowed, a systematic error (a wrong offset, a lost frame
        // kind) breaks far more: every sample of the kind it hits.
        var breaks: [String] = []
        for thread in [main, worker] {
            let problems = thread.stacks.compactMap(frameProblem)
            breaks.append("tid \(thread.tid) \(problems.count) of \(thread.stacks.count)")
            XCTAssertLessThanOrEqual(problems.count, thread.stacks.count / 250,
                                     "\(label), tid \(thread.tid): \(problems.count) of \(thread.stacks.count) samples "
                + "break the workload's shape, e.g.:\n" + Set(problems).prefix(3).joined(separator: "\n"))
            if !problems.isEmpty { print("  \(label), tid \(thread.tid): shape broken by:\n" + Set(problems).prefix(3).joined(separator: "\n")) }
        }
        let figures = [
            "shape broken in " + breaks.joined(separator: ", "),
            checkRatio(main.stacks, measured: measuredCPU, label: "\(label) (\(summary))"),
            checkRecursion(main.stacks, label: label),
            checkThreadsKeepTheirOwnFunctions(main: main, worker: worker, label: label),
        ]
        print("  \(label): \(main.stacks.count + worker.stacks.count) samples in the main thread and worker; "
            + figures.joined(separator: "; ") + "\n    pybpfprof: \(summary)")
    }

    /// Every frame in the workload's file is `<module>` or one of its functions, on a line of that function;
    /// the shape functions are in no other file; and a shape function's frame whose child is a shape
    /// function is one that calls it, on the line that calls it.
    private func frameProblem(in stack: ProfileStack) -> String? {
        for (position, frame) in stack.enumerated() {
            let isShapeFunction = mainFunctions[frame.name] != nil || workerFunctions[frame.name] != nil
            if isShapeFunction && frame.file != workload.path {
                return "\(frame.name) should be in \(workload.path), not \(frame.file): \(render(stack))"
            }
            guard frame.file == workload.path else { continue }
            if frame.name != "<module>" {
                guard let span = allFunctions[frame.name] else {
                    return "\(workload.path) defines no function \(frame.name): \(render(stack))"
                }
                guard span.contains(frame.line) else {
                    return "\(frame) should be on a line of \(frame.name) (\(span)): \(render(stack))"
                }
            }
            // main() and the threading module's frames call into the shape functions; no need to pin them.
            guard isShapeFunction, position + 1 < stack.count else { continue }
            let child = stack[position + 1]
            // Calls into the standard library (Event.is_set, Thread.join) are the workload's business.
            guard mainFunctions[child.name] != nil || workerFunctions[child.name] != nil else { continue }
            guard let callLine = callSites[frame.name]?[child.name] else {
                return "\(frame.name) should not call \(child.name): \(render(stack))"
            }
            if frame.line != callLine {
                return "\(frame.name) calling \(child.name) should be on line \(callLine), not \(frame.line): \(render(stack))"
            }
        }
        return nil
    }

    /// The fraction of heavy()'s and light()'s samples that are heavy()'s is the fraction of their CPU time the
    /// workload's own clock gave heavy() (about 3/4: three times the work), within binomial noise.
    ///
    /// Under emulation (a TCG guest beside four others and the host's tests) neither clock is exact: a vCPU that
    /// stops for tens of milliseconds adds the stall to the thread's CPU clock, while the sampling timer fires once
    /// after it. Fresh CI runs put the clock at 3.20, 4.35 and 2.41 where the samples said 2.48, 3.44 and 2.89, and
    /// once at 2.28 against 2.25. There the profile passes when it matches either the clock's share or the work's
    /// (3:1, a 3/4 share): a frame put on the wrong function (heavy()'s samples on caller() or light()) misses both.
    private func checkRatio(_ stacks: [ProfileStack], measured: WorkloadCPUAccount, label: String) -> String {
        let heavy = stacks.filter { $0.contains { $0.name == "heavy" } }
        let light = stacks.filter { $0.contains { $0.name == "light" } }.count
        let trials = heavy.count + light
        let fraction = Double(heavy.count) / Double(max(trials, 1))
        let ratio = Double(heavy.count) / Double(max(light, 1))
        let workShare = 0.75
        let references = Slowdown.factor > 1 ? [measured.heavyShare, workShare] : [measured.heavyShare]
        // The reference the profile is nearest to; on the host only the clock's.
        let expected = references.min { abs(fraction - $0) < abs(fraction - $1) }!
        let bound = binomialBound(expected: expected, trials: trials)
        // The fraction bound as a bound on the ratio heavy/light = f / (1 - f).
        let lowest = (expected - bound) / (1 - expected + bound)
        let highest = expected + bound >= 1 ? Double.infinity : (expected + bound) / (1 - expected - bound)
        let against = expected == measured.heavyShare ? "the workload's clock" : "the work's 3:1 (emulated)"
        let figures = String(format: "heavy:light %d:%d = %.2f (workload's clock %.2f; ", heavy.count, light, ratio,
                             measured.heavy / max(measured.light, 1))
            + "against \(against), " + String(format: "4-sigma bound %.2f...%.2f; heavy share %.3f ± %.3f)", lowest, highest, fraction, bound)
        XCTAssertGreaterThanOrEqual(trials, 200, "\(label): too few samples under heavy() and light() for a ratio: \(figures)")
        XCTAssertLessThanOrEqual(abs(fraction - expected), bound, "\(label): \(figures)")

        // The parent-child order, spelled out for the commonest heavy() stack.
        let expectedPath = ["run_shape", "caller", "heavy", "spin"]
        let onPath = heavy.filter { Array($0.suffix(4).map(\.name)) == expectedPath }.count
        XCTAssertGreaterThan(onPath * 2, heavy.count,
                             "\(label): most heavy() samples should end run_shape -> caller -> heavy -> spin, \(onPath) of \(heavy.count) do")
        if let root = heavy.first?.first {
            XCTAssertEqual(root.name, "<module>", "\(label): the main thread's root frame: \(render(heavy[0]))")
        }
        return figures
    }

    /// Every sample taken while the recursion's innermost call runs spin() has exactly RECURSION_DEPTH
    /// recursive frames below the first call: RECURSION_DEPTH + 1 recurse frames.
    private func checkRecursion(_ stacks: [ProfileStack], label: String) -> String {
        let expectedFrames = recursionDepth + 1
        let atBottom = stacks.filter { stack in
            zip(stack, stack.dropFirst()).contains { $0.name == "recurse" && $1.name == "spin" }
        }
        var depths: [Int: Int] = [:]
        for stack in atBottom { depths[stack.filter { $0.name == "recurse" }.count, default: 0] += 1 }
        let observed = depths.sorted { $0.key < $1.key }.map { "\($0.value)×\($0.key)" }.joined(separator: ", ")
        XCTAssertGreaterThanOrEqual(atBottom.count, 20, "\(label): too few samples at the bottom of the recursion")
        XCTAssertEqual(Array(depths.keys), [expectedFrames],
                       "\(label): samples at the recursion's bottom should hold \(expectedFrames) recurse frames (samples×frames: \(observed))")
        return "recursion samples×frames \(observed) (expected \(expectedFrames))"
    }

    /// The worker's samples are under its own tid, run worker_loop(), and hold none of the main thread's
    /// functions; the main thread's hold none of the worker's.
    private func checkThreadsKeepTheirOwnFunctions(main: ThreadSamples, worker: ThreadSamples, label: String) -> String {
        let withLoop = worker.stacks.filter { $0.contains { $0.name == "worker_loop" } }.count
        let share = Double(withLoop) / Double(max(worker.stacks.count, 1))
        let figures = String(format: "worker tid %d: %d samples, %.0f%% in worker_loop", worker.tid, worker.stacks.count, 100 * share)
        XCTAssertGreaterThanOrEqual(worker.stacks.count, 20, "\(label): too few worker samples: \(figures)")
        XCTAssertGreaterThanOrEqual(share, 0.9, "\(label): \(figures)")
        for stack in worker.stacks {
            if let foreign = stack.first(where: { mainFunctions[$0.name] != nil || $0.name == "<module>" }) {
                XCTFail("\(label): the worker's sample holds the main thread's \(foreign.name): \(render(stack))")
                break
            }
        }
        for stack in main.stacks {
            if let foreign = stack.first(where: { workerFunctions[$0.name] != nil }) {
                XCTFail("\(label): the main thread's sample holds the worker's \(foreign.name): \(render(stack))")
                break
            }
        }
        return figures
    }

    /// `<module>:146 -> main:139 -> recurse:54 ×60 -> ...`: runs of one frame written once.
    private func render(_ stack: ProfileStack) -> String {
        var runs: [(frame: ProfileFrame, count: Int)] = []
        for frame in stack {
            if let last = runs.last, last.frame == frame { runs[runs.count - 1].count += 1 } else { runs.append((frame, 1)) }
        }
        return runs.map { "\($0.frame.name):\($0.frame.line)" + ($0.count > 1 ? " ×\($0.count)" : "") }.joined(separator: " -> ")
    }
}
