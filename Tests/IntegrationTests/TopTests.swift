import Foundation
import Glibc
import XCTest

/// `top`: a live view of a running workload. With standard output in a file it prints plain refreshes; in a
/// terminal (a detached tmux pane) it takes the screen, fits it, quits on q or Ctrl-C and gives the terminal back.
final class TopTests: IntegrationTestCase {
    /// The test's tmux pane, on a private server (`tmux -L`) killed in tearDown with everything it runs.
    private var pane: TmuxPane?

    override func tearDownWithError() throws {
        _ = try? pane?.tmux(["kill-server"])
        pane = nil
        try super.tearDownWithError()
    }

    /// The shape workload, running for up to a minute on `interpreter` (default pyenv's 3.12): its main thread's pid and
    /// its worker's thread id, and the process, to be killed when done with.
    private func startWorkload(on interpreter: PythonInterpreter? = nil) throws -> (pid: Int32, workerTid: Int32, process: RunningProcess) {
        let interpreter = try interpreter ?? PythonInterpreters.pyenv("3.12")
        let workload = try Workload.load()
        try stage([workload.path], for: interpreter)
        let running = try start(interpreter.command([workload.path, "shape", "--seconds", "60"]))
        try running.waitForLine("ready", timeout: 30)
        return (running.pid, try printedThreadID("worker-tid", in: running.standardOutput), running)
    }

    // MARK: Every interpreter

    /// top on every supported interpreter: one short plain run each (one refresh, at 499 Hz for enough samples in its
    /// second), which shows the workload's process, spin on top, and the shape's other functions of both threads. Every
    /// function is listed (--limit): 2.7's GIL hands over through futexes, whose kernel frames have more own time than
    /// the callers of spin.
    func testShowsTheWorkloadOnEveryInterpreter() throws {
        let expected = ["spin", "heavy", "light", "caller", "run_shape", "worker_loop", "worker_compute"].map { "\($0) (workload.py)" }
        for interpreter in try PythonInterpreters.supported() {
            let workload = try startWorkload(on: interpreter)
            let result = try runPyBPFProf([
                "top", "--pid", String(workload.pid), "--rate", "499", "--iterations", "1", "--limit", "1000",
            ]).requireSuccess()
            workload.process.killIfRunning()
            let refresh = try XCTUnwrap(TopRefresh.parse(result.standardOutput).last, "\(interpreter): \(result.report)")
            XCTAssertTrue(refresh.header.contains { $0.hasPrefix("pid \(workload.pid): ") }, "\(interpreter):\n\(refresh.text)")
            XCTAssertTrue(refresh.header.contains { $0.hasPrefix("1 process, 2 threads, ") }, "\(interpreter):\n\(refresh.text)")
            XCTAssertEqual(refresh.rows.first?.function, "spin (workload.py)", "\(interpreter):\n\(refresh.text)")
            let shown = Set(refresh.rows.map(\.function))
            let missing = expected.filter { !shown.contains($0) }
            XCTAssertEqual(missing, [], "\(interpreter): functions missing from top's table:\n\(refresh.text)")
            let spin = refresh.rows.first { $0.function == "spin (workload.py)" }
            print("  \(interpreter): \(refresh.samples.map(String.init) ?? "?") samples; spin own \(spin?.own ?? 0)%; "
                + "\(expected.count - missing.count) of \(expected.count) shape functions shown"
                + (missing.isEmpty ? "" : " (missing: \(missing.joined(separator: ", ")))"))
        }
    }

    // MARK: Plain refreshes

    /// Without a terminal: one plain refresh per iteration, blank lines between them, no escape codes, and spin (about
    /// 85% of the main thread, which has most of the samples) on top.
    func testPlainRefreshesWithoutATerminal() throws {
        let workload = try startWorkload()
        let result = try runPyBPFProf(["top", "--pid", String(workload.pid), "--iterations", "3"]).requireSuccess()
        XCTAssertFalse(result.standardOutput.contains("\u{1B}"), "escape codes in plain output: \(result.report)")
        let refreshes = TopRefresh.parse(result.standardOutput)
        XCTAssertEqual(refreshes.count, 3, result.report)
        for refresh in refreshes {
            XCTAssertTrue(refresh.header.contains { $0.hasPrefix("pid \(workload.pid): ") }, refresh.text)
            let top = try XCTUnwrap(refresh.rows.first, refresh.text)
            XCTAssertEqual(top.function, "spin (workload.py)", refresh.text)
            XCTAssertTrue((50...97).contains(top.own), "spin's own share \(top.own)% is implausible:\n\(refresh.text)")
            XCTAssertGreaterThanOrEqual(top.total, top.own, refresh.text)
            XCTAssertLessThanOrEqual(refresh.rows.count, 25, "more rows than the plain default:\n\(refresh.text)")
        }
        XCTAssertTrue(refreshes.last?.header.contains { $0.hasPrefix("1 process, 2 threads, ") } == true, result.standardOutput)
        print("  top, last plain refresh:\n\(refreshes.last?.text.split(separator: "\n").prefix(8).joined(separator: "\n") ?? "")")
    }

