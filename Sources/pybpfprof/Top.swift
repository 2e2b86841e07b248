import ArgumentParser
import Dispatch
import Glibc
import ProfileModel
import Profiler

/// `pybpfprof top`: what `record` samples, shown as it arrives rather than written to a file at the end, for
/// finding where a running service spends its time without stopping it or waiting for a recording.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live view of where Python processes spend their time, refreshed every second.",
        discussion: """
            Functions by own time (the leaf frame) and total time (anywhere on the stack), over the last --window \
            seconds of samples (default 10; --cumulative: since the start). Percentages are of the time the samples shown \
            (after the --filter-* options) stand for; seconds are of CPU time (samples / rate), or with --mode wall and \
            offcpu of wall or off-CPU time.

            On a terminal the view takes the whole screen (the alternate screen, restored on exit). Keys: q quits; \
            Ctrl-C and SIGTERM quit too. When standard output is not a terminal each refresh is printed as plain \
            text, refreshes separated by a blank line. When the targets exit, the last refresh is printed and top ends.

            Examples:
              sudo pybpfprof top --pid 1234
              sudo pybpfprof top --all --filter-thread gunicorn
              sudo pybpfprof top --pid 1234 --iterations 5 > snapshots.txt
              sudo pybpfprof top -- python3 app.py --its-flags
            """
    )

    @OptionGroup var sampling: SamplingOptions

    @Option(name: .long, help: "Show only this process's samples (repeatable).")
    var filterPid: [Int32] = []

    @Option(name: .long, help: "Show only this thread's samples, by thread id (repeatable).")
    var filterTid: [Int32] = []

    @Option(name: .long, help: "Show only threads with this name, matched exactly (repeatable).")
    var filterThread: [String] = []

    @Option(name: .long, help: "Show the samples of the last this many seconds (default: 10).")
    var window: Double?

    @Flag(name: .long, help: "Show every sample since top started instead of the last --window seconds.")
    var cumulative = false

    @Option(name: .long, help: "Seconds between refreshes.")
    var interval = 1.0

    @Option(name: .long, help: "Refresh this many times, then exit.")
    var iterations: Int?

    @Option(name: .long, help: "Functions shown per refresh (default: as many as fit the terminal; 25 when standard output is not one).")
    var limit: Int?

    func validate() throws {
        if let window, !(window > 0) { throw ValidationError("--window must be a positive number of seconds") }
        if window != nil && cumulative { throw ValidationError("--window and --cumulative exclude each other") }
        guard interval >= 0.1 && interval <= 3600 else {
            throw ValidationError("--interval must be between 0.1 and 3600 seconds")
        }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be 1 or more") }
        if let limit, limit < 1 { throw ValidationError("--limit must be 1 or more") }
    }

    func run() throws {
        let target = try sampling.target()
        let rate = sampling.rate
        var options = RecordOptions(
            target: target, rate: rate, pythonOnly: sampling.pythonOnly, showInterpreterFrames: sampling.interpreterFrames)
        options.oldestKernelMode = sampling.oldestKernelMode
        options.mode = sampling.mode.profileMode
        options.debugDirectories = sampling.debugFiles.absolutePaths
        options.tableCacheDirectory = sampling.tableCache.resolvedDirectory
        if !sampling.pythonOnly { options.debuginfod = sampling.debugFiles.debuginfodClient() }
        options.namesFramesAtEnd = false
        // Loading BPF takes a moment and is where most setup errors show: before the screen is taken over.
        let recorder = try failing { try Recorder(options: options) }
        let liveWindow = LiveProfileWindow(
            rate: rate, window: cumulative ? nil : UInt64((window ?? 10) * 1e9),
            filter: SampleFilter(pids: Set(filterPid), tids: Set(filterTid), threadNames: Set(filterThread)))
        let view = TopView(target: target, mode: options.mode, limit: limit, filterDescription: filterDescription)
        let ending = LiveSession(recorder: recorder, window: liveWindow, target: target, interval: interval, iterations: iterations)
            .run(display: view)
        view.close()
        if case .failed(let error) = ending {
            try failing { throw error }
        }
        if case .targetsExited(let statistics) = ending {
            printToStandardError(sampling.command.isEmpty ? "pybpfprof: the profiled processes exited" : "pybpfprof: the command exited")
            if let status = statistics.commandExitStatus, status != 0 { throw ExitCode(status) }
        }
    }

    /// The filters as the header shows them, nil without any.
    private var filterDescription: String? {
        let parts = filterPid.map { "pid \($0)" } + filterTid.map { "tid \($0)" } + filterThread.map { "thread \"\($0)\"" }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }
}

