import ArgumentParser
import Foundation
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
            seconds of samples (default 10; --cumulative: since the start). Percentages are of the samples shown, \
            after the --filter-* options; seconds are of CPU (samples / rate).

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
        // Loading BPF takes a moment and is where most setup errors show: before the screen is taken over.
        let recorder = try failing { try Recorder(options: options) }
        let view = LiveProfileWindow(
            rate: rate, window: cumulative ? nil : UInt64((window ?? 10) * 1e9),
            filter: SampleFilter(pids: Set(filterPid), tids: Set(filterTid), threadNames: Set(filterThread)))
        let session = TopSession(
            recorder: recorder, view: view, target: target, interval: interval, iterations: iterations, limit: limit,
            filterDescription: filterDescription)
        let ending = session.run()
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

// MARK: - The session

/// How a top session ended.
private enum TopEnding {
    /// q, Ctrl-C, SIGTERM, SIGHUP or --iterations.
    case stopped
    /// Every target exited: their last refresh was printed.
    case targetsExited(RecordingStatistics)
    case failed(Error)
}

/// Runs the recorder on a background thread (its `run()` blocks until it stops) and, on the calling thread,
/// refreshes the view every `interval` seconds and reads keys, until a key, a signal, `iterations` or the
/// targets' exit ends it. Leaves the terminal as it found it.
private final class TopSession {
    private let recorder: Recorder
    private let view: LiveProfileWindow
    private let target: Target
    private let interval: Double
    private let iterations: Int?
    private let limit: Int?
    private let filterDescription: String?
    private let screen: FullScreen?
    private let hangUp = StopFlag()
    private let resized = StopFlag()
    private var signalSources: [DispatchSourceSignal] = []

    init(recorder: Recorder, view: LiveProfileWindow, target: Target, interval: Double, iterations: Int?, limit: Int?,
         filterDescription: String?) {
        self.recorder = recorder
        self.view = view
        self.target = target
        self.interval = interval
        self.iterations = iterations
        self.limit = limit
        self.filterDescription = filterDescription
        screen = StandardOutput.isTerminal ? FullScreen(readsKeys: isatty(STDIN_FILENO) == 1) : nil
    }

    func run() -> TopEnding {
        let recording = RecordingThread(recorder: recorder)
        // SIGINT and SIGTERM are the recorder's (they end run()); a closed terminal ends the session the same
        // way, so that the BPF program is detached in order; a resize redraws at once.
        signalSources = [(SIGHUP, hangUp), (SIGWINCH, resized)].map { signalNumber, request in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { request.set() }
            source.resume()
            return source
        }
        defer {
            signalSources.forEach { $0.cancel() }
            signal(SIGWINCH, SIG_DFL)
            signal(SIGHUP, SIG_DFL)
        }
        screen?.enter()
        var refreshes = 0
        var samplingStart: UInt64?
        var lastLines: [String] = []
        var stoppedBySession = false
        showStatus("pybpfprof top: starting (locating the interpreters, loading unwind tables)")
        while !recording.isFinished {
            if screen?.quitKeyPressed() == true || hangUp.isSet { stoppedBySession = true; break }
            let now = monotonicNanoseconds()
            if samplingStart == nil { samplingStart = view.samplingStart(now: now, recorder: recorder) }
            if let start = samplingStart, now >= start + UInt64(Double(refreshes + 1) * interval * 1e9) {
                view.update(from: recorder)
                lastLines = view.report(
                    elapsed: Double(now - start) / 1e9, target: target, filterDescription: filterDescription,
                    hint: screen?.readsKeys == true ? "q quits" : nil)
                showRefresh(lastLines)
                refreshes += 1
                // A late refresh (a stopped terminal, a long pause) skips the ones it missed rather than catching up.
                while now >= start + UInt64(Double(refreshes + 1) * interval * 1e9) { refreshes += 1 }
                if let iterations, refreshes >= iterations { stoppedBySession = true; break }
                continue
            }
            if resized.take(), !lastLines.isEmpty { showRefresh(lastLines) }
            if let screen { screen.waitForKey(milliseconds: 50) } else { usleep(50_000) }
        }
        // The terminal first: the shell's prompt should not wait for the recorder to wind down, and what a launched
        // command prints as it is interrupted belongs on the normal screen.
        screen?.leave()
        recorder.stop()
        if stoppedBySession { interruptLaunchedCommand() }
        switch recording.wait() {
        case .failure(let error):
            return .failed(error)
        case .success((let profile, let statistics)):
            // Ctrl-C and SIGTERM end the recorder's run() as the targets' exit does: only the latter leaves none alive.
            let targetsExited = statistics.commandExitStatus != nil
                || !profile.processes.contains { kill($0.pid, 0) == 0 || errno != ESRCH }
            guard !stoppedBySession && targetsExited else { return .stopped }
            // The last refresh, with everything up to the targets' exit, stays on the normal screen.
            view.addLastSamples(of: profile)
            printPlain(view.report(
                elapsed: Double(profile.duration) / 1e9, target: target, filterDescription: filterDescription, hint: nil))
            return .targetsExited(statistics)
        }
    }

