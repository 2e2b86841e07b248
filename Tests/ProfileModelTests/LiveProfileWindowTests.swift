import ProfileModel
import XCTest

final class LiveProfileWindowTests: XCTestCase {
    private static let second: UInt64 = 1_000_000_000
    private static let main = Frame(kind: .python, name: "main", file: "app.py", line: 1)
    private static let spin = Frame(kind: .python, name: "spin", file: "app.py", line: 5)
    private static let work = Frame(kind: .python, name: "work", file: "worker.py", line: 9)

    /// A recording's profile as a recorder holds it: the window takes its samples a refresh at a time.
    private struct Recording {
        var profile = Profile(sampleRate: 100, startDate: 1)

        mutating func sample(at time: UInt64, pid: Int32 = 10, tid: Int32 = 10, threadName: String = "MainThread", _ stack: [Frame]) {
            profile.append(time: time, pid: pid, tid: tid, threadName: threadName, stack: stack)
        }

        /// What the session does at a refresh: the window copies what is new, the recorder forgets the samples.
        mutating func handOver(to window: LiveProfileWindow) {
            window.add(window.increment(of: profile))
            profile.samples.removeAll()
        }
    }

    func testWindowKeepsOnlyItsLastSecondsAndCumulativeKeepsEverything() {
        let windowed = LiveProfileWindow(rate: 100, window: 2 * Self.second, filter: SampleFilter())
        let cumulative = LiveProfileWindow(rate: 100, window: nil, filter: SampleFilter())
        var recording = Recording()
        for time in [0, 1, 2, 3] { recording.sample(at: UInt64(time) * Self.second + 1, [Self.main, Self.spin]) }
        var copy = recording
        recording.handOver(to: windowed)
        copy.handOver(to: cumulative)

        // At 4 s a 2 s window holds the samples of 2 s and 3 s.
        let recent = windowed.contents(elapsed: 4)
        XCTAssertEqual(recent.allSamples, 2)
        XCTAssertEqual(recent.functions, [
            FunctionCount(name: "spin (app.py)", own: 2, total: 2),
            FunctionCount(name: "main (app.py)", own: 0, total: 2),
        ])
        XCTAssertEqual(cumulative.contents(elapsed: 4).allSamples, 4)

        // Samples arriving later join those still in the window; the older ones are gone for good.
        recording.sample(at: 5 * Self.second, [Self.main])
        copy.sample(at: 5 * Self.second, [Self.main])
        recording.handOver(to: windowed)
        copy.handOver(to: cumulative)
        XCTAssertEqual(windowed.contents(elapsed: 5).functions, [
            FunctionCount(name: "main (app.py)", own: 1, total: 2),
            FunctionCount(name: "spin (app.py)", own: 1, total: 1),
        ])
        XCTAssertEqual(windowed.contents(elapsed: 1).allSamples, 2, "forgotten samples came back")
        XCTAssertEqual(cumulative.contents(elapsed: 5.5).functions, [
            FunctionCount(name: "spin (app.py)", own: 4, total: 4),
            FunctionCount(name: "main (app.py)", own: 1, total: 5),
        ])
    }

    /// Tables grow between refreshes: a stack first seen late is counted with the frames it shares with earlier ones.
    func testFramesAndStacksAddedBetweenRefreshes() {
        let window = LiveProfileWindow(rate: 100, window: nil, filter: SampleFilter())
        var recording = Recording()
        recording.sample(at: 0, [Self.main, Self.spin])
        recording.handOver(to: window)
        XCTAssertTrue(window.increment(of: recording.profile).frames.isEmpty, "frames copied twice")

        recording.sample(at: 1, pid: 20, tid: 21, threadName: "worker", [Self.main, Self.work])
        let increment = window.increment(of: recording.profile)
        XCTAssertEqual(increment.frames, [Self.work])
        XCTAssertEqual(increment.stacks.count, 1)
        XCTAssertEqual(increment.threadNames, ["worker"])
        recording.handOver(to: window)

        let contents = window.contents(elapsed: 1)
        XCTAssertEqual(window.processes.map(\.pid), [10, 20])
        XCTAssertEqual(contents.processes, 2)
        XCTAssertEqual(contents.threads, 2)
        XCTAssertEqual(contents.functions, [
            FunctionCount(name: "spin (app.py)", own: 1, total: 1),
            FunctionCount(name: "work (worker.py)", own: 1, total: 1),
            FunctionCount(name: "main (app.py)", own: 0, total: 2),
        ])
    }

    /// Samples weigh what they stand for: a 1 s sleep outweighs 10 ms on the CPU, in the window and since the start,
    /// and the filter keeps the weight of the samples it keeps.
    func testContentsWeighTheSamples() {
        var recording = Recording()
        recording.profile.mode = .wall
        recording.sample(at: Self.second, [Self.main, Self.spin])
        recording.profile.append(time: 2 * Self.second, pid: 10, tid: 11, threadName: "worker",
                                 stack: [Self.main, .offCPUSleeping], weight: Self.second)
        for window in [10 * Self.second, nil] {
            let live = LiveProfileWindow(rate: 100, window: window, filter: SampleFilter())
            var copy = recording
            copy.handOver(to: live)
            let contents = live.contents(elapsed: 3)
            XCTAssertEqual(contents.allWeight, 1_010_000_000)
            XCTAssertEqual(contents.weight, 1_010_000_000)
            XCTAssertEqual(contents.functionWeights, [
                FunctionWeight(name: "[off-CPU: sleeping]", own: Self.second, total: Self.second),
                FunctionWeight(name: "spin (app.py)", own: 10_000_000, total: 10_000_000),
                FunctionWeight(name: "main (app.py)", own: 0, total: 1_010_000_000),
            ])
        }
        let running = LiveProfileWindow(rate: 100, window: nil, filter: SampleFilter(tids: [10]))
        recording.handOver(to: running)
        let contents = running.contents(elapsed: 3)
        XCTAssertEqual(contents.allWeight, 1_010_000_000)
        XCTAssertEqual(contents.weight, 10_000_000)
        XCTAssertEqual(contents.functionWeights.map(\.name), ["spin (app.py)", "main (app.py)"])
    }

