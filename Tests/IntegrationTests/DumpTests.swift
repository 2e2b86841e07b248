import Foundation
import Glibc
import TestSupport
import XCTest

/// `pybpfprof dump --pid PID`: every thread's current stack, read by the BPF task iterator while the process keeps
/// running. A thread that sleeps, which a sampler never sees, is shown whole: kernel, then native (libc's sleep),
/// then its Python frames; a thread running on a CPU is sampled instead, and is as whole.
final class DumpTests: IntegrationTestCase {
    func testSleepingAndBusyThreadsOnEveryInterpreter() throws {
        try checkSleepingAndBusyThreads(reader: .automatic)
    }

    /// The same dumps read from userspace, as a kernel without the BPF task iterator gets them.
    func testSleepingAndBusyThreadsOnEveryInterpreterReadFromUserspace() throws {
        try checkSleepingAndBusyThreads(reader: .userspace)
    }

    private func checkSleepingAndBusyThreads(reader: Reader) throws {
        let fixture = try Workload.load("sleeper.py")
        let sleepLine = try fixture.line("sleeper-sleep")
        let burnLines = try fixture.lines(ofFunction: "burn_cpu")
        for interpreter in try PythonInterpreters.supported() {
            let label = "\(interpreter) sleeper.py (\(reader))"
            try stage([fixture.path], for: interpreter)
            let target = try start(interpreter.command([fixture.path, "--seconds", "\(60 * Slowdown.factor)"]))
            try target.waitForLine("ready", timeout: 30)
            let mainTID = try printedThreadID("main-tid", in: target.standardOutput)
            let sleeperTID = try printedThreadID("sleeper-tid", in: target.standardOutput)

            var (dump, watch) = try dumpWatchingTarget(target.pid, mainThread: mainTID, arguments: ["--json"] + reader.arguments)
            // The busy main thread read from its saved registers just as it went back to a CPU (seen once, 3.6, runnable
            // after a timer interrupt) has a native stack that no longer matches its Python frames, and the dump says so
            // ([python/native mismatch]). Such an instant is dumped again, up to twice.
            for _ in 0..<2 {
                guard let main = dump.threads.first(where: { $0.tid == mainTID }), !main.sampled,
                      main.frames.contains(where: { $0.kind == "marker" && $0.name == "[python/native mismatch]" }) else { break }
                print("  \(label): the main thread changed while read, dumped again: \(render(main))")
                (dump, watch) = try dumpWatchingTarget(target.pid, mainThread: mainTID, arguments: ["--json"] + reader.arguments)
            }
            try checkNeverStoppedAndProgressing(watch, label: label)
            try checkReader(dump, reader, label: label)
            XCTAssertEqual(dump.pid, target.pid, label)
            XCTAssertEqual(dump.python, interpreter.minorVersion, "\(label): the Python version")
            XCTAssertEqual(Set(dump.threads.map(\.tid)), Set(try threadIDs(of: target.pid)), "\(label): one entry per thread")
            XCTAssertEqual(dump.threads.first?.tid, mainTID, "\(label): the main thread comes first")

            // The sleeper: kernel frames (the sleep system call), then native frames down from libc's sleep
            // function, unwound from the registers saved at the system call, then its Python frames.
            let sleeper = try XCTUnwrap(dump.threads.first { $0.tid == sleeperTID }, "\(label): no sleeper thread")
            XCTAssertEqual(sleeper.state, "sleeping", "\(label): \(sleeper)")
            let sleeping = try XCTUnwrap(sleeper.frames.firstIndex { $0.kind == "python" && $0.name == "sleeping_function" },
                                         "\(label): the sleeper's stack lacks sleeping_function: \(sleeper)")
            XCTAssertEqual(sleeper.frames[sleeping].file, fixture.path, "\(label): \(sleeper)")
            XCTAssertEqual(sleeper.frames[sleeping].line, sleepLine, "\(label): sleeping_function's line: \(sleeper)")
            XCTAssertEqual(sleeper.frames.first?.kind, "kernel", "\(label): the innermost frames are the kernel's: \(sleeper)")
            let user = try XCTUnwrap(sleeper.frames.firstIndex { $0.kind != "kernel" }, "\(label): \(sleeper)")
            XCTAssertLessThan(user, sleeping, "\(label): native frames between the kernel's and sleeping_function: \(sleeper)")
            XCTAssertTrue(sleeper.frames[user..<sleeping].allSatisfy { $0.kind == "native" || $0.name == "[native unwind incomplete]" },
                          "\(label): only native frames between the kernel's and sleeping_function: \(sleeper)")
            XCTAssertTrue(sleeper.frames[user].file.hasPrefix("libc"), "\(label): libc's sleep is the innermost user frame: \(sleeper)")
            XCTAssertTrue(sleeper.frames.contains { $0.kind == "python" && $0.name.hasSuffix("_bootstrap") },
                          "\(label): the thread's outer Python frames (threading's bootstrap): \(sleeper)")
            checkSleeperMarkers(sleeper, reader, interpreter, label: label)

            // The busy main thread: its Python frames, on a line of burn_cpu, called from main; sampled if it was running
            // (else preempted, its registers saved), so whole either way: down to libc's start of main.
            let main = try XCTUnwrap(dump.threads.first { $0.tid == mainTID }, "\(label): no main thread")
            let python = main.frames.filter { $0.kind == "python" }
            XCTAssertEqual(python.first?.name, "burn_cpu", "\(label): \(main)")
            XCTAssertTrue(burnLines.contains(python.first?.line ?? 0), "\(label): burn_cpu's line: \(main)")
            XCTAssertEqual(python.map(\.name).suffix(2), ["main", "<module>"], "\(label): \(main)")
            XCTAssertTrue(main.sampled || main.state != "running", "\(label): a running thread not sampled: \(main)")
            XCTAssertEqual(main.notes, [], "\(label): \(main)")
            XCTAssertTrue(main.frames.last?.name.hasPrefix("__libc_start_main") ?? false, "\(label): whole to libc's start: \(main)")
            print("  \(label): sleeper \(render(sleeper))\n    main (\(main.state)) \(render(main))")
            target.killIfRunning()
        }
    }