    /// A line of its own while there is nothing to show yet; on a terminal only.
    private func showStatus(_ line: String) {
        screen?.draw([line], columns: StandardOutput.size?.columns ?? 80)
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
    private var printedPlainRefresh = false
    private func printPlain(_ lines: [String]) {
        StandardOutput.write((printedPlainRefresh ? "\n" : "") + fitted(lines, to: StandardOutput.size, printed: true).joined(separator: "\n") + "\n")
        printedPlainRefresh = true
    }

    /// Cuts the function rows to --limit and to the screen's height, and every line to its width.
    private func fitted(_ lines: [String], to size: (columns: Int, rows: Int)?, printed: Bool) -> [String] {
        let header = LiveProfileWindow.headerLineCount(lines)
        var rows = lines.count - header
        rows = min(rows, limit ?? (size == nil ? 25 : rows))
        // Printed on a terminal (the last refresh), two rows stay free for the line saying why top ended and the shell's
        // prompt, which would otherwise scroll the header away.
        if let size { rows = min(rows, max(0, size.rows - header - (printed ? 2 : 0))) }
        let kept = lines.prefix(header + rows)
        guard let columns = size?.columns else { return Array(kept) }
        return kept.map { $0.count > columns ? String($0.prefix(max(1, columns - 1))) + "…" : $0 }
    }

    /// q or --iterations ended top before a command it launched ended: the command gets the SIGINT a Ctrl-C would
    /// have given it, rather than run on unseen.
    private func interruptLaunchedCommand() {
        guard case .command = target else { return }
        for pid in recorder.withProfile({ $0.processes.map(\.pid) }) { kill(pid, SIGINT) }
    }
}

/// `Recorder.run()` on its own thread, with its result once it returns.
private final class RecordingThread: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<(Profile, RecordingStatistics), Error>?
    private let finished = DispatchSemaphore(value: 0)

    init(recorder: Recorder) {
        let thread = Thread { [self] in
            let outcome = Result { try recorder.run() }
            lock.lock()
            result = outcome
            lock.unlock()
            finished.signal()
        }
        thread.name = "pybpfprof-recorder"
        thread.start()
    }

    var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return result != nil
    }

    func wait() -> Result<(Profile, RecordingStatistics), Error> {
        finished.wait()
        lock.lock()
        defer { lock.unlock() }
        return result!
    }
}

private func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

// MARK: - The window of samples

/// The recorder's samples of the last `window` nanoseconds (or their counts since the start), taken from the
/// recorder a refresh at a time, and the table of functions they make. Frames, stacks and thread names only ever
/// grow in a Profile, so each is copied and labelled once; samples are taken (the recorder forgets them), so a
/// session of hours keeps no more than its window's samples.
private final class LiveProfileWindow {
    private let rate: Int
    /// Nanoseconds; nil: since the start.
    private let window: UInt64?
    private let filter: SampleFilter