// MARK: - The view

/// top's refreshes on standard output: on a terminal, drawn over each other on the alternate screen, with q read from
/// the keyboard; otherwise printed one after another. A closed terminal (SIGHUP) asks the session to stop, so that the
/// BPF program is detached in order; a resize (SIGWINCH) redraws at once. `close()` gives both signals back.
private final class TopView: LiveSessionDisplay {
    private let target: Target
    /// What the samples measure (`--mode`): the header says seconds of it.
    private let mode: ProfileMode
    private let limit: Int?
    private let filterDescription: String?
    private let screen: FullScreen?
    private let hangUp = StopFlag()
    private let resized = StopFlag()
    private let signalSources: [DispatchSourceSignal]
    private var lastLines: [String] = []
    private var printedPlainRefresh = false

    init(target: Target, mode: ProfileMode, limit: Int?, filterDescription: String?) {
        self.target = target
        self.mode = mode
        self.limit = limit
        self.filterDescription = filterDescription
        screen = StandardOutput.isTerminal ? FullScreen(readsKeys: isatty(STDIN_FILENO) == 1) : nil
        // SIGINT and SIGTERM are the recorder's (they end its run()).
        signalSources = [(SIGHUP, hangUp), (SIGWINCH, resized)].map { signalNumber, request in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { request.set() }
            source.resume()
            return source
        }
    }

    /// After the session: a hangup while the recorder wound down was ignored, from now on it ends top.
    func close() {
        signalSources.forEach { $0.cancel() }
        signal(SIGWINCH, SIG_DFL)
        signal(SIGHUP, SIG_DFL)
    }

    func begin() {
        screen?.enter()
        // A line of its own while there is nothing to show yet; on a terminal only.
        screen?.draw(["pybpfprof top: starting (locating the interpreters, loading unwind tables)"],
                     columns: StandardOutput.size?.columns ?? 80)
    }

    func stopRequested() -> Bool {
        screen?.quitKeyPressed() == true || hangUp.isSet
    }

    func refresh(_ window: LiveProfileWindow, elapsed: Double) {
        lastLines = lines(window, elapsed: elapsed, hint: screen?.readsKeys == true ? "q quits" : nil)
        showRefresh(lastLines)
    }

    func idle() {
        if resized.take(), !lastLines.isEmpty { showRefresh(lastLines) }
        if let screen { screen.waitForKey(milliseconds: 50) } else { usleep(50_000) }
    }

    func end() {
        screen?.leave()
    }

    /// The last refresh stays on the normal screen.
    func showLast(_ window: LiveProfileWindow, elapsed: Double) {
        printPlain(lines(window, elapsed: elapsed, hint: nil))
    }

    /// On a terminal: the lines cut to its size, drawn over the previous refresh. Otherwise: printed.
    private func showRefresh(_ lines: [String]) {
        if let screen {
            let size = StandardOutput.size ?? (columns: 80, rows: 24)
            screen.draw(fitted(lines, to: size, printed: false), columns: size.columns)
        } else {
            printPlain(lines)
        }
    }

    /// Appends a refresh as plain text, after a blank line when it follows another; cut to the terminal when standard
    /// output is one (the last refresh, left on the normal screen).
    private func printPlain(_ lines: [String]) {
        StandardOutput.write((printedPlainRefresh ? "\n" : "") + fitted(lines, to: StandardOutput.size, printed: true).joined(separator: "\n") + "\n")
        printedPlainRefresh = true
    }