    func testShapeWorkloadThreadsOnEveryInterpreter() throws {
        try checkShapeWorkloadThreads(reader: .automatic)
    }

    func testShapeWorkloadThreadsOnEveryInterpreterReadFromUserspace() throws {
        try checkShapeWorkloadThreads(reader: .userspace)
    }

    private func checkShapeWorkloadThreads(reader: Reader) throws {
        let workload = try Workload.load()
        let mainFunctions: Set = ["run_shape", "caller", "heavy", "light", "spin", "recurse"]
        for interpreter in try PythonInterpreters.supported() {
            let label = "\(interpreter) workload.py shape (\(reader))"
            try stage([workload.path], for: interpreter)
            let target = try start(interpreter.command([workload.path, "shape", "--seconds", "\(10 * Slowdown.factor)"]))
            try target.waitForLine("ready", timeout: 30)
            let mainTID = try printedThreadID("main-tid", in: target.standardOutput)
            let workerTID = try printedThreadID("worker-tid", in: target.standardOutput)

            // A dump is one instant. Now and then it falls in run_shape's own loop, between two calls of the shape
            // (reading the CPU clock every 16 rounds is a system call made there): a whole stack, but not the one
            // checked below. Such an instant is dumped again, up to twice.
            var dump: Dumped, watch: Watch, main: DumpedThread, attempt = 0
            repeat {
                attempt += 1
                (dump, watch) = try dumpWatchingTarget(target.pid, mainThread: mainTID, arguments: ["--json"] + reader.arguments)
                main = try XCTUnwrap(dump.threads.first { $0.tid == mainTID }, "\(label): no main thread")
                let innermost = main.frames.first { $0.kind == "python" }?.name
                guard innermost == "run_shape", attempt < 3 else { break }
                print("  \(label): in run_shape's loop between two calls, dumped again")
            } while true
            try checkNeverStoppedAndProgressing(watch, label: label)
            try checkReader(dump, reader, label: label)
            XCTAssertEqual(Set(dump.threads.map(\.tid)), Set(try threadIDs(of: target.pid)), "\(label): one entry per thread")
            let worker = try XCTUnwrap(dump.threads.first { $0.tid == workerTID }, "\(label): no worker thread")
            for frame in main.frames + worker.frames
            where frame.kind == "python" && frame.file == workload.path && frame.name != "<module>" {
                XCTAssertTrue(try workload.lines(ofFunction: frame.name).contains(frame.line),
                              "\(label): \(frame) is not on a line of its function")
            }
            let mainNames = Set(main.frames.filter { $0.kind == "python" }.map(\.name))
            // A running thread's chain changes while it is read (it is never stopped): the reading may stop short of
            // the outer frames, but what it has is the main thread's own innermost frames.
            XCTAssertFalse(mainNames.isDisjoint(with: mainFunctions.subtracting(["run_shape"])),
                           "\(label): the main thread runs the shape: \(main)")
            XCTAssertTrue(mainNames.isSubset(of: mainFunctions.union(["main", "<module>"])), "\(label): \(main)")
            XCTAssertFalse(mainNames.contains("worker_loop"), "\(label): \(main)")
            let workerNames = worker.frames.filter { $0.kind == "python" }.map(\.name)
            XCTAssertTrue(workerNames.contains("worker_loop"), "\(label): \(worker)")
            XCTAssertTrue(Set(workerNames).isDisjoint(with: mainFunctions), "\(label): \(worker)")
            print("  \(label): main (\(main.state)) \(render(main))\n    worker (\(worker.state)) \(render(worker))")
            target.killIfRunning()
        }
    }