    /// Function labels (`name (file)`), interned: own and total add up over a function's lines.
    private var labels: [String] = []
    private var labelIDs: [String: Int32] = [:]
    private var frameLabels: [Int32] = []
    /// Per profile stack: its leaf's label and every label on it once (a recursive function counts once per sample).
    private var stackLabels: [(leaf: Int32, distinct: [Int32])] = []
    private var threadNames: [String] = []
    private var processes: [ProfiledProcess] = []
    /// Windowed: the samples not older than the window. Cumulative: counts by (thread, stack) instead.
    private var recent: [Sample] = []
    private var counts: [SampleKey: Int] = [:]

    private struct SampleKey: Hashable {
        /// Index into the profile's processes.
        var process: Int32
        var tid: Int32
        var threadName: Int32
        var stack: Int32
    }

    init(rate: Int, window: UInt64?, filter: SampleFilter) {
        self.rate = rate
        self.window = window
        self.filter = filter
    }

    /// The monotonic time sampling started at, once the recorder has started it (registering the targets comes
    /// first and may take seconds); nil before.
    func samplingStart(now: UInt64, recorder: Recorder) -> UInt64? {
        let startDate = recorder.withProfile { $0.startDate }
        guard startDate > 0 else { return nil }
        let sinceStart = max(0, Date().timeIntervalSince1970 - startDate)
        return now - min(now, UInt64(sinceStart * 1e9))
    }

    /// Takes what the recorder added since the last call. Only copies under its lock: the drain thread waits on it.
    func update(from recorder: Recorder) {
        let (frames, stacks, names) = (frameLabels.count, stackLabels.count, threadNames.count)
        let delta = recorder.withProfileTakingSamples { profile in
            (frames: Array(profile.frames[min(frames, profile.frames.count)...]),
             stacks: Array(profile.stacks[min(stacks, profile.stacks.count)...]),
             threadNames: Array(profile.threadNames[min(names, profile.threadNames.count)...]),
             samples: profile.samples,
             processes: profile.processes)
        }
        addTables(frames: delta.frames, stacks: delta.stacks, threadNames: delta.threadNames)
        processes = delta.processes
        add(delta.samples)
    }

    /// Adds the recording's final profile: the samples taken after the last refresh.
    func addLastSamples(of profile: Profile) {
        addTables(frames: Array(profile.frames[min(frameLabels.count, profile.frames.count)...]),
                  stacks: Array(profile.stacks[min(stackLabels.count, profile.stacks.count)...]),
                  threadNames: Array(profile.threadNames[min(threadNames.count, profile.threadNames.count)...]))
        processes = profile.processes
        add(profile.samples)
    }

    private func addTables(frames: [Frame], stacks: [[Int32]], threadNames newNames: [String]) {
        for frame in frames {
            let label = frame.label(.function)
            if let known = labelIDs[label] {
                frameLabels.append(known)
            } else {
                let id = Int32(labels.count)
                labels.append(label)
                labelIDs[label] = id
                frameLabels.append(id)
            }
        }
        for stack in stacks {
            let stackLabelIDs = stack.map { frameLabels[Int($0)] }
            var seen = Set<Int32>()
            stackLabels.append((leaf: stackLabelIDs.last ?? -1, distinct: stackLabelIDs.filter { seen.insert($0).inserted }))
        }
        threadNames.append(contentsOf: newNames)
    }

    private func add(_ samples: [Sample]) {
        if window != nil {
            recent.append(contentsOf: samples)
        } else {
            for sample in samples {
                counts[SampleKey(process: sample.process, tid: sample.tid, threadName: sample.threadName, stack: sample.stack), default: 0] += 1
            }
        }
    }

    /// The lines before the function rows in `report`'s output: everything up to the column titles.
    static func headerLineCount(_ lines: [String]) -> Int {
        (lines.firstIndex { $0.hasPrefix(columnTitles) } ?? (lines.count - 1)) + 1
    }

