import Foundation
import XCTest

/// Names of a stripped library's internal functions from its debug file, found by build ID: in `--debug-dir` while
/// recording, in `report --debug-dir` later from a saved recording, and from a real debuginfod server (Debian's) on
/// loopback, while recording and in `report`. The library is built here from `native/hidden_hot.c`: its time goes to
/// the static `hidden_hot_loop`, which only the debug file names (its exported caller `hidden_spin` keeps a `.dynsym`
/// name); the unstripped build is deleted, so the debug file exists only where each test puts it.
final class DebugNamesTests: IntegrationTestCase {
    func testDebugDirectoryNamesTheStaticFunctionWhileRecording() throws {
        let library = try buildHiddenLibrary()
        let directory = try debugDirectory(for: library)
        let profile = try recordWorkload(library, ["--debug-dir", directory])
        try checkHotFrames(profile, named: "hidden_hot_loop", label: "--debug-dir")
    }

    /// Recorded without the debug file, the frame is the library and the function's address; `report` names it once
    /// given the debug directory, from the build ID and address the saved recording kept.
    func testReportNamesASavedRecordingFromADebugDirectory() throws {
        let library = try buildHiddenLibrary()
        let saved = scratchFile("hidden.pybpfprof")
        let recorded = try recordWorkload(library, ["--save", saved])
        try checkHotFrames(recorded, named: "libhidden.so+0x\(String(library.hotAddress, radix: 16))", label: "no debug file")

        let directory = try debugDirectory(for: library)
        let reported = scratchFile("reported.folded")
        let report = try runPyBPFProf(["report", saved, "-o", reported, "--debug-dir", directory]).requireSuccess()
        try checkHotFrames(try stacks(reported), named: "hidden_hot_loop", label: "report --debug-dir")
        XCTAssertTrue(report.standardError.contains("(1 in debug directories)"), report.report)
    }

    /// A debuginfod server that alone has the debug file: the recording asks it while it runs and names the frames in
    /// the profile it writes; the answer stays in the client's cache. `report` of a recording saved without it names
    /// them too.
    func testDebuginfodServerNamesTheFramesWhileRecordingAndInReport() throws {
        let library = try buildHiddenLibrary()
        let url = try startDebuginfod(serving: library)
        let cache = scratchFile("debuginfod-cache")
        let profile = try recordWorkload(library, [], environment: ["DEBUGINFOD_URLS=\(url)", "DEBUGINFOD_CACHE_PATH=\(cache)"])
        try checkHotFrames(profile, named: "hidden_hot_loop", label: "debuginfod")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(cache)/\(library.buildID)/debuginfo"),
                      "the debug file should be in libdebuginfod's cache: \(cache)")