    /// The filter keeps a process's, a thread's or a thread name's samples; every sample still counts in `allSamples`.
    func testFilterRestrictsTheCountsButNotAllSamples() {
        var recording = Recording()
        recording.sample(at: 0, [Self.main, Self.spin])
        recording.sample(at: 1, [Self.main, Self.spin])
        recording.sample(at: 2, tid: 11, threadName: "worker", [Self.main, Self.work])
        recording.sample(at: 3, pid: 20, tid: 20, threadName: "MainThread", [Self.work])

        func contents(_ filter: SampleFilter) -> LiveProfileWindow.Contents {
            let window = LiveProfileWindow(rate: 100, window: 10 * Self.second, filter: filter)
            var copy = recording
            copy.handOver(to: window)
            return window.contents(elapsed: 1)
        }

        let worker = contents(SampleFilter(tids: [11]))
        XCTAssertEqual(worker.allSamples, 4)
        XCTAssertEqual(worker.samples, 1)
        XCTAssertEqual(worker.threads, 1)
        XCTAssertEqual(worker.functions.map(\.name), ["work (worker.py)", "main (app.py)"])

        let firstProcess = contents(SampleFilter(pids: [10]))
        XCTAssertEqual(firstProcess.samples, 3)
        XCTAssertEqual(firstProcess.processes, 1)
        XCTAssertEqual(firstProcess.threads, 2)

        let mainThreads = contents(SampleFilter(threadNames: ["MainThread"]))
        XCTAssertEqual(mainThreads.samples, 3)
        XCTAssertEqual(mainThreads.processes, 2)
        XCTAssertEqual(mainThreads.functions, [
            FunctionCount(name: "spin (app.py)", own: 2, total: 2),
            FunctionCount(name: "work (worker.py)", own: 1, total: 1),
            FunctionCount(name: "main (app.py)", own: 0, total: 2),
        ])

        let nobody = contents(SampleFilter(threadNames: ["no-such-thread"]))
        XCTAssertEqual(nobody.allSamples, 4)
        XCTAssertEqual(nobody.samples, 0)
        XCTAssertEqual(nobody.threads, 0)
        XCTAssertEqual(nobody.processes, 0)
        XCTAssertEqual(nobody.functions, [])
    }

    /// Two addresses of one stripped function are two unnamed frames (different FDEs would be different functions);
    /// once a debug file names them both, they are one function for every sample the window holds, those taken before
    /// included, and the window no longer lists them as unnamed.
    func testFramesNamedLaterCountForTheirFunction() {
        let code = { (address: UInt64) in UnnamedNativeCode(buildID: [0xab, 0xcd], address: address) }
        let first = Frame(kind: .native, name: "lib.so+0x1100", file: "lib.so", unnamed: code(0x1100))
        let second = Frame(kind: .native, name: "lib.so+0x1180", file: "lib.so", unnamed: code(0x1180))
        let window = LiveProfileWindow(rate: 100, window: nil, filter: SampleFilter())
        var recording = Recording()
        recording.sample(at: 1, [Self.main, first])
        recording.sample(at: 2, [Self.main, first])
        recording.sample(at: 3, [Self.main, second])
        recording.handOver(to: window)
        XCTAssertEqual(Set(window.unnamedFrames.values.map(\.name)), ["lib.so+0x1100", "lib.so+0x1180"])
        XCTAssertEqual(window.contents(elapsed: 1).functions.map(\.name), ["lib.so+0x1100 (lib.so)", "lib.so+0x1180 (lib.so)", "main (app.py)"])

        var renamed: [Int32: Frame] = [:]
        for (index, frame) in window.unnamedFrames {
            var named = frame
            named.name = "hot_loop"
            named.unnamed = nil
            renamed[index] = named
        }
        window.rename(renamed)
        XCTAssertEqual(window.unnamedFrames.count, 0)
        XCTAssertEqual(window.contents(elapsed: 1).functions, [
            FunctionCount(name: "hot_loop (lib.so)", own: 3, total: 3),
            FunctionCount(name: "main (app.py)", own: 0, total: 3),
        ])
        // A stack first seen after the renaming counts for the function too.
        recording.sample(at: 4, [Self.main, second, Self.spin])
        recording.handOver(to: window)
        XCTAssertEqual(window.contents(elapsed: 1).functions.first { $0.name == "hot_loop (lib.so)" }, FunctionCount(name: "hot_loop (lib.so)", own: 3, total: 4))
    }
}

extension LiveProfileWindow.Contents {
    /// The functions as sample counts: every sample of these tests weighs one period of 100 Hz (10 ms).
    fileprivate var functions: [FunctionCount] {
        functionWeights.map { FunctionCount(name: $0.name, own: Int($0.own / 10_000_000), total: Int($0.total / 10_000_000)) }
    }
}