    private static let columnTitles = "  OWN%  TOTAL%   OWN(s)  TOTAL(s)  FUNCTION"

    /// The header and every function's row, by own then total samples. `elapsed`: seconds since sampling
    /// started, which places the window.
    func report(elapsed: Double, target: Target, filterDescription: String?, hint: String?) -> [String] {
        let elapsedNanoseconds = UInt64(max(0, elapsed) * 1e9)
        var kept: [SampleKey: Int] = [:]
        if let window {
            let cutoff = elapsedNanoseconds > window ? elapsedNanoseconds - window : 0
            recent.removeAll { $0.time < cutoff }
            for sample in recent {
                kept[SampleKey(process: sample.process, tid: sample.tid, threadName: sample.threadName, stack: sample.stack), default: 0] += 1
            }
        } else {
            kept = counts
        }

        var all = 0, shown = 0
        var shownThreads = Set<ThreadKey>(), shownProcesses = Set<Int32>()
        var own = [Int](repeating: 0, count: labels.count), total = [Int](repeating: 0, count: labels.count)
        for (key, count) in kept {
            all += count
            guard matches(key) else { continue }
            shown += count
            shownThreads.insert(ThreadKey(process: key.process, tid: key.tid))
            shownProcesses.insert(key.process)
            let stack = stackLabels[Int(key.stack)]
            if stack.leaf >= 0 { own[Int(stack.leaf)] += count }
            for label in stack.distinct { total[Int(label)] += count }
        }

        let span = window.map { elapsed * 1e9 > Double($0) ? String(format: "in the last %g s", Double($0) / 1e9) : "since the start" }
            ?? "since the start"
        // What a narrow terminal cuts comes last on each line: the target's command line most of all.
        var lines = [
            "pybpfprof top   elapsed \(Self.duration(elapsed))   \(rate) Hz" + (hint.map { "   \($0)" } ?? ""),
            describe(target),
            String(format: "%d process%@, %d thread%@, %d samples (%.2f s of CPU) %@", shownProcesses.count,
                   shownProcesses.count == 1 ? "" : "es", shownThreads.count, shownThreads.count == 1 ? "" : "s", shown,
                   Double(shown) / Double(rate), span),
        ]
        if let filterDescription { lines.append("filter: \(filterDescription): \(shown) of \(all) samples") }
        lines.append("")
        lines.append(Self.columnTitles)
        if shown == 0 {
            lines.append(all == 0 ? "  (no samples yet: the targets have not run on a CPU)" : "  (no sample matches the filters)")
            return lines
        }
        let order = labels.indices.filter { total[$0] > 0 }
            .sorted { (own[$0], total[$0], labels[$1]) > (own[$1], total[$1], labels[$0]) }
        let seconds = Double(rate)
        for label in order {
            let ownPercent = 100 * Double(own[label]) / Double(shown), totalPercent = 100 * Double(total[label]) / Double(shown)
            lines.append(String(format: "%6.1f  %6.1f  %7.2f  %8.2f  ", ownPercent, totalPercent,
                                Double(own[label]) / seconds, Double(total[label]) / seconds) + labels[label])
        }
        return lines
    }

    private func matches(_ key: SampleKey) -> Bool {
        if !filter.pids.isEmpty && !filter.pids.contains(processes[Int(key.process)].pid) { return false }
        if !filter.tids.isEmpty && !filter.tids.contains(key.tid) { return false }
        if !filter.threadNames.isEmpty && !filter.threadNames.contains(threadNames[Int(key.threadName)]) { return false }
        return true
    }

    /// The header's line about the targets: which processes, with the command line of a single one.
    private func describe(_ target: Target) -> String {
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
        return whole < 60 ? "\(whole) s" : String(format: "%d:%02d", whole / 60, whole % 60)
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
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            bytes = bytes.dropFirst(written)
        }
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