    /// Cuts the function rows to --limit and to the screen's height, and every line to its width.
    private func fitted(_ lines: [String], to size: (columns: Int, rows: Int)?, printed: Bool) -> [String] {
        let header = Self.headerLineCount(lines)
        var rows = lines.count - header
        rows = min(rows, limit ?? (size == nil ? 25 : rows))
        // Printed on a terminal (the last refresh), two rows stay free for the line saying why top ended and the shell's
        // prompt, which would otherwise scroll the header away.
        if let size { rows = min(rows, max(0, size.rows - header - (printed ? 2 : 0))) }
        let kept = lines.prefix(header + rows)
        guard let columns = size?.columns else { return Array(kept) }
        return kept.map { $0.count > columns ? String($0.prefix(max(1, columns - 1))) + "…" : $0 }
    }

    /// The lines of a refresh before its function rows: everything up to the column titles.
    private static func headerLineCount(_ lines: [String]) -> Int {
        (lines.firstIndex { $0.hasPrefix(columnTitles) } ?? (lines.count - 1)) + 1
    }

    private static let columnTitles = "  OWN%  TOTAL%   OWN(s)  TOTAL(s)  FUNCTION"

    /// The header and every function's row, by own then total samples. `elapsed`: seconds since sampling started,
    /// which places the window.
    private func lines(_ window: LiveProfileWindow, elapsed: Double, hint: String?) -> [String] {
        let contents = window.contents(elapsed: elapsed)
        let rate = window.rate
        let span = window.window.map {
            elapsed * 1e9 > Double($0) ? "in the last \(String(cFormat: "%g", Double($0) / 1e9)) s" : "since the start"
        } ?? "since the start"
        // Seconds of what the samples measure: an off-CPU interval (--mode wall|offcpu) weighs its length.
        let shownSeconds = Double(contents.weight) / 1e9
        // What a narrow terminal cuts comes last on each line: the target's command line most of all.
        var lines = [
            "pybpfprof top   elapsed \(Self.duration(elapsed))   \(rate) Hz" + (hint.map { "   \($0)" } ?? ""),
            describe(target, processes: window.processes),
            "\(contents.processes) process\(contents.processes == 1 ? "" : "es"), \(contents.threads) thread\(contents.threads == 1 ? "" : "s"), "
                + "\(contents.samples) samples (\(String(cFormat: "%.2f", shownSeconds)) s of \(mode == .cpu ? "CPU" : mode.timeDescription)) \(span)",
        ]
        if let filterDescription { lines.append("filter: \(filterDescription): \(contents.samples) of \(contents.allSamples) samples") }
        lines.append("")
        lines.append(Self.columnTitles)
        if contents.samples == 0 {
            lines.append(contents.allSamples == 0 ? "  (no samples yet: the targets have not run on a CPU)" : "  (no sample matches the filters)")
            return lines
        }
        let shown = Double(max(contents.weight, 1))
        for function in contents.functionWeights {
            lines.append(String(cFormat: "%6.1f  %6.1f  %7.2f  %8.2f  ", 100 * Double(function.own) / shown,
                                100 * Double(function.total) / shown, Double(function.own) / 1e9,
                                Double(function.total) / 1e9) + function.name)
        }
        return lines
    }

    /// The header's line about the targets: which processes, with the command line of a single one.
    private func describe(_ target: Target, processes: [ProfiledProcess]) -> String {
        switch target {
        case .pids(let pids):
            if processes.count == 1, let process = processes.first {
                return "pid \(process.pid): \(process.commandLine)"
            }
            return "pids " + pids.map(String.init).joined(separator: ", ")
        case .all:
            return "all Python processes running at the start: \(processes.count)"
        case .command(let arguments):
            return (processes.first.map { "pid \($0.pid): " } ?? "") + arguments.joined(separator: " ")
        case .cgroup(let directory):
            return "Python processes of cgroup \(directory.hierarchyPath): \(processes.count)"
        }
    }

