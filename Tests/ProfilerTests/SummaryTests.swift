@testable import Profiler
import ProfileModel
import XCTest

final class SummaryTests: XCTestCase {
    private static let main = Frame(kind: .python, name: "main", file: "/app/main.py", line: 3)

    /// The "off-CPU:" line of a wall recording: intervals and seconds from the tally of every period (`--rotate` keeps
    /// only the last period's samples in the profile), split by why the thread was off its CPU.
    func testOffCPULineCountsTheWholeRecordingByReason() {
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.mode = .wall
        profile.append(time: 1, pid: 1, tid: 1, threadName: "", stack: [Self.main, .offCPUSleeping], weight: 2_000_000_000)
        profile.append(time: 2, pid: 1, tid: 2, threadName: "", stack: [Self.main, .waitingForGIL], weight: 500_000_000)
        profile.append(time: 3, pid: 1, tid: 1, threadName: "", stack: [Self.main])
        let firstPeriod = profile.samples
        // The second period: the same stacks again, and only these stay in the profile.
        profile.samples = []
        profile.append(time: 4, pid: 1, tid: 2, threadName: "", stack: [Self.main, .waitingForGIL], weight: 250_000_000)
        var statistics = RecordingStatistics()
        statistics.offCPUSampledOut = 7
        var summary = Summary(profile: profile, statistics: statistics)
        summary.tally = SampleTally(firstPeriod + profile.samples)
        XCTAssertEqual(summary.offCPULine, "off-CPU: 3 intervals, 2.75 s (sleeping 2.00 s, waiting for the GIL 0.75 s); "
            + "7 short ones sampled out (their time is in the weights of those kept); 0.000 s lost (ring buffer full)")
        XCTAssertTrue(summary.text.contains(summary.offCPULine))
    }

    /// A cpu recording has no such line.
    func testCPURecordingHasNoOffCPULine() {
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.append(time: 1, pid: 1, tid: 1, threadName: "", stack: [Self.main])
        XCTAssertFalse(Summary(profile: profile, statistics: RecordingStatistics()).text.contains("off-CPU:"))
    }
}