        let saved = scratchFile("hidden.pybpfprof")
        _ = try recordWorkload(library, ["--save", saved])
        let reported = scratchFile("reported.folded")
        let report = try runEnvironment(["DEBUGINFOD_URLS=\(url)", "DEBUGINFOD_CACHE_PATH=\(cache)-report"],
                                        [try PyBPFProfBinary.path(), "report", saved, "-o", reported]).requireSuccess()
        try checkHotFrames(try stacks(reported), named: "hidden_hot_loop", label: "report with debuginfod")
        XCTAssertTrue(report.standardError.contains("(1 from debuginfod)"), report.report)
    }

    /// `record --rotate`: a period is written with the names that have arrived by then, without waiting for more, and
    /// the answer asked for at the first unnamed frame names the periods after it. Here the server answers within
    /// milliseconds, so of the periods the timer writes (the last one is written at the end, as a whole recording is)
    /// at most the first may go out unnamed.
    func testDebuginfodNamesTheFramesOfRotatedPeriods() throws {
        let library = try buildHiddenLibrary()
        let url = try startDebuginfod(serving: library)
        let workload = try startWorkload(library)
        let result = try runEnvironment(
            ["DEBUGINFOD_URLS=\(url)", "DEBUGINFOD_CACHE_PATH=\(scratchFile("rotation-cache"))"],
            [try PyBPFProfBinary.path(), "record", "--pid", "\(workload.pid)", "--rate", "499", "--rotate", "1",
             "--duration", "\(4 * Slowdown.factor)", "-o", scratchFile("periods.folded")], timeout: 120).requireSuccess()
        workload.killIfRunning()
        let periods = try FileManager.default.contentsOfDirectory(atPath: scratchFile(""))
            .filter { $0.hasPrefix("periods-") && $0.hasSuffix(".folded") }.sorted()
        XCTAssertGreaterThanOrEqual(periods.count, 4, "4 s in periods of 1 s: \(periods)\n\(result.report)")
        let named = try periods.dropLast().map { period -> Bool in
            let stacks = try stacks(scratchFile(period))
            let hot = stacks.filter { $0.stack.contains("hidden_hot_loop (libhidden.so)") }.reduce(0) { $0 + $1.count }
            let unnamed = stacks.filter { $0.stack.contains { $0.hasPrefix("libhidden.so+0x") } }.reduce(0) { $0 + $1.count }
            print("  \(period): \(hot) samples in hidden_hot_loop, \(unnamed) in unnamed libhidden.so frames")
            XCTAssertGreaterThan(hot + unnamed, 50, "\(period): too few samples in the library")
            return unnamed == 0
        }
        XCTAssertEqual(named.dropFirst(), Array(repeating: true, count: named.count - 1)[...],
                       "periods written after the first should have the names: \(zip(periods, named).map { "\($0) \($1)" })")
        try checkHotFrames(try stacks(scratchFile(periods.last!)), named: "hidden_hot_loop", label: "the last period")
    }

    /// `dump` asks the servers for the debug files of the stripped files its stacks run through, and waits for them:
    /// the instant caught in the library (most are: it spends its time there) names its static function.
    func testDumpNamesTheFramesFromDebuginfod() throws {
        let library = try buildHiddenLibrary()
        let url = try startDebuginfod(serving: library)
        let workload = try startWorkload(library)
        defer { workload.killIfRunning() }
        var dumps: [String] = []
        // An instant in the library below hidden_spin: a dump may catch the thread between two calls (Python code),
        // so up to five are taken.
        for attempt in 0..<5 {
            let result = try runEnvironment(["DEBUGINFOD_URLS=\(url)", "DEBUGINFOD_CACHE_PATH=\(scratchFile("dump-cache-\(attempt)"))"],
                                            [try PyBPFProfBinary.path(), "dump", "--pid", "\(workload.pid)"]).requireSuccess()
            dumps.append(result.standardOutput)
            let lines = result.standardOutput.split(separator: "\n")
            guard let spin = lines.firstIndex(where: { $0.contains("hidden_spin") }), spin > lines.startIndex,
                  lines[lines.index(before: spin)].contains("libhidden.so") || lines[lines.index(before: spin)].contains("hidden_hot_loop")
            else { continue }
            // Leaf first: the frame above hidden_spin is the one it called.
            let callee = lines[lines.index(before: spin)]
            print("  dump \(attempt + 1): \(callee.trimmingCharacters(in: .whitespaces)) above hidden_spin")
            XCTAssertTrue(callee.contains("hidden_hot_loop"), "the debug file from debuginfod should name it:\n\(result.standardOutput)\n\(result.standardError)")
            XCTAssertFalse(result.standardOutput.contains("libhidden.so+0x"), result.standardOutput)
            return
        }
        XCTFail("no dump caught the thread in the library below hidden_spin:\n\(dumps.joined(separator: "\n---\n"))")
    }

    /// `top` names frames in place as their debug file arrives: each refresh shows what has arrived by then. The server
    /// answers within milliseconds of the first unnamed frame, so from the second refresh on the library's static
    /// function has its name, and its address is gone from the table.
    func testTopNamesTheFramesAsTheirDebugFileArrives() throws {
        let library = try buildHiddenLibrary()
        let url = try startDebuginfod(serving: library)
        let workload = try startWorkload(library)
        defer { workload.killIfRunning() }
        let result = try runEnvironment(
            ["DEBUGINFOD_URLS=\(url)", "DEBUGINFOD_CACHE_PATH=\(scratchFile("top-cache"))"],
            [try PyBPFProfBinary.path(), "top", "--pid", "\(workload.pid)", "--rate", "499", "--iterations", "3", "--limit", "1000"])
            .requireSuccess()
        let refreshes = TopRefresh.parse(result.standardOutput)
        XCTAssertEqual(refreshes.count, 3, result.report)
        let unnamed = "libhidden.so+0x\(String(library.hotAddress, radix: 16)) (libhidden.so)"
        for (index, refresh) in refreshes.enumerated() {
            let functions = refresh.rows.map(\.function)
            let hot = refresh.rows.first { $0.function == "hidden_hot_loop (libhidden.so)" }
            print("  refresh \(index + 1): hidden_hot_loop own \(hot.map { "\($0.own)%" } ?? "absent"); "
                  + "unnamed \(functions.contains(unnamed) ? "present" : "absent")")
            guard index > 0 else { continue }
            XCTAssertEqual(functions.first, "hidden_hot_loop (libhidden.so)", "refresh \(index + 1):\n\(refresh.text)")
            XCTAssertFalse(functions.contains(unnamed), "refresh \(index + 1) still shows the address:\n\(refresh.text)")
        }
    }

    /// A server that takes the connection and never answers: the recording ends and writes its profile anyway, the
    /// frames unnamed, and says the debug file did not arrive.
    func testServerThatNeverAnswersDoesNotHoldTheRecording() throws {
        let library = try buildHiddenLibrary()
        let silent = try start("/usr/bin/python3", ["-c", """
            import socket, sys, time
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            print(listener.getsockname()[1])
            sys.stdout.flush()
            time.sleep(3600)
            """])
        let port = try waitForPort(silent)
        var summary = ""
        let profile = try recordWorkload(library, [], environment: ["DEBUGINFOD_URLS=http://127.0.0.1:\(port)",
                                                                    "DEBUGINFOD_CACHE_PATH=\(scratchFile("cache"))"],
                                         summary: &summary)
        try checkHotFrames(profile, named: "libhidden.so+0x\(String(library.hotAddress, radix: 16))", label: "silent server")
        XCTAssertTrue(summary.contains("debuginfod: not arrived by the time the profile was written"), summary)
    }

    /// A library loaded while the process is recorded: its samples first reach code in no known mapping, the process's
    /// maps are read again and the library's table loaded, and from then on its frames unwind through it (named by its
    /// FDE). The summary says how long that took.
    func testLibraryLoadedWhileRecordingIsUnwoundAndItsGapReported() throws {
        let library = try buildHiddenLibrary()
        let trigger = scratchFile("load-now")
        let interpreter = try PythonInterpreters.pyenv("3.12")
        let workload = try start(interpreter.command([
            Checkout.fixtures.appendingPathComponent("late_library_workload.py").path, library.path, trigger]))
        try workload.waitForLine("ready", timeout: 30)
        let output = scratchFile("late.folded")
        let duration = 4 * Slowdown.factor
        let recorder = try start("/usr/bin/env", ["-u", "DEBUGINFOD_URLS", try PyBPFProfBinary.path(), "record", "--pid",
                                                  "\(workload.pid)", "--rate", "499", "--duration", "\(duration)", "-o", output])
        try recorder.waitForLine(nativeStacksReadyLine, timeout: 60, onStandardError: true)
        // Mapped only now, after the process's tables were loaded.
        FileManager.default.createFile(atPath: trigger, contents: nil)
        try workload.waitForLine("loaded", timeout: 30)
        let result = try recorder.wait(timeout: 120).requireSuccess()
        try checkHotFrames(try stacks(output), named: "libhidden.so+0x\(String(library.hotAddress, radix: 16))",
                           label: "library loaded while recording")
        let line = try XCTUnwrap(result.standardError.split(separator: "\n").first { $0.hasPrefix("code mapped while recording: ") },
                                 "the summary should report the library mapped while recording:\n\(result.standardError)")
        print("  \(line)")
        let longest = try XCTUnwrap(line.components(separatedBy: " ms (longest)").first?.split(separator: " ").last.flatMap { Double($0) },
                                    "no longest gap in: \(line)")
        XCTAssertLessThan(longest, duration * 1000, "the gap ends within the recording: \(line)")
    }

    // MARK: - The library, its debug file, the server

    private struct HiddenLibrary {
        /// The stripped library the workload loads.
        let path: String
        /// Its debug file (`objcopy --only-keep-debug`), in the scratch directory.
        let debugFile: String
        let buildID: String
        /// hidden_hot_loop's link-time address, from the unstripped build's symbol table.
        let hotAddress: UInt64
    }

    private func buildHiddenLibrary() throws -> HiddenLibrary {
        let source = Checkout.fixtures.appendingPathComponent("native/hidden_hot.c").path
        let full = scratchFile("libhidden.full.so"), stripped = scratchFile("libhidden.so"), debug = scratchFile("hidden.debug")
        try run(try tool("cc", package: "gcc"), ["-O2", "-g", "-fPIC", "-shared", "-Wl,--build-id=sha1", "-o", full, source])
            .requireSuccess()
        let objcopy = try tool("objcopy", package: "binutils")
        try run(objcopy, ["--only-keep-debug", full, debug]).requireSuccess()
        try run(objcopy, ["--strip-all", full, stripped]).requireSuccess()
        let symbols = try run(try tool("nm", package: "binutils"), [full]).requireSuccess().standardOutput
        let hot = try XCTUnwrap(symbols.split(separator: "\n").first { $0.hasSuffix(" t hidden_hot_loop") },
                                "hidden_hot_loop should be a local function of \(full):\n\(symbols)")
        let hotAddress = try XCTUnwrap(UInt64(hot.prefix { $0 != " " }, radix: 16))
        try FileManager.default.removeItem(atPath: full)
        let notes = try run(try tool("readelf", package: "binutils"), ["-n", stripped]).requireSuccess().standardOutput
        let buildID = try XCTUnwrap(notes.split(separator: "\n").first { $0.contains("Build ID:") }?.split(separator: " ").last,
                                    "no build ID in \(stripped)")
        let exported = try run(try tool("nm", package: "binutils"), ["-D", "--defined-only", stripped]).requireSuccess().standardOutput
        XCTAssertFalse(exported.contains("hidden_hot_loop"), "the stripped library should not name hidden_hot_loop")
        return HiddenLibrary(path: stripped, debugFile: debug, buildID: String(buildID), hotAddress: hotAddress)
    }

    /// A directory laid out as /usr/lib/debug is, holding the library's debug file: `.build-id/ab/cdef….debug`.
    private func debugDirectory(for library: HiddenLibrary) throws -> String {
        let directory = scratchFile("debug-files")
        let subdirectory = "\(directory)/.build-id/\(library.buildID.prefix(2))"
        try FileManager.default.createDirectory(atPath: subdirectory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: library.debugFile,
                                         toPath: "\(subdirectory)/\(library.buildID.dropFirst(2)).debug")
        return directory
    }

    /// Debian's debuginfod on a free port, scanning a directory that holds the debug file alone; returns its URL once
    /// it serves the file.
    private func startDebuginfod(serving library: HiddenLibrary) throws -> String {
        let served = scratchFile("served")
        try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: library.debugFile, toPath: "\(served)/hidden.debug")
        let server = try tool("debuginfod", package: "debuginfod")
        let curl = try tool("curl", package: "curl")
        // A port the kernel just gave out is free; debuginfod is told to take it (it has no "any port" option).
        let port = try freePort()
        let process = try start(server, ["-F", served, "-p", "\(port)", "-d", scratchFile("debuginfod.sqlite"), "-t", "0", "-g", "0"])
        let url = "http://127.0.0.1:\(port)"
        let deadline = Date().addingTimeInterval(60 * Slowdown.factor)
        while true {
            let answer = try run(curl, ["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(url)/buildid/\(library.buildID)/debuginfo"])
            if answer.standardOutput == "200" { return url }
            guard process.isRunning, Date() < deadline else {
                throw IntegrationError("debuginfod did not serve \(library.buildID) (last answer \(answer.standardOutput)): "
                    + "\(process.standardError.suffix(2000))")
            }
            usleep(100_000)
        }
    }

    private func freePort() throws -> Int {
        let finder = try run("/usr/bin/python3", ["-c", """
            import socket
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            print(s.getsockname()[1])
            """]).requireSuccess()
        return try XCTUnwrap(Int(finder.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    private func waitForPort(_ process: RunningProcess) throws -> Int {
        let deadline = Date().addingTimeInterval(30 * Slowdown.factor)
        while Date() < deadline {
            if let port = Int(process.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) { return port }
            usleep(20_000)
        }
        throw IntegrationError("the listener printed no port: \(process.standardError)")
    }

    // MARK: - Recording and checking

    /// Records the workload (attached once it has called into the library) for 3 s of its time with `arguments`, under
    /// `environment` (DEBUGINFOD_URLS is unset otherwise); returns the folded stacks.
    private func recordWorkload(_ library: HiddenLibrary, _ arguments: [String], environment: [String] = []) throws -> [(stack: [String], count: Int)] {
        var summary = ""
        return try recordWorkload(library, arguments, environment: environment, summary: &summary)
    }

    private func recordWorkload(_ library: HiddenLibrary, _ arguments: [String], environment: [String],
                                summary: inout String) throws -> [(stack: [String], count: Int)] {
        let workload = try startWorkload(library)
        let output = scratchFile("hidden-\(UUID().uuidString.prefix(6)).folded")
        let result = try runEnvironment(
            environment,
            [try PyBPFProfBinary.path(), "record", "--pid", "\(workload.pid)", "--rate", "499",
             "--duration", "\(3 * Slowdown.factor)", "-o", output] + arguments, timeout: 120).requireSuccess()
        workload.killIfRunning()
        summary = result.standardError
        return try stacks(output)
    }

    /// hidden_workload.py on pyenv's 3.12, once it has called into the library.
    private func startWorkload(_ library: HiddenLibrary) throws -> RunningProcess {
        let workload = try start(try PythonInterpreters.pyenv("3.12").command([
            Checkout.fixtures.appendingPathComponent("hidden_workload.py").path, library.path]))
        try workload.waitForLine("ready", timeout: 30)
        return workload
    }

    /// Runs a command under `env`: VAR=VALUE assignments, and DEBUGINFOD_URLS unset unless assigned (a login shell on
    /// Debian sets it to Debian's server).
    private func runEnvironment(_ environment: [String], _ command: [String], timeout: TimeInterval = 120) throws -> ProcessResult {
        try run("/usr/bin/env", ["-u", "DEBUGINFOD_URLS"] + environment + command, timeout: timeout)
    }

    private func stacks(_ folded: String) throws -> [(stack: [String], count: Int)] {
        try String(contentsOfFile: folded, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard let space = line.lastIndex(of: " "), let count = Int(line[line.index(after: space)...]) else { return nil }
            return (line[..<space].split(separator: ";").map(String.init), count)
        }
    }

    /// The samples in the library: under hidden_spin, and most (90%: a few fall in hidden_spin's own instructions
    /// around the call) one frame below it in the frame named `name` (`hidden_hot_loop (libhidden.so)` in folded).
    private func checkHotFrames(_ stacks: [(stack: [String], count: Int)], named name: String, label: String) throws {
        var underSpin = 0, inHot = 0
        var leaves: [String: Int] = [:]
        for (stack, count) in stacks {
            guard let spin = stack.lastIndex(where: { $0.hasPrefix("hidden_spin ") }) else { continue }
            underSpin += count
            let below = spin + 1 < stack.count ? stack[spin + 1] : "(none)"
            leaves[below, default: 0] += count
            if below == "\(name) (libhidden.so)" { inHot += count }
        }
        let figures = "\(inHot) of \(underSpin) samples under hidden_spin in \(name); below it: "
            + leaves.sorted { $0.value > $1.value }.prefix(4).map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        print("  \(label): \(figures)")
        XCTAssertGreaterThanOrEqual(underSpin, 100, "\(label): too few samples in the library: \(figures)")
        XCTAssertGreaterThanOrEqual(Double(inHot), 0.9 * Double(underSpin), "\(label): \(figures)")
    }
}