    /// --filter-tid shows one thread's functions only; a filter nothing matches says so.
    func testFiltersRestrictTheTable() throws {
        let workload = try startWorkload()
        let worker = try runPyBPFProf([
            "top", "--pid", String(workload.pid), "--iterations", "2", "--filter-tid", String(workload.workerTid),
        ]).requireSuccess()
        let refresh = try XCTUnwrap(TopRefresh.parse(worker.standardOutput).last, worker.report)
        XCTAssertTrue(refresh.header.contains { $0.hasPrefix("filter: tid \(workload.workerTid): ") }, refresh.text)
        XCTAssertTrue(refresh.header.contains { $0.hasPrefix("1 process, 1 thread, ") }, refresh.text)
        XCTAssertEqual(refresh.rows.first?.function, "worker_compute (workload.py)", refresh.text)
        XCTAssertFalse(refresh.rows.contains { $0.function.hasPrefix("spin ") || $0.function.hasPrefix("heavy ") },
                       "the main thread's functions under --filter-tid of the worker:\n\(refresh.text)")

        let none = try runPyBPFProf([
            "top", "--pid", String(workload.pid), "--iterations", "1", "--filter-thread", "no-such-thread",
        ]).requireSuccess()
        XCTAssertTrue(none.standardOutput.contains("(no sample matches the filters)"), none.report)
    }

    /// --window 1 shows about one second of samples however long top runs; --cumulative everything since the start.
    func testWindowAndCumulative() throws {
        let workload = try startWorkload()
        func sampleCounts(_ options: [String]) throws -> [Int] {
            let result = try runPyBPFProf(["top", "--pid", String(workload.pid), "--iterations", "3"] + options).requireSuccess()
            let refreshes = TopRefresh.parse(result.standardOutput)
            XCTAssertEqual(refreshes.count, 3, result.report)
            return try refreshes.map { try XCTUnwrap($0.samples, $0.text) }
        }
        let windowed = try sampleCounts(["--window", "1"])
        let cumulative = try sampleCounts(["--cumulative"])
        print("  samples per refresh: --window 1 \(windowed), --cumulative \(cumulative)")
        XCTAssertGreaterThan(windowed[0], 50, "one second of a busy main thread at 100 Hz")
        XCTAssertLessThan(Double(windowed[2]), 1.6 * Double(windowed[0]), "--window 1 kept older samples: \(windowed)")
        XCTAssertGreaterThan(Double(cumulative[2]), 2.2 * Double(cumulative[0]), "--cumulative dropped samples: \(cumulative)")
    }

    /// A launched command that exits ends top: the last refresh is printed, the command's exit status passed on.
    func testCommandExitEndsTopWithItsStatus() throws {
        let workload = try Workload.load()
        let result = try runPyBPFProf([
            "top", "--",
        ] + PythonInterpreters.pyenv("3.12").command([workload.path, "shape", "--seconds", "3", "--exit-status", "3"]))
        XCTAssertTrue(result.exitedNormally && result.status == 3, "expected exit status 3: \(result.report)")
        XCTAssertTrue(result.standardError.contains("pybpfprof: the command exited"), result.report)
        let last = try XCTUnwrap(TopRefresh.parse(result.standardOutput).last, result.report)
        XCTAssertEqual(last.rows.first?.function, "spin (workload.py)", last.text)
    }

    func testBadOptionsAreRefusedInOneLine() throws {
        assertCleanError(try runPyBPFProf(["top"]), keywords: ["exactly one target"])
        assertCleanError(try runPyBPFProf(["top", "--all", "--window", "5", "--cumulative"]), keywords: ["--cumulative"])
        assertCleanError(try runPyBPFProf(["top", "--all", "--interval", "0"]), keywords: ["--interval"])
    }

