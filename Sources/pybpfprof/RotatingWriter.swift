import Dispatch
import Exporters
import ProfileModel
import Profiler

/// `record --rotate`: writes the recording a period at a time while it runs, each period to files of its own
/// (`RotatedFileName`: the names asked for with the period's start inserted), and forgets the period's samples.
///
/// Periods end at multiples of the period's length from the start of sampling. A timer on the writer's own queue takes
/// each period's samples from the recorder shortly after its end (`settlingTime`), then compacts and renders them on that
/// queue, outside the recorder's lock; should writing fall behind, the periods that ended meanwhile are taken as one.
/// `finish` writes the last period, from the end of the one before to the end of the recording, with what
/// `Recorder.run()` returns: the recorder hands out no samples once run() has collected the rest, so none is written
/// twice or left out whichever of the timer and the end of the recording comes first.
///
/// A period whose files cannot all be written is reported in one line, and its samples are held back and written with
/// the next period, which then starts where the failed one did and so is written under its names: nothing recorded is
/// lost, and while writes keep failing (a full disk) the samples pile up in memory as they would without --rotate.
///
/// The recorder keeps its frames, stacks, thread names and processes for the whole recording (only samples are taken),
/// so its tables grow across periods as they would without --rotate; that keeps the indices of held-back samples valid
/// against any later copy of the profile.
final class RotatingWriter {
    /// A file written for each period.
    struct Output {
        var name: RotatedFileName
        var render: (Profile) -> [UInt8]
    }

    /// What was written, for the summary at the end.
    struct Outcome {
        var periods: Int
        /// The files of the last period, one per output, in their order.
        var lastPaths: [String]
        /// Writes that failed, whose samples went into the next period.
        var failedWrites: Int
        /// Every period's samples, on the recorder's tables.
        var tally: SampleTally
    }

    /// How long after a period's end its samples are taken. A sample reaches the recorder up to 50 ms after it was
    /// taken (the drain thread's poll interval, `Sampler.pollIntervalMilliseconds`), and its stack is decoded before it
    /// is added; one that comes later still goes into the next period, at its start (`Profile.compacted`).
    static let settlingTime: UInt64 = 250_000_000

    private let recorder: Recorder
    /// In nanoseconds.
    private let periodLength: UInt64
    private let keep: Int?
    private let outputs: [Output]
    /// Reports a failure (one line) without the program ending.
    private let reportError: (String) -> Void
    private let queue = DispatchQueue(label: "pybpfprof-rotation")
    private var timer: DispatchSourceTimer?

    // On `queue`:
    /// Recording time (nanoseconds since sampling started) the samples taken so far end at.
    private var takenUntil: UInt64 = 0
    /// Recording time the period being written starts at: `takenUntil` unless a write failed.
    private var periodStart: UInt64 = 0
    /// Samples of periods whose files could not be written, indexing the recorder's tables.
    private var heldBack: [Sample] = []
    private var outcome = Outcome(periods: 0, lastPaths: [], failedWrites: 0, tally: SampleTally())

    init(recorder: Recorder, periodSeconds: Double, keep: Int?, outputs: [Output], reportError: @escaping (String) -> Void) {
        self.recorder = recorder
        periodLength = UInt64(periodSeconds * 1e9)
        self.keep = keep
        self.outputs = outputs
        self.reportError = reportError
    }

    /// Once sampling has started (`Recorder.onStarted`): the first period starts with it.
    func start() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.setEventHandler { [weak self] in self?.writeEndedPeriods() }
        self.timer = timer
        schedule(afterPeriodEndingAt: periodLength)
        timer.resume()
    }

    /// After `Recorder.run()` returned: writes the last period, from the end of the one before to the end of the
    /// recording, with the samples of `recorded` (and any held back), and returns what was written. Throws if its files
    /// cannot be written.
    func finish(recorded: Profile) throws -> Outcome {
        try queue.sync {
            timer?.cancel()
            outcome.tally.add(recorded.samples)
            let end = max(recorded.duration, periodStart)
            try write(recorded.compacted(samples: heldBack + recorded.samples, startingAt: periodStart, duration: end - periodStart))
            return outcome
        }
    }

    /// After `Recorder.run()` failed: no more periods; those written stay.
    func stop() {
        queue.sync { timer?.cancel() }
    }

    private func schedule(afterPeriodEndingAt end: UInt64) {
        let due = end + Self.settlingTime
        let now = recorder.elapsed
        timer?.schedule(deadline: .now() + .nanoseconds(Int(due > now ? due - now : 0)), leeway: .milliseconds(10))
    }

    /// On the queue, at the timer: writes what was recorded up to the last period's end that is settled.
    private func writeEndedPeriods() {
        let now = recorder.elapsed
        let end = (now > Self.settlingTime ? now - Self.settlingTime : 0) / periodLength * periodLength
        if end > takenUntil {
            let period: Profile
            do {
                // The recorder's copy-on-write tables are copied should its drain thread intern something while this
                // copy lives: it lives only until compacted.
                guard let recording = recorder.takeSamples(recordedBefore: end, { $0 }) else {
                    return  // run() has collected the rest: finish() writes them.
                }
                outcome.tally.add(recording.samples)
                // Named once compacted: the held-back samples index the recorder's tables, which naming would merge.
                period = recorder.namingLateFrames(
                    recording.compacted(samples: heldBack + recording.samples, startingAt: periodStart, duration: end - periodStart))
                heldBack += recording.samples
            }
            takenUntil = end
            do {
                try write(period)
            } catch {
                outcome.failedWrites += 1
                reportError("pybpfprof: error: \(error); its samples are kept for the next period's files")
            }
        }
        schedule(afterPeriodEndingAt: takenUntil + periodLength)
    }

    /// On the queue: writes a period's files, then deletes the oldest rotated files beyond --keep. On success the next
    /// period starts where this one ends; on failure its samples stay held back.
    private func write(_ period: Profile) throws {
        let timestamp = RotatedFileName.timestamp(of: period.startDate)
        var paths: [String] = []
        for output in outputs {
            let path = output.name.path(timestamp: timestamp)
            try writeAtomically(output.render(period), to: path)
            paths.append(path)
        }
        heldBack = []
        periodStart += period.duration
        outcome.periods += 1
        outcome.lastPaths = paths
        guard let keep else { return }
        for (output, path) in zip(outputs, paths) {
            for failure in output.name.removeOldest(keeping: keep, sparing: path).failures {
                reportError("pybpfprof: error: \(failure)")
            }
        }
    }
}
