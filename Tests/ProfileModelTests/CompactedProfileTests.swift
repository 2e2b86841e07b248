import ProfileModel
import XCTest

/// `Profile.compacted`: one period of a recording as a profile of its own (`record --rotate`).
final class CompactedProfileTests: XCTestCase {
    private static let main = Frame(kind: .python, name: "main", file: "/app/main.py", line: 3)
    private static let spin = Frame(kind: .python, name: "spin", file: "/app/main.py", line: 9)
    private static let idle = Frame(kind: .python, name: "idle", file: "/app/worker.py", line: 4)
    private static let read = Frame(kind: .kernel, name: "ksys_read")
    private static let first = ProfiledProcess(pid: 10, commandLine: "python3 a.py", pythonVersion: "3.12.1")
    private static let worker = ProfiledProcess(pid: 20, commandLine: "python3 w.py", pythonVersion: "3.11.4", containerID: "3f4e")
    /// Pid 10 again: the kernel reused it for another program.
    private static let second = ProfiledProcess(pid: 10, commandLine: "python3 b.py", pythonVersion: "3.12.1")
    private static let idler = ProfiledProcess(pid: 30, commandLine: "python3 idle.py", pythonVersion: "3.13.0")

    /// A recording of two periods of 1000 ns each, as the recorder's tables grow: its first period uses frames and
    /// processes the second does not, and the second's samples arrive out of time order.
    private static func recording() -> Profile {
        var profile = Profile(sampleRate: 100, startDate: 1_000)
        _ = profile.add(first)
        _ = profile.add(worker)
        profile.append(time: 100, pid: 10, tid: 11, threadName: "MainThread", stack: [main, spin])
        profile.append(time: 200, pid: 20, tid: 21, threadName: "worker", stack: [main, idle])
        _ = profile.add(second)
        _ = profile.add(idler)
        profile.append(time: 1_900, pid: 20, tid: 22, threadName: "late", stack: [main, idle])
        profile.append(time: 1_100, pid: 20, tid: 21, threadName: "worker", stack: [main, spin])
        profile.append(time: 1_050, pid: 10, tid: 12, threadName: "MainThread", stack: [main, spin, read])
        profile.append(time: 1_600, pid: 10, tid: 12, threadName: "MainThread", stack: [main, spin, read])
        return profile
    }

    func testKeepsOnlyWhatThePeriodsSamplesUseReindexed() {
        let recording = Self.recording()
        XCTAssertEqual(recording.frames, [Self.main, Self.spin, Self.idle, Self.read], "the recording's own tables")
        let period = recording.compacted(samples: recording.samples.filter { $0.time >= 1_000 }, startingAt: 1_000, duration: 1_000)

        XCTAssertEqual(period.sampleRate, 100)
        XCTAssertEqual(period.startDate, 1_000 + 1_000 / 1e9)
        XCTAssertEqual(period.duration, 1_000)
        // In the recording's order, not that of first use: pid 10's second program stays pid 10's second instance.
        XCTAssertEqual(period.processes, [Self.worker, Self.second])
        XCTAssertEqual(period.processLabels, ["20", "10"])
        // In the order the samples, in time order, first use them.
        XCTAssertEqual(period.frames, [Self.main, Self.spin, Self.read, Self.idle])
        XCTAssertEqual(period.stacks, [[0, 1, 2], [0, 1], [0, 3]])
        XCTAssertEqual(period.threadNames, ["MainThread", "worker", "late"])
        XCTAssertEqual(period.samples.map(\.time), [50, 100, 600, 900])
        XCTAssertEqual(period.samples.map(\.process), [1, 0, 1, 0])
        XCTAssertEqual(period.samples.map(\.tid), [12, 21, 12, 22])
        XCTAssertEqual(period.samples.map(\.threadName), [0, 1, 0, 2])
        XCTAssertEqual(period.samples.map(\.stack), [0, 1, 0, 2])
        XCTAssertEqual(period.functionCounts(), [
            FunctionCount(name: "ksys_read [kernel]", own: 2, total: 2),
            FunctionCount(name: "spin (main.py)", own: 1, total: 3),
            FunctionCount(name: "idle (worker.py)", own: 1, total: 1),
            FunctionCount(name: "main (main.py)", own: 0, total: 4),
        ])
    }

    func testFirstPeriod() {
        let recording = Self.recording()
        let period = recording.compacted(samples: recording.samples.filter { $0.time < 1_000 }, startingAt: 0, duration: 1_000)
        XCTAssertEqual(period.startDate, 1_000)
        XCTAssertEqual(period.processes, [Self.first, Self.worker])
        XCTAssertEqual(period.frames, [Self.main, Self.spin, Self.idle])
        XCTAssertEqual(period.stacks, [[0, 1], [0, 2]])
        XCTAssertEqual(period.threadNames, ["MainThread", "worker"])
        XCTAssertEqual(period.samples.map(\.time), [100, 200])
        XCTAssertEqual(period.samples.map(\.process), [0, 1])
    }

    /// A sample the recorder delivered after its period was cut counts at the start of the next; none lies past the end.
    func testTimesOutsideThePeriodArePlacedAtItsNearerEnd() {
        let recording = Self.recording()
        let period = recording.compacted(samples: recording.samples, startingAt: 1_000, duration: 700)
        XCTAssertEqual(period.samples.map(\.time), [0, 0, 50, 100, 600, 700])
        XCTAssertEqual(period.processes, [Self.first, Self.worker, Self.second])
    }

    func testAPeriodWithoutSamplesHasEmptyTables() {
        let period = Self.recording().compacted(samples: [], startingAt: 2_000, duration: 500)
        XCTAssertTrue(period.samples.isEmpty)
        XCTAssertTrue(period.frames.isEmpty)
        XCTAssertTrue(period.stacks.isEmpty)
        XCTAssertTrue(period.threadNames.isEmpty)
        XCTAssertTrue(period.processes.isEmpty)
        XCTAssertEqual(period.duration, 500)
        XCTAssertEqual(period.startDate, 1_000 + 2_000 / 1e9)
    }

    /// The tally of every period's samples, on the recording's tables, is the recording's.
    func testTallyAddsUpPeriods() {
        let recording = Self.recording()
        var tally = SampleTally(recording.samples.filter { $0.time < 1_000 })
        XCTAssertEqual(tally.samplesPerStack, [1, 1], "ends at the last stack counted")
        tally.add(recording.samples.filter { $0.time >= 1_000 })
        XCTAssertEqual(tally.count, 6)
        XCTAssertEqual(tally.samplesPerStack, [2, 2, 2])
        XCTAssertEqual(tally.threads, [
            ThreadKey(process: 0, tid: 11), ThreadKey(process: 1, tid: 21), ThreadKey(process: 1, tid: 22),
            ThreadKey(process: 2, tid: 12),
        ])
    }
}