    private static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds)
        return whole < 60 ? "\(whole) s" : String(cFormat: "%ld:%02ld", whole / 60, whole % 60)
    }
}

// MARK: - The terminal

/// Standard output: whether it is a terminal, its size, and writes that never trap (a closed terminal or pipe
/// loses the text, not the process: the session still stops the recorder in order).
private enum StandardOutput {
    static var isTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

    /// Columns and rows; nil when standard output is not a terminal.
    static var size: (columns: Int, rows: Int)? {
        guard isTerminal else { return nil }
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0, size.ws_row > 0 else { return (80, 24) }
        return (Int(size.ws_col), Int(size.ws_row))
    }

    static func write(_ text: String) {
        writeAll(text, to: STDOUT_FILENO)
    }
}

/// The terminal taken over while top runs: the alternate screen with the cursor hidden, and the keyboard read key
/// by key without echo. `leave()` puts both back; it runs on every way out of the session (q, Ctrl-C, SIGTERM,
/// --iterations, the targets' exit, an error).
private final class FullScreen {
    let readsKeys: Bool
    private var savedInputMode: termios?
    private var entered = false
    private var keyboardOpen = true

    init(readsKeys: Bool) {
        self.readsKeys = readsKeys
    }

    func enter() {
        guard !entered else { return }
        entered = true
        if readsKeys {
            var mode = termios()
            if tcgetattr(STDIN_FILENO, &mode) == 0 {
                savedInputMode = mode
                // Keys arrive one at a time, unechoed; Ctrl-C still sends SIGINT (the recorder's stop), while
                // Ctrl-Z is switched off: a suspended top would leave the shell on the alternate screen.
                mode.c_lflag &= ~tcflag_t(ICANON | ECHO)
                withUnsafeMutableBytes(of: &mode.c_cc) { controls in
                    controls[Int(VMIN)] = 0
                    controls[Int(VTIME)] = 0
                    controls[Int(VSUSP)] = 0
                }
                tcsetattr(STDIN_FILENO, TCSANOW, &mode)
            }
        }
        StandardOutput.write("\u{1B}[?1049h\u{1B}[?25l\u{1B}[H\u{1B}[2J")
    }

    func leave() {
        guard entered else { return }
        entered = false
        StandardOutput.write("\u{1B}[?25h\u{1B}[?1049l")
        if var mode = savedInputMode {
            // TCSAFLUSH: keys typed meanwhile go with top rather than to the shell.
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &mode)
        }
    }

    /// Draws each line at its row, erasing what the previous refresh left to its right and below: no scrolling,
    /// no flicker of a full clear. A line as wide as the screen is not followed by an erase, which some terminals
    /// apply to its last column.
    func draw(_ lines: [String], columns: Int) {
        var text = ""
        for (row, line) in lines.enumerated() {
            text += "\u{1B}[\(row + 1);1H" + line + (line.count < columns ? "\u{1B}[K" : "")
        }
        text += "\u{1B}[\(lines.count + 1);1H\u{1B}[J"
        StandardOutput.write(text)
    }

    /// Waits up to `milliseconds` for a key, returning early when one arrives (it stays to be read).
    func waitForKey(milliseconds: Int32) {
        guard readsKeys && keyboardOpen else {
            usleep(UInt32(milliseconds) * 1000)
            return
        }
        var descriptor = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
        _ = poll(&descriptor, 1, milliseconds)
    }

    /// Reads the keys typed so far: whether q was among them.
    func quitKeyPressed() -> Bool {
        guard readsKeys && keyboardOpen else { return false }
        var descriptor = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, 0) > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(STDIN_FILENO, &buffer, buffer.count)
        guard count > 0 else {
            // End of input or a hung-up terminal: stop polling it, or every wait would return at once.
            keyboardOpen = false
            return false
        }
        return buffer.prefix(count).contains { $0 == UInt8(ascii: "q") || $0 == UInt8(ascii: "Q") }
    }
}