    // MARK: In a terminal

    /// In a 100x30 tmux pane: the header and spin on the alternate screen, within the pane; after a resize to 60x12
    /// the header is still on the first row; q quits with status 0, and the shell finds its terminal as it was: the
    /// normal screen, the cursor shown, canonical mode and echo on.
    func testFullScreenInTmuxQuitsOnQ() throws {
        let pane = try startTopInTmux(columns: 100, rows: 30)
        let screen = try pane.waitForScreen(containing: "spin (workload.py)")
        print("  top in a 100x30 tmux pane:\n" + screen.map { "  | \($0)" }.joined(separator: "\n"))
        try checkTopScreen(screen, columns: 100, rows: 30)
        XCTAssertEqual(try pane.format("#{alternate_on}"), "1", "top should draw on the alternate screen")

        try pane.tmux(["resize-window", "-t", pane.session, "-x", "60", "-y", "12"])
        let small = try pane.waitForScreen(containing: "spin (workload.py)", width: 60)
        print("  after resizing to 60x12:\n" + small.map { "  | \($0)" }.joined(separator: "\n"))
        try checkTopScreen(small, columns: 60, rows: 12)

        try pane.tmux(["send-keys", "-t", pane.session, "q"])
        try checkTerminalRestored(pane)
    }

    /// Ctrl-C (SIGINT to the pane's foreground processes) ends top as cleanly as q.
    func testFullScreenInTmuxQuitsOnControlC() throws {
        let pane = try startTopInTmux(columns: 100, rows: 30)
        _ = try pane.waitForScreen(containing: "spin (workload.py)")
        try pane.tmux(["send-keys", "-t", pane.session, "C-c"])
        try checkTerminalRestored(pane)
    }

    /// Starts the workload and, in a detached tmux pane of the given size, a shell that runs `pybpfprof top` on it
    /// and then reports top's exit status and the terminal's input mode (`icanon`, `echo` or `-icanon`, `-echo`).
    private func startTopInTmux(columns: Int, rows: Int) throws -> TmuxPane {
        guard FileManager.default.isExecutableFile(atPath: Tmux.path) else {
            throw IntegrationError("tmux is missing at \(Tmux.path): apt-get install tmux (Scripts/setup --tests installs it)")
        }
        let workload = try startWorkload()
        let pane = TmuxPane(socket: "pybpfprof-top-\(getpid())-\(UUID().uuidString.prefix(8))", session: "top",
                            outputFile: scratchFile("tmux.out"))
        self.pane = pane
        let script = "\(try PyBPFProfBinary.path()) top --pid \(workload.pid); echo top-exited-$?; "
            + "stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)'; echo terminal-checked; sleep 600"
        try pane.tmux(["new-session", "-d", "-s", pane.session, "-x", String(columns), "-y", String(rows), script])
        return pane
    }

    /// A screen of top: header on the first row, column titles, spin the first function, all within the pane.
    private func checkTopScreen(_ screen: [String], columns: Int, rows: Int, line: UInt = #line) throws {
        let text = screen.joined(separator: "\n")
        XCTAssertTrue(screen.first?.hasPrefix("pybpfprof top   elapsed ") == true, "header not on the first row:\n\(text)", line: line)
        XCTAssertTrue(screen.first?.contains("q quits") == true, text, line: line)
        XCTAssertLessThanOrEqual(screen.count, rows, text, line: line)
        for row in screen { XCTAssertLessThanOrEqual(row.count, columns, "row wider than the pane: \(row)", line: line) }
        let titles = try XCTUnwrap(screen.firstIndex { $0.hasPrefix("  OWN%  TOTAL%") }, text, line: line)
        XCTAssertTrue(screen.indices.contains(titles + 1) && screen[titles + 1].hasSuffix("spin (workload.py)"),
                      "spin should be the first function:\n\(text)", line: line)
    }