    /// A thread that is on a CPU when the dump reads it has no saved registers to unwind: it is sampled instead, and its
    /// stack is as whole as a sleeping one's. The "busy" thread spins in C (busy -> ext_outer_native -> callback ->
    /// ext_inner_native) while "sleeper" sleeps; each interpreter is dumped three times: text, --json, and --json
    /// --interpreter-frames. Whether the busy thread is on a CPU or waiting for one at that instant is the scheduler's
    /// choice (both are whole: a thread preempted in user mode has its registers saved; the dump runs on another CPU
    /// than the busy thread, which makes it likelier to be running); over the whole test it must have been sampled at
    /// least once.
    func testRunningThreadsAreSampledWholeOnEveryInterpreter() throws {
        try checkRunningThreadsAreSampledWhole(reader: .automatic)
    }

    /// Read from userspace, every thread the scheduler calls runnable is sampled (/proc does not tell running from
    /// waiting for a CPU), and the sleeper is as whole as the iterator reads it.
    func testRunningThreadsAreSampledWholeOnEveryInterpreterReadFromUserspace() throws {
        try checkRunningThreadsAreSampledWhole(reader: .userspace)
    }

    private func checkRunningThreadsAreSampledWhole(reader: Reader) throws {
        let workload = try Workload.load("native/dump_workload.py")
        let busyLine = try workload.line("busy-outer")
        let callbackLine = try workload.line("callback-inner")
        let sleepLine = try workload.line("sleeper-sleep")
        var sampledDumps = 0, dumps = 0
        let taskset = try tool("taskset", package: "util-linux")
        let cpus = try twoCPUs()
        for (index, interpreter) in try PythonInterpreters.supported().enumerated() {
            // Built in the interpreter's root with its own compiler and headers, when it has one.
            let extensionDirectory = try buildCallbackExtension(for: interpreter, into: "ext-\(index)")
            try stage([workload.path], for: interpreter)
            // Killed after its three dumps; long enough for them on a slow machine.
            let target = try start(interpreter.command([workload.path, extensionDirectory, "600"]))
            try target.waitForLine("ready", timeout: 30)
            let busyTID = try printedThreadID("busy-tid", in: target.standardOutput)
            let sleeperTID = try printedThreadID("sleeper-tid", in: target.standardOutput)
            // The busy thread on one CPU and the dump on another: otherwise, on a small busy machine, the dump's own
            // thread often takes the busy thread's CPU just when it reads it (the thread is then `runnable`, not running,
            // and read by the iterator), and the path under test goes unused.
            try run(taskset, ["-p", "-c", "\(cpus.busy)", "\(busyTID)"]).requireSuccess()
            var innerLeaf = 0
            var summary: [String] = []
            for arguments in [[], ["--json"], ["--json", "--interpreter-frames"]] {
                let label = "\(interpreter) dump \(arguments.joined(separator: " ")) (\(reader))"
                // A dump is one instant. Now and then it falls between two calls of the busy loop (making callback's
                // frame, or in `busy` between outer_native calls): a whole stack, but not the one checked below. Such
                // an instant is dumped again, up to twice; the third must be inside callback.
                var output = "", dump: Dumped, busy: DumpedThread, attempt = 0
                repeat {
                    attempt += 1
                    output = try run(taskset, ["-c", "\(cpus.dump)", try PyBPFProfBinary.path(), "dump", "--pid", "\(target.pid)"]
                        + arguments + reader.arguments).requireSuccess().standardOutput
                    dump = arguments.contains("--json") ? try parse(output) : try parseText(output)
                    busy = try XCTUnwrap(dump.threads.first { $0.tid == busyTID }, "\(label): no busy thread:\n\(output)")
                    let betweenCalls = !busy.frames.contains { $0.kind == "python" && $0.name == "callback" }
                    guard betweenCalls, attempt < 3 else { break }
                    // Still whole: the loop's Python frame, down to the thread's start.
                    XCTAssertTrue(busy.frames.contains { $0.kind == "python" && $0.name == "busy" }, "\(label): \(busy)")
                    XCTAssertTrue(threadEntryNames.contains(busy.frames.last?.name ?? ""), "\(label): \(busy)")
                    print("  \(label): between two calls, dumped again: \(render(busy))")
                } while true
                try checkReader(dump, reader, label: label)
                let interpreterFrames = arguments.contains("--interpreter-frames")
                dumps += 1

                // Running means sampled: never the iterator's Python-only reading of a running thread.
                XCTAssertTrue(busy.sampled || busy.state != "running", "\(label): a running thread not sampled: \(busy)")
                if busy.sampled {
                    sampledDumps += 1
                    XCTAssertEqual(busy.state, "running", "\(label): \(busy)")
                }
                XCTAssertEqual(busy.notes, [], "\(label): \(busy)")
                XCTAssertFalse(busy.frames.contains { $0.kind == "marker" }, "\(label): a whole stack has no marker: \(busy)")
                // Python and C frames in their order, innermost first, on the lines that made the calls.
                let callback = try XCTUnwrap(busy.frames.firstIndex { $0.kind == "python" && $0.name == "callback" },
                                             "\(label): no callback frame: \(busy)")
                let outer = try XCTUnwrap(busy.frames.firstIndex { $0.kind == "native" && $0.name == "ext_outer_native" },
                                          "\(label): no ext_outer_native frame: \(busy)")
                let busyFrame = try XCTUnwrap(busy.frames.firstIndex { $0.kind == "python" && $0.name == "busy" },
                                              "\(label): no busy frame: \(busy)")
                XCTAssertTrue(callback < outer && outer < busyFrame, "\(label): busy > ext_outer_native > callback: \(busy)")
                XCTAssertEqual(busy.frames[callback].line, callbackLine, "\(label): \(busy)")
                XCTAssertEqual(busy.frames[busyFrame].line, busyLine, "\(label): \(busy)")
                XCTAssertTrue(busy.frames.contains { $0.kind == "python" && $0.name.hasSuffix("_bootstrap") },
                              "\(label): threading's bootstrap: \(busy)")
                if interpreterFrames {
                    let evalLoop = interpreter.minorVersion == "2.7" ? "PyEval_EvalFrameEx" : "_PyEval_EvalFrameDefault"
                    XCTAssertTrue(busy.frames[outer...].contains { $0.kind == "native" && $0.name.hasPrefix(evalLoop) },
                                  "\(label): the eval loop's frames are shown: \(busy)")
                }
                // The native unwind reached the thread's start: libc's clone (clone3 since glibc 2.34) is outermost.
                XCTAssertTrue(threadEntryNames.contains(busy.frames.last?.name ?? ""), "\(label): whole to the thread's start"
                    + threadEntryHint(busy.frames.last?.name, interpreter) + ": \(busy)")
                XCTAssertTrue(busy.frames.last?.file.hasPrefix("libc") ?? false, "\(label): \(busy)")
                if busy.frames.first(where: { $0.kind != "kernel" })?.name == "ext_inner_native" { innerLeaf += 1 }

                // The sleeper, whatever happened to the busy one: kernel frames, libc's sleep, its Python frames.
                let sleeper = try XCTUnwrap(dump.threads.first { $0.tid == sleeperTID }, "\(label): no sleeper thread")
                XCTAssertEqual(sleeper.state, "sleeping", "\(label): \(sleeper)")
                XCTAssertFalse(sleeper.sampled, "\(label): \(sleeper)")
                XCTAssertEqual(sleeper.frames.first?.kind, "kernel", "\(label): the innermost frames are the kernel's: \(sleeper)")
                XCTAssertTrue(sleeper.frames.first { $0.kind != "kernel" }?.file.hasPrefix("libc") ?? false,
                              "\(label): libc's sleep is the innermost user frame: \(sleeper)")
                XCTAssertTrue(sleeper.frames.contains { $0.kind == "python" && $0.name == "sleeping_function" && $0.line == sleepLine },
                              "\(label): \(sleeper)")
                if reader == .userspace && interpreter.sleepUnwindNeedsRBP {
                    XCTAssertTrue(sleeper.frames.last?.name.hasSuffix("_bootstrap") ?? false, "\(label): Python frames whole: \(sleeper)")
                } else {
                    XCTAssertTrue(threadEntryNames.contains(sleeper.frames.last?.name ?? ""), "\(label): whole to the thread's start"
                        + threadEntryHint(sleeper.frames.last?.name, interpreter) + ": \(sleeper)")
                }
                checkSleeperMarkers(sleeper, reader, interpreter, label: label)
                summary.append("\(busy.sampled ? "sampled" : busy.state) \(render(busy))")
            }
            // Nearly all of its time is in ext_inner_native, and a sample or a preemption lands where the time goes.
            XCTAssertGreaterThan(innerLeaf, 0, "\(interpreter) (\(reader)): ext_inner_native was never the busy thread's innermost user frame")
            print("  \(interpreter) (\(reader)): busy thread, ext_inner_native innermost \(innerLeaf)/3:\n    " + summary.joined(separator: "\n    "))
            target.killIfRunning()
        }
        print("  busy thread sampled in \(sampledDumps) of \(dumps) dumps (read as a sleeping thread in the others: not on a CPU then)")
        XCTAssertGreaterThan(sampledDumps, 0, "the busy thread was never on a CPU when a dump read it: the sampling path went untested")
    }

