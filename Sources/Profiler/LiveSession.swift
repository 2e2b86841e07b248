import Dispatch
import FoundationEssentials
import Glibc
import Native
import ProfileModel

/// How a live session ended.
public enum LiveSessionEnding {
    /// The display asked to stop, the refreshes asked for were shown, or Ctrl-C or SIGTERM stopped the recorder.
    case stopped
    /// Every target exited: their last refresh was shown.
    case targetsExited(RecordingStatistics)
    case failed(Error)
}

/// What shows a live session (`top`'s terminal view). The session calls it on the thread that runs the session.
public protocol LiveSessionDisplay: AnyObject {
    /// Before the first refresh, while the recorder registers the targets (which may take seconds).
    func begin()
    /// Whether the person watching asked to stop; asked between refreshes.
    func stopRequested() -> Bool
    /// A refresh, `elapsed` seconds after sampling started.
    func refresh(_ window: LiveProfileWindow, elapsed: Double)
    /// Waits a moment (about 50 ms) between refreshes; may return early on input.
    func idle()
    /// No more refreshes: called before the recorder winds down, which the display need not wait for.
    func end()
    /// After `end()`, when the targets exited: the last refresh, with every sample up to their exit.
    func showLast(_ window: LiveProfileWindow, elapsed: Double)
}

/// `top`'s session: runs the recorder on a background thread (its `run()` blocks until it stops) and, on the calling
/// thread, feeds its samples to the window and refreshes the display every `interval` seconds, until the display, a
/// signal, `iterations` or the targets' exit ends it.
public final class LiveSession {
    private let recorder: Recorder
    private let window: LiveProfileWindow
    private let target: Target
    private let interval: Double
    private let iterations: Int?

    public init(recorder: Recorder, window: LiveProfileWindow, target: Target, interval: Double, iterations: Int?) {
        self.recorder = recorder
        self.window = window
        self.target = target
        self.interval = interval
        self.iterations = iterations
    }

    public func run(display: LiveSessionDisplay) -> LiveSessionEnding {
        let recording: RecordingThread
        do {
            recording = try RecordingThread(recorder: recorder)
        } catch {
            return .failed(error)
        }
        display.begin()
        var refreshes = 0
        var samplingStart: UInt64?
        var stoppedBySession = false
        while !recording.isFinished {
            if display.stopRequested() { stoppedBySession = true; break }
            let now = Recorder.monotonicNow()
            if samplingStart == nil { samplingStart = self.samplingStart(now: now) }
            if let start = samplingStart, now >= start + UInt64(Double(refreshes + 1) * interval * 1e9) {
                // Only copies under the recorder's lock: the drain thread waits on it.
                window.add(recorder.withProfileTakingSamples { window.increment(of: $0) })
                window.rename(recorder.namesArrived(window.unnamedFrames))
                display.refresh(window, elapsed: Double(now - start) / 1e9)
                refreshes += 1
                // A late refresh (a stopped terminal, a long pause) skips the ones it missed rather than catching up.
                while now >= start + UInt64(Double(refreshes + 1) * interval * 1e9) { refreshes += 1 }
                if let iterations, refreshes >= iterations { stoppedBySession = true; break }
                continue
            }
            display.idle()
        }
        // The display first: the shell's prompt should not wait for the recorder to wind down, and what a launched
        // command prints as it is interrupted belongs on the normal screen.
        display.end()
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
            window.add(window.increment(of: profile))
            window.rename(recorder.namesArrived(window.unnamedFrames))
            display.showLast(window, elapsed: Double(profile.duration) / 1e9)
            return .targetsExited(statistics)
        }
    }

    /// The monotonic time sampling started at, once the recorder has started it (registering the targets comes
    /// first and may take seconds); nil before.
    private func samplingStart(now: UInt64) -> UInt64? {
        let startDate = recorder.withProfile { $0.startDate }
        guard startDate > 0 else { return nil }
        let sinceStart = max(0, Date().timeIntervalSince1970 - startDate)
        return now - min(now, UInt64(sinceStart * 1e9))
    }

    /// The display or --iterations ended the session before a command it launched ended: the command gets the SIGINT
    /// a Ctrl-C would have given it, rather than run on unseen.
    private func interruptLaunchedCommand() {
        guard case .command = target else { return }
        for pid in recorder.withProfile({ $0.processes.map(\.pid) }) { kill(pid, SIGINT) }
    }
}

/// `Recorder.run()` on its own thread, with its result once it returns.
private final class RecordingThread: @unchecked Sendable {
    private let lock = Lock()
    private var result: Result<(Profile, RecordingStatistics), Error>?
    private let finished = DispatchSemaphore(value: 0)

    init(recorder: Recorder) throws {
        // Not joined: released here, the thread is detached; `wait()` waits for its result instead.
        _ = try DedicatedThread(name: "pybpfprof-recorder") { [self] in
            let outcome = Result { try recorder.run() }
            lock.lock()
            result = outcome
            lock.unlock()
            finished.signal()
        }
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
