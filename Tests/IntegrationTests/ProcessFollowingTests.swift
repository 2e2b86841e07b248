import Exporters
import Foundation
import Profiler
import XCTest

/// `--all` follows Python processes that start while it records, `--subprocesses` a target's children, and a
/// forked Python child is profiled as what it is: every one of them has its own samples under its own pid.
final class ProcessFollowingTests: IntegrationTestCase {
    private var fixture: String { Checkout.fixtures.appendingPathComponent("short_lived.py").path }

    /// The pids a run of short_lived.py printed.
    private func printedPids(_ output: String) -> [Int32] {
        output.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            return words.count == 2 && words[0] == "pid" ? Int32(words[1]) : nil
        }
    }

    /// Samples of short_lived_work per pid, from a speedscope file.
    private func workSamples(_ path: String) throws -> [Int32: Int] {
        var samples: [Int32: Int] = [:]
        for thread in try SpeedscopeFile.threads(at: path) {
            samples[thread.pid, default: 0] += thread.stacks.filter { $0.contains { $0.name == "short_lived_work" } }.count
        }
        return samples
    }

    /// Processes that start after recording began, each running for 200 ms, appear with their own samples;
    /// a shared-libpython build (pyenv 3.12) and Debian's static 3.11 alike.
    ///
    /// The first process of a binary the recording has not seen makes it read the binary and compile its unwind
    /// tables: in this debug build that can take longer than 200 ms (the release build's first-binary cost is in
    /// docs/PERFORMANCE.md). So each interpreter runs once for a second first; the 200 ms processes after it are
    /// what a host's steady churn looks like.
    ///
    /// Each 200 ms process stays, idle, after its work until the recording has ended (`linger`): the drain thread
    /// names a Python frame by reading its code object from the process, and a drain thread starved of CPU (three
    /// emulated guests on two cores, Scripts/test-kernels) can lag more than a 200 ms process lives. That lag is
    /// the machine's, and the profile says so ("unresolved frames (unreadable)"); what this test decides is that
    /// the processes are found and sampled from their start.
    func testAllPicksUpProcessesThatStartLater() throws {
        let output = scratchFile("all.speedscope.json")
        let release = scratchFile("release")
        // It records until the processes below have all run (SIGINT then), however long a loaded machine takes.
        let recorder = try start(try PyBPFProfBinary.path(), ["record", "--all", "--rate", "499", "-o", output])
        // Loading the BPF program and scanning the running processes come first.
        try recorder.waitForLine("pybpfprof: sampling", timeout: 60, onStandardError: true)
        let interpreters = [try PythonInterpreters.pyenv("3.12").path, try PythonInterpreters.debian311().path]
        for python in interpreters { try self.run(python, [fixture, "1"]).requireSuccess() }
        var lingering: [RunningProcess] = []
        for python in interpreters + interpreters {
            let process = try start(python, [fixture, "0.2", "linger", release])
            lingering.append(process)
            try process.waitForLine("done", timeout: 60)
        }
        recorder.send(SIGINT)
        let result = try recorder.wait(timeout: 60).requireSuccess()
        _ = FileManager.default.createFile(atPath: release, contents: nil)
        var pids: [Int32] = []
        for process in lingering {
            let run = try process.wait(timeout: 60).requireSuccess()
            pids += printedPids(run.standardOutput)
        }
        let samples = try workSamples(output)
        print("  short_lived_work samples by pid: \(pids.map { "\($0): \(samples[$0] ?? 0)" }.joined(separator: ", ")) (about 100 each at most)")
        print("    \(result.recordingSummary)")
        XCTAssertEqual(pids.count, 4)
        for pid in pids {
            XCTAssertGreaterThan(samples[pid] ?? 0, 20, "process \(pid), 200 ms of Python, is missing from the profile\n\(result.report)")
        }
    }

    /// `--subprocesses -- bash -c ...`: the shell is no Python, its children are, and so is a Python
    /// grandchild started through subprocess, and children forked without exec.
    func testSubprocessesFollowsChildrenGrandchildrenAndForks() throws {
        let python = try PythonInterpreters.pyenv("3.12").path
        let output = scratchFile("sub.speedscope.json")
        // Half a second each; under emulation the first child's interpreter takes longer than that to locate.
        let seconds = 0.5 * Slowdown.factor
        let script = "\(python) \(fixture) \(seconds); \(python) -c 'import subprocess, sys; subprocess.run([sys.executable, \"\(fixture)\", \"\(seconds)\"])'; \(python) \(fixture) \(seconds) fork 2"
        let result = try runPyBPFProf(["record", "--subprocesses", "--rate", "499", "-o", output, "--", "/bin/bash", "-c", script])
            .requireSuccess()
        let pids = printedPids(result.standardOutput)
        let samples = try workSamples(output)
        print("  short_lived_work samples by pid: \(pids.map { "\($0): \(samples[$0] ?? 0)" }.joined(separator: ", ")) (about \(Int(499 * seconds)) each at most)")
        print("    \(result.recordingSummary)")
        XCTAssertEqual(pids.count, 5, result.report)  // child, grandchild, forking parent and its two children
        for pid in pids {
            // Each ran 0.5 s (about 250 samples); located within a few tens of milliseconds of its start (natively).
            XCTAssertGreaterThan(samples[pid] ?? 0, 25, "process \(pid) is missing from the profile\n\(result.report)")
        }
    }

    /// Without --subprocesses, a target's children are not profiled.
    func testChildrenAreNotFollowedByDefault() throws {
        let python = try PythonInterpreters.pyenv("3.12").path
        let output = scratchFile("nosub.speedscope.json")
        let result = try runPyBPFProf(["record", "--rate", "499", "-o", output, "--", python, fixture, "0.5", "fork", "1"])
            .requireSuccess()
        let pids = printedPids(result.standardOutput)
        let samples = try workSamples(output)
        XCTAssertEqual(pids.count, 2, result.report)
        XCTAssertGreaterThan(samples[pids[0]] ?? 0, 50)
        XCTAssertNil(samples[pids[1]], "the forked child was profiled without --subprocesses")
    }

    /// A pid the kernel gives to a new program after the first one exited is another process: each program's
    /// samples stay with its own command line, none cross over. The second program gets the first one's pid
    /// through ns_last_pid (reused_pid.py).
    func testReusedPidIsAnotherProcess() throws {
        let python = try PythonInterpreters.pyenv("3.12").path
        let fixture = Checkout.fixtures.appendingPathComponent("reused_pid.py").path
        let recording = scratchFile("reuse.pybpfprof")
        let recorder = try start(try PyBPFProfBinary.path(), [
            "record", "--all", "--rate", "499", "--duration", "8", "--save", recording, "-o", scratchFile("reuse.txt"),
            "--format", "folded"])
        try recorder.waitForLine("pybpfprof: sampling", timeout: 60, onStandardError: true)
        let first = try self.run(python, [fixture, "first", "1"]).requireSuccess()
        let pid = try XCTUnwrap(printedPids(first.standardOutput).first)
        let second = try self.run(python, [fixture, "again", String(pid), "1"]).requireSuccess()
        XCTAssertEqual(printedPids(second.standardOutput), [pid], "the second program did not get pid \(pid)")
        let result = try recorder.wait(timeout: 60).requireSuccess()

        let profile = try RecordingFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: recording))))
        var work: [[String: Int]] = Array(repeating: [:], count: profile.processes.count)
        for sample in profile.samples {
            for frame in profile.stacks[Int(sample.stack)].map({ profile.frames[Int($0)] })
            where frame.name.hasSuffix("_program_work") {
                work[Int(sample.process)][frame.name, default: 0] += 1
            }
        }
        // The two programs' processes. (The launcher's fork child also has the pid for a moment before its exec: a
        // process of its own, running the launcher's code.)
        let instances = profile.processes.indices.filter { profile.processes[$0].pid == pid && !work[$0].isEmpty }
        let described = instances.map { "\(profile.processes[$0].commandLine): \(work[$0])" }
        print("  pid \(pid): \(described.joined(separator: "; "))\n    \(result.recordingSummary)")
        XCTAssertEqual(instances.count, 2, "pid \(pid) should be two processes in the profile: \(described)")
        guard instances.count == 2 else { return }
        let (firstProcess, secondProcess) = (instances[0], instances[1])
        XCTAssertTrue(profile.processes[firstProcess].commandLine.contains("reused_pid.py first"), described[0])
        XCTAssertTrue(profile.processes[secondProcess].commandLine.contains("reused_pid.py second"), described[1])
        // About 499 samples each; the first program also waits for its interpreter to be located.
        XCTAssertGreaterThan(work[firstProcess]["first_program_work"] ?? 0, 100, described[0])
        XCTAssertGreaterThan(work[secondProcess]["second_program_work"] ?? 0, 100, described[1])
        XCTAssertNil(work[firstProcess]["second_program_work"], "the second program's samples went to the first")
        XCTAssertNil(work[secondProcess]["first_program_work"], "the first program's samples went to the second")
    }

    /// A Python process forks a child that execs another Python at once (subprocess's fork and exec): the child is
    /// profiled as the program it exec'ed, not read with its parent's interpreter (whose offsets do not fit it).
    func testForkThatExecsAnotherPythonIsProfiledAsThatPython() throws {
        let parent = try PythonInterpreters.pyenv("3.12").path
        let child = try PythonInterpreters.pyenv("3.13").path
        let output = scratchFile("forkexec.speedscope.json")
        let script = "import os; pid = os.fork()\nif pid == 0: os.execv('\(child)', ['\(child)', '\(fixture)', '0.5'])\nos.waitpid(pid, 0)"
        let result = try runPyBPFProf(["record", "--subprocesses", "--rate", "499", "-o", output, "--", parent, "-c", script])
            .requireSuccess()
        let pids = printedPids(result.standardOutput)
        let samples = try workSamples(output)
        print("  short_lived_work samples by pid: \(pids.map { "\($0): \(samples[$0] ?? 0)" }.joined(separator: ", ")) (about 250 at most)")
        print("    \(result.recordingSummary)")
        XCTAssertEqual(pids.count, 1, result.report)
        let childSamples = samples[pids.first ?? 0] ?? 0
        XCTAssertGreaterThan(childSamples, 100, "the exec'ed 3.13 child is missing its Python frames\n\(result.report)")
        // Read with its parent's 3.12 offsets, each of the child's samples would fail to read its interpreter state.
        // A process's first touch of a page it has not faulted in yet also fails a read (the sampler cannot wait for
        // a fault): a few of those are its start, not a wrong interpreter.
        let unreadable = result.errorCount("interpreter state unreadable")
        XCTAssertLessThanOrEqual(unreadable * 10, childSamples, "a process was read with another's interpreter\n\(result.report)")
    }

    /// The command `record --` launched (no --subprocesses) execs another Python in the same process, as a re-executing
    /// launcher or reloader does: the target is the process, and its new program is profiled as what it is. Likewise
    /// a `--pid` target. (An exec event forgets the process's old interpreter; the process is then located again.)
    func testNamedTargetThatExecsAnotherPythonIsProfiledAsThatPython() throws {
        let parent = try PythonInterpreters.pyenv("3.12").path
        let child = try PythonInterpreters.pyenv("3.13").path
        let execChild = "os.execv('\(child)', ['\(child)', '\(fixture)', '0.5'])"

        let launchedOutput = scratchFile("exec-launched.speedscope.json")
        let launched = try runPyBPFProf(["record", "--rate", "499", "-o", launchedOutput, "--", parent, "-c", "import os; " + execChild])
            .requireSuccess()
        let launchedPid = try XCTUnwrap(printedPids(launched.standardOutput).first, launched.report)
        let launchedSamples = try workSamples(launchedOutput)[launchedPid] ?? 0
        print("  launched 3.12 exec'ed 3.13: \(launchedSamples) short_lived_work samples (about 250 at most)\n    \(launched.recordingSummary)")
        XCTAssertGreaterThan(launchedSamples, 100, "the launched command's new program was not profiled\n\(launched.report)")

        let go = scratchFile("exec-go")
        let waiting = try start(parent, ["-c", "import os, time\nprint('ready', flush=True)\n"
            + "while not os.path.exists('\(go)'): time.sleep(0.01)\n" + execChild])
        try waiting.waitForLine("ready", timeout: 30)
        let pidOutput = scratchFile("exec-pid.speedscope.json")
        let recorder = try start(try PyBPFProfBinary.path(), ["record", "--pid", "\(waiting.pid)", "--rate", "499", "--duration", "60", "-o", pidOutput])
        try recorder.waitForLine("pybpfprof: sampling", timeout: 60, onStandardError: true)
        XCTAssertTrue(FileManager.default.createFile(atPath: go, contents: nil))
        let byPid = try recorder.wait(timeout: 60).requireSuccess()
        let pidSamples = try workSamples(pidOutput)[waiting.pid] ?? 0
        print("  --pid 3.12 exec'ed 3.13: \(pidSamples) short_lived_work samples (about 250 at most)\n    \(byPid.recordingSummary)")
        XCTAssertGreaterThan(pidSamples, 100, "the --pid target's new program was not profiled\n\(byPid.report)")
    }
}