    /// top exited with status 0 and left the terminal as the shell had it.
    private func checkTerminalRestored(_ pane: TmuxPane, line: UInt = #line) throws {
        // The shell prints top's exit status, then the terminal's modes, then this line.
        let screen = try pane.waitForScreen(containing: "terminal-checked")
        let text = screen.joined(separator: "\n")
        print("  the pane after top exited:\n" + screen.map { "  | \($0)" }.joined(separator: "\n"))
        XCTAssertTrue(screen.contains("top-exited-0"), "top's exit status:\n\(text)", line: line)
        XCTAssertTrue(screen.contains("icanon") && screen.contains("echo"), "canonical mode and echo not restored:\n\(text)", line: line)
        XCTAssertFalse(screen.contains { $0.contains("OWN%") || $0.contains("spin (") },
                       "top's table left on the normal screen:\n\(text)", line: line)
        XCTAssertEqual(try pane.format("#{alternate_on}"), "0", "still on the alternate screen", line: line)
        XCTAssertEqual(try pane.format("#{cursor_flag}"), "1", "cursor left hidden", line: line)
    }
}

enum Tmux {
    static let path = "/usr/bin/tmux"
}

/// One detached tmux session on a private server.
struct TmuxPane {
    let socket: String
    let session: String
    /// Where each tmux command's output goes, to be read back.
    let outputFile: String

    /// Runs `tmux -L socket ARGUMENTS...` and returns its output; throws unless it exits 0 within 10 s. Spawned and
    /// awaited by hand, not with Foundation's Process: the first command forks the tmux server, which keeps the
    /// descriptors it inherited, among them the one through which Process learns that its child exited; Process
    /// would wait for the server to end.
    @discardableResult
    func tmux(_ arguments: [String]) throws -> String {
        let commandLine = ([Tmux.path, "-L", socket] + arguments).joined(separator: " ")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var argv: [UnsafeMutablePointer<CChar>?] = ([Tmux.path, "-L", socket] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, Tmux.path, &actions, nil, &argv, environ)
        guard spawned == 0 else { throw IntegrationError("cannot run `\(commandLine)`: \(String(cString: strerror(spawned)))") }
        let deadline = Date().addingTimeInterval(10)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                throw IntegrationError("`\(commandLine)` did not finish within 10 s")
            }
            usleep(10_000)
        }
        let output = (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw IntegrationError("`\(commandLine)` failed (wait status \(status)): \(output)")
        }
        return output
    }

    /// A format variable of the pane (`#{alternate_on}`).
    func format(_ variable: String) throws -> String {
        try tmux(["display-message", "-p", "-t", session, variable]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The pane's visible rows, trailing blank ones dropped, once one contains `text` (and, with `width`, the pane is
    /// that wide); throws after 20 s.
    func waitForScreen(containing text: String, width: Int? = nil) throws -> [String] {
        let deadline = Date().addingTimeInterval(20)
        var screen: [String] = []
        while Date() < deadline {
            screen = try tmux(["capture-pane", "-p", "-t", session]).components(separatedBy: "\n")
            while screen.last?.trimmingCharacters(in: .whitespaces).isEmpty == true { screen.removeLast() }
            let wide = try width.map { try format("#{pane_width}") == String($0) } ?? true
            if wide && screen.contains(where: { $0.contains(text) }) { return screen }
            usleep(200_000)
        }
        throw IntegrationError("the tmux pane did not show '\(text)' within 20 s; it shows:\n" + screen.joined(separator: "\n"))
    }
}

/// One refresh of `top`'s plain output: header lines, then the function rows after the column titles.
struct TopRefresh {
    struct Row {
        var own: Double
        var total: Double
        var function: String
    }

    var text: String
    var header: [String]
    var rows: [Row]

    /// The samples shown, from the header's `1 process, 2 threads, N samples (...)`.
    var samples: Int? {
        for line in header {
            let words = line.split(separator: " ")
            if let index = words.firstIndex(of: "samples"), index > 0, let count = Int(words[index - 1]) { return count }
        }
        return nil
    }

    /// Refreshes are separated by one blank line; inside one, a blank line comes before the column titles.
    static func parse(_ output: String) -> [TopRefresh] {
        output.components(separatedBy: "\n\npybpfprof top").enumerated().map { index, part in
            let text = index == 0 ? part : "pybpfprof top" + part
            let lines = text.components(separatedBy: "\n")
            let titles = lines.firstIndex { $0.hasPrefix("  OWN%  TOTAL%") } ?? lines.count
            let rows = lines.dropFirst(titles + 1).compactMap { line -> Row? in
                let fields = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
                guard fields.count == 5, let own = Double(fields[0]), let total = Double(fields[1]) else { return nil }
                return Row(own: own, total: total, function: fields[4].trimmingCharacters(in: .whitespaces))
            }
            return TopRefresh(text: text, header: Array(lines.prefix(titles)), rows: rows)
        }
    }
}