    /// Text like py-spy dump's, and --python-only, on one interpreter.
    func testTextOutputAndPythonOnly() throws {
        try checkTextOutputAndPythonOnly(reader: .automatic)
    }

    /// Read from userspace, the text says so in a `Note:` line before the threads.
    func testTextOutputAndPythonOnlyReadFromUserspace() throws {
        try checkTextOutputAndPythonOnly(reader: .userspace)
    }

    private func checkTextOutputAndPythonOnly(reader: Reader) throws {
        let fixture = try Workload.load("sleeper.py")
        let target = try start(try PythonInterpreters.debian311().command([fixture.path, "--seconds", "\(60 * Slowdown.factor)"]))
        try target.waitForLine("ready", timeout: 30)
        let sleeperTID = try printedThreadID("sleeper-tid", in: target.standardOutput)

        let text = try runPyBPFProf(["dump", "--pid", "\(target.pid)"] + reader.arguments).requireSuccess().standardOutput
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.first?.hasPrefix("Process \(target.pid): ") ?? false, text)
        XCTAssertTrue(lines.dropFirst().first?.hasPrefix("Python 3.11.") ?? false, text)
        let notes = lines.dropFirst(2).prefix { $0.hasPrefix("Note: ") }
        if reader == .userspace {
            XCTAssertEqual(notes.count, 1, text)
            XCTAssertTrue(notes.first?.hasPrefix("Note: threads read from userspace as asked (process_vm_readv, ") ?? false, text)
        } else if Self.expectedAutomaticReader == "userspace" {
            XCTAssertTrue(notes.first?.hasPrefix("Note: this kernel did not load the BPF task iterator") ?? false, text)
        } else {
            XCTAssertEqual(Array(notes), [], "the kernel iterator's dump has no limits to state: \(text)")
        }
        let header = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("Thread \(sleeperTID) (") }, text)
        XCTAssertTrue(lines[header].hasSuffix(": sleeping"), text)
        let frames = lines[(header + 1)...].prefix { $0.hasPrefix("    ") }.map { $0.trimmingCharacters(in: .whitespaces) }
        XCTAssertTrue(frames.first?.hasSuffix(" [kernel]") ?? false, "the kernel's frames first: \(frames)")
        XCTAssertTrue(frames.contains { $0.hasSuffix("(libc.so.6)") }, "libc's frames as `name (library)`: \(frames)")
        let sleepLine = try fixture.line("sleeper-sleep")
        XCTAssertTrue(frames.contains("sleeping_function (\(fixture.path):\(sleepLine))"), "\(frames)")

        let pythonOnly = try parse(try runPyBPFProf(["dump", "--pid", "\(target.pid)", "--json", "--python-only"] + reader.arguments)
            .requireSuccess().standardOutput)
        try checkReader(pythonOnly, reader, label: "--python-only")
        let sleeper = try XCTUnwrap(pythonOnly.threads.first { $0.tid == sleeperTID })
        XCTAssertEqual(sleeper.frames.first?.name, "sleeping_function", "\(sleeper)")
        for thread in pythonOnly.threads {
            XCTAssertTrue(thread.frames.allSatisfy { $0.kind == "python" }, "--python-only printed other frames: \(thread)")
        }
    }

    func testErrorsAreOneLine() throws {
        let notPython = try start("/bin/sleep", ["60"])
        for (arguments, expected) in [
            (["dump", "--pid", "\(notPython.pid)"], "is not running a CPython interpreter"),
            (["dump", "--pid", "999999999"], "999999999"),
        ] {
            let result = try runPyBPFProf(arguments)
            XCTAssertEqual(result.status, 1, result.report)
            XCTAssertEqual(result.standardErrorLines.count, 1, result.report)
            XCTAssertTrue(result.standardError.hasPrefix("pybpfprof: error: "), result.report)
            XCTAssertTrue(result.standardError.contains(expected), result.report)
        }
    }

    // MARK: - Helpers

    /// How the test has pybpfprof read the threads: its own choice (this kernel loads the BPF task iterator, so it must
    /// choose that), or the userspace reader forced with the hidden `--thread-reader`.
    /// A sleeping thread's stack is whole, no marker; except where the userspace reader cannot go on
    /// (`sleepUnwindNeedsRBP`): there it stops after libc's frames and says so, and nothing else is marked.
    private func checkSleeperMarkers(_ sleeper: DumpedThread, _ reader: Reader, _ interpreter: PythonInterpreter, label: String) {
        let markers = sleeper.frames.filter { $0.kind == "marker" }.map(\.name)
        guard reader == .userspace && interpreter.sleepUnwindNeedsRBP else {
            XCTAssertEqual(markers, [], "\(label): a whole stack has no marker: \(sleeper)")
            XCTAssertEqual(sleeper.notes, [], "\(label): \(sleeper)")
            return
        }
        XCTAssertEqual(markers, ["[native unwind incomplete]"], "\(label): \(sleeper)")
        XCTAssertEqual(sleeper.notes.count, 1, "\(label): \(sleeper)")
        XCTAssertTrue(sleeper.notes.first?.contains("needs rbp") ?? false, "\(label): the reader says why it stopped: \(sleeper)")
        let incomplete = sleeper.frames.firstIndex { $0.name == "[native unwind incomplete]" } ?? 0
        XCTAssertTrue(sleeper.frames[..<incomplete].contains { $0.kind == "native" && $0.file.hasPrefix("libc") },
                      "\(label): libc's frames unwound before the stop: \(sleeper)")
    }

    enum Reader: String, CustomStringConvertible {
        case automatic
        case userspace

        var arguments: [String] { self == .userspace ? ["--thread-reader", "userspace"] : [] }
        var description: String { rawValue }
    }

    /// The dump says how it read the threads, and what that leaves out.
    /// The reader pybpfprof must choose by itself here: the kernel iterator, unless the kernel matrix says this kernel
    /// does not load it (PYBPFPROF_TEST_DUMP_READER=userspace; Scripts/test-kernels).
    static let expectedAutomaticReader = ProcessInfo.processInfo.environment["PYBPFPROF_TEST_DUMP_READER"] ?? "kernel-iterator"

    private func checkReader(_ dump: Dumped, _ reader: Reader, label: String) throws {
        switch reader {
        case .automatic where Self.expectedAutomaticReader == "userspace":
            // A kernel that does not load the iterator (the kernel matrix says which): the reader says why.
            XCTAssertEqual(dump.reader, "userspace", "\(label): this kernel does not load the BPF task iterator")
            XCTAssertTrue(dump.limits.first?.hasPrefix("this kernel did not load the BPF task iterator") ?? false, "\(label): \(dump.limits)")
        case .automatic:
            XCTAssertEqual(dump.reader ?? "kernel-iterator", "kernel-iterator", "\(label): this kernel loads the BPF task iterator")
            XCTAssertEqual(dump.limits, [], label)
        case .userspace:
            XCTAssertEqual(dump.reader ?? "userspace", "userspace", label)
            XCTAssertTrue(dump.limits.first?.hasPrefix("threads read from userspace as asked (process_vm_readv") ?? false,
                          "\(label): \(dump.limits)")
        }
    }

    struct DumpedFrame: CustomStringConvertible {
        var kind: String
        var name: String
        /// The source file of a Python frame, the library of a native one.
        var file: String
        var line: Int

        var description: String { file.isEmpty ? "\(kind):\(name)" : "\(kind):\(name) (\(file)\(line > 0 ? ":\(line)" : ""))" }
    }

    struct DumpedThread: CustomStringConvertible {
        var tid: Int32
        var name: String
        var state: String
        /// Its stack is a sample taken while it ran.
        var sampled: Bool
        var notes: [String]
        /// Innermost first.
        var frames: [DumpedFrame]

        var description: String { "thread \(tid) (\(name)) \(state)\(sampled ? " sampled" : "") \(notes) \(frames)" }
    }

    struct Dumped {
        var pid: Int32
        var python: String
        /// How the threads were read (`kernel-iterator`, `userspace`); nil in the text, which says it only in its notes.
        var reader: String?
        /// What that way of reading cannot show (the text's `Note:` lines).
        var limits: [String]
        var threads: [DumpedThread]
    }

    /// What the test saw of the target while pybpfprof dumped it.
    struct Watch {
        /// Scheduler states of the target's threads, read every millisecond or so, with how often each was seen.
        var states: [Character: Int]
        /// CPU time of the main thread before and after, and how long the dump took, in nanoseconds.
        var cpuBefore: UInt64
        var cpuAfter: UInt64
        var dumpNanoseconds: UInt64
        var targetStillRunning: Bool
        /// The main thread's share of a CPU over half a second just before the dump: what this machine gives it now.
        var shareBefore: Double
    }

    /// Runs `pybpfprof dump --pid PID ARGUMENTS...`, reading the state of every thread of the target about every
    /// millisecond while it runs.
    private func dumpWatchingTarget(_ pid: Int32, mainThread: Int32, arguments: [String]) throws -> (Dumped, Watch) {
        let controlStart = (try threadCPUTime(pid: pid, tid: mainThread), DispatchTime.now().uptimeNanoseconds)
        usleep(500_000)  // a measurement window, not a wait for an event
        let cpuBefore = try threadCPUTime(pid: pid, tid: mainThread)
        let started = DispatchTime.now().uptimeNanoseconds
        let shareBefore = Double(cpuBefore - controlStart.0) / Double(started - controlStart.1)
        let dump = try start(try PyBPFProfBinary.path(), ["dump", "--pid", "\(pid)"] + arguments)
        var states: [Character: Int] = [:]
        while dump.isRunning {
            for tid in (try? threadIDs(of: pid)) ?? [] {
                if let state = threadState(pid: pid, tid: tid) { states[state, default: 0] += 1 }
            }
            usleep(1_000)
        }
        let result = try dump.wait(timeout: 60).requireSuccess()
        let elapsed = DispatchTime.now().uptimeNanoseconds - started
        let watch = Watch(
            states: states, cpuBefore: cpuBefore, cpuAfter: try threadCPUTime(pid: pid, tid: mainThread),
            dumpNanoseconds: elapsed, targetStillRunning: kill(pid, 0) == 0, shareBefore: shareBefore)
        return (try parse(result.standardOutput), watch)
    }

    /// Never stopped or traced (`T`, `t`) while being dumped, and the busy main thread kept using the CPU.
    private func checkNeverStoppedAndProgressing(_ watch: Watch, label: String) throws {
        XCTAssertTrue(watch.targetStillRunning, "\(label): the target exited during the dump")
        XCTAssertGreaterThan(watch.states.values.reduce(0, +), 0, "\(label): the target's threads were never seen during the dump")
        XCTAssertNil(watch.states["T"], "\(label): a thread was stopped during the dump: \(watch.states)")
        XCTAssertNil(watch.states["t"], "\(label): a thread was traced during the dump: \(watch.states)")
        let used = watch.cpuAfter - watch.cpuBefore
        let share = Double(used) / Double(watch.dumpNanoseconds)
        // It keeps making progress: a CPU-bound thread that was never paused keeps a good part of the share of a CPU the
        // machine gave it just before (the dump itself needs a CPU too, and the test's watching another bit).
        XCTAssertGreaterThan(share, 0.25 * watch.shareBefore,
                             "\(label): the main thread used \(used / 1_000_000) ms of CPU in the \(watch.dumpNanoseconds / 1_000_000) ms "
                                + "of the dump, a share of \(share) against \(watch.shareBefore) just before")
    }

    private func parse(_ text: String) throws -> Dumped {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let pid = object["pid"] as? Int, let python = object["python"] as? String,
              object["command"] is String, object["interpreter"] is String, let reader = object["reader"] as? String,
              let limits = object["limits"] as? [String], let threads = object["threads"] as? [[String: Any]]
        else {
            throw IntegrationError("dump --json printed no {pid, command, python, interpreter, reader, limits, threads} object:\n\(text)")
        }
        return Dumped(pid: Int32(pid), python: python.split(separator: ".").prefix(2).joined(separator: "."), reader: reader,
                      limits: limits, threads: try threads.map { thread in
            guard let tid = thread["tid"] as? Int, let name = thread["name"] as? String, let state = thread["state"] as? String,
                  let sampled = thread["sampled"] as? Bool, let notes = thread["notes"] as? [String],
                  let frames = thread["frames"] as? [[String: Any]]
            else { throw IntegrationError("a thread of dump --json lacks tid, name, state, sampled, notes or frames: \(thread)") }
            return DumpedThread(tid: Int32(tid), name: name, state: state, sampled: sampled, notes: notes, frames: try frames.map { frame in
                guard let kind = frame["kind"] as? String, let name = frame["name"] as? String else {
                    throw IntegrationError("a frame of dump --json lacks kind or name: \(frame)")
                }
                return DumpedFrame(kind: kind, name: name, file: frame["file"] as? String ?? frame["library"] as? String ?? "",
                                   line: frame["line"] as? Int ?? 0)
            })
        })
    }

    /// The text output read back into the JSON's model: `Note: limit` lines, then per thread
    /// `Thread TID (name): state[ (on CPU N, sampled)]`, then
    /// `    [note]` lines, then one line per frame: `name [kernel]` or `name [kernel: module]`, `name (file:line)` for
    /// Python, `name (library)` for native code, `[marker]`.
    private func parseText(_ text: String) throws -> Dumped {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let first = lines.first, first.hasPrefix("Process "),
              let pid = Int32(first.dropFirst("Process ".count).prefix { $0 != ":" }),
              let version = lines.dropFirst().first, version.hasPrefix("Python ")
        else { throw IntegrationError("dump printed no `Process PID: ...` and `Python X.Y.Z (...)` lines:\n\(text)") }
        var threads: [DumpedThread] = []
        var limits: [String] = []
        for line in lines.dropFirst(2) where !line.isEmpty {
            if threads.isEmpty && line.hasPrefix("Note: ") {
                limits.append(String(line.dropFirst("Note: ".count)))
                continue
            }
            if line.hasPrefix("Thread ") {
                guard let open = line.firstIndex(of: "("), let tid = Int32(line[line.index(line.startIndex, offsetBy: 7)..<open]
                          .trimmingCharacters(in: .whitespaces)),
                      let close = line.range(of: "): ", options: .backwards)
                else { throw IntegrationError("not a thread line: \(line)") }
                var state = String(line[close.upperBound...])
                let sampled = state.hasSuffix(", sampled)")
                if sampled, let cpu = state.range(of: " (on CPU ") { state = String(state[..<cpu.lowerBound]) }
                threads.append(DumpedThread(tid: tid, name: String(line[line.index(after: open)..<close.lowerBound]), state: state,
                                            sampled: sampled, notes: [], frames: []))
                continue
            }
            guard line.hasPrefix("    "), !threads.isEmpty else { throw IntegrationError("not a frame line: \(line)\n\(text)") }
            let body = String(line.dropFirst(4))
            var frame = DumpedFrame(kind: "native", name: body, file: "", line: 0)
            if body.hasPrefix("[") {
                // Before any frame a bracketed line is a note, after one a marker.
                if threads[threads.count - 1].frames.isEmpty {
                    threads[threads.count - 1].notes.append(String(body.dropFirst().dropLast()))
                    continue
                }
                frame.kind = "marker"
            } else if let kernel = body.range(of: " [kernel") {
                frame = DumpedFrame(kind: "kernel", name: String(body[..<kernel.lowerBound]), file: "", line: 0)
            } else if body.hasSuffix(")"), let open = body.range(of: " (", options: .backwards) {
                let inside = String(body[open.upperBound..<body.index(before: body.endIndex)])
                frame.name = String(body[..<open.lowerBound])
                if let colon = inside.lastIndex(of: ":"), let number = Int(inside[inside.index(after: colon)...]) {
                    frame = DumpedFrame(kind: "python", name: frame.name, file: String(inside[..<colon]), line: number)
                } else {
                    frame.file = inside
                }
            }
            threads[threads.count - 1].frames.append(frame)
        }
        return Dumped(pid: pid, python: String(version.dropFirst("Python ".count).prefix { $0 != " " }), reader: nil, limits: limits,
                      threads: threads)
    }

    /// Two CPUs this test may run on (from /proc/self/status Cpus_allowed_list): one for the dump, one for a busy thread.
    private func twoCPUs() throws -> (dump: Int, busy: Int) {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else {
            throw IntegrationError("no Cpus_allowed_list in /proc/self/status")
        }
        let cpus = line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",")
            .flatMap { part -> [Int] in
                let bounds = part.split(separator: "-").compactMap { Int($0) }
                return bounds.count == 2 && bounds[0] <= bounds[1] ? Array(bounds[0]...bounds[1]) : bounds
            }
        guard let first = cpus.first, let last = cpus.last, first != last else {
            throw IntegrationError("this test needs two CPUs (one for a busy thread, one for the dump); allowed: \(line)")
        }
        return (first, last)
    }

    /// The path of a program on PATH (or in /usr/bin, /bin), or an error naming the package that has it.
    private func threadIDs(of pid: Int32) throws -> [Int32] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").compactMap { Int32($0) }
    }

    /// The state letter of /proc/PID/task/TID/stat (after the parenthesized command).
    private func threadState(pid: Int32, tid: Int32) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].first { $0 != " " }
    }

    /// Nanoseconds the thread has run (the first field of /proc/PID/task/TID/schedstat).
    private func threadCPUTime(pid: Int32, tid: Int32) throws -> UInt64 {
        let path = "/proc/\(pid)/task/\(tid)/schedstat"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let value = text.split(separator: " ").first.flatMap({ UInt64($0) }) else {
            throw IntegrationError("cannot read \(path)")
        }
        return value
    }

    /// `kernel:a > native:b (libc.so.6) > python:f (x.py:3) > ...`, innermost first, short.
    private func render(_ thread: DumpedThread) -> String {
        thread.frames.prefix(12).map { frame in
            let file = frame.kind == "python" ? ((frame.file as NSString).lastPathComponent + ":\(frame.line)") : frame.file
            return file.isEmpty ? frame.name : "\(frame.name) (\(file))"
        }.joined(separator: " > ") + (thread.frames.count > 12 ? " > ..." : "")
    }
}
