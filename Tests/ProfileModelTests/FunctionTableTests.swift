import ProfileModel
import XCTest

final class FunctionTableTests: XCTestCase {
    private static let main = Frame(kind: .python, name: "main", file: "/app/main.py", line: 3)
    private static let walk = Frame(kind: .python, name: "walk", file: "/app/tree.py", line: 10)
    /// walk again, on another line: the same function.
    private static let walkRecursing = Frame(kind: .python, name: "walk", file: "/app/tree.py", line: 14)
    private static let visit = Frame(kind: .python, name: "visit", file: "/app/tree.py", line: 20)
    private static let read = Frame(kind: .kernel, name: "ksys_read")

    /// main → walk → visit → walk (recursion) 3 times, main → visit 2 times, main → walk → read 1 time.
    private static func recursiveProfile() -> Profile {
        var profile = Profile(sampleRate: 100, startDate: 0)
        for time in 0..<3 {
            profile.append(time: UInt64(time), pid: 1, tid: 1, threadName: "MainThread", stack: [main, walk, visit, walkRecursing])
        }
        for time in 3..<5 { profile.append(time: UInt64(time), pid: 1, tid: 1, threadName: "MainThread", stack: [main, visit]) }
        profile.append(time: 5, pid: 1, tid: 2, threadName: "reader", stack: [main, walk, read])
        return profile
    }

    func testOwnIsTheLeafAndTotalCountsARecursiveFunctionOncePerSample() {
        XCTAssertEqual(Self.recursiveProfile().functionCounts(), [
            FunctionCount(name: "walk (tree.py)", own: 3, total: 4),
            FunctionCount(name: "visit (tree.py)", own: 2, total: 5),
            FunctionCount(name: "ksys_read [kernel]", own: 1, total: 1),
            FunctionCount(name: "main (main.py)", own: 0, total: 6),
        ])
    }

    /// Equal own and total samples: by name.
    func testTiesAreOrderedByName() {
        var profile = Profile(sampleRate: 100, startDate: 0)
        for name in ["b", "c", "a"] {
            profile.append(time: 0, pid: 1, tid: 1, threadName: "", stack: [Frame(kind: .python, name: name)])
        }
        XCTAssertEqual(profile.functionCounts().map(\.name), ["a", "b", "c"])
    }

    /// A table that follows a growing profile counts as one made of the whole.
    func testTableAddedToPieceByPieceCountsAsTheWhole() {
        let profile = Self.recursiveProfile()
        var table = FunctionTable()
        table.add(frames: profile.frames.prefix(2), stacks: [])
        table.add(frames: profile.frames.dropFirst(2), stacks: profile.stacks.prefix(1))
        table.add(frames: [], stacks: profile.stacks.dropFirst())
        XCTAssertEqual(table.knownFrames, profile.frames.count)
        XCTAssertEqual(table.knownStacks, profile.stacks.count)

        let samplesPerStack = [2, 0, 7]
        XCTAssertEqual(table.count(samplesPerStack: samplesPerStack), FunctionTable(profile).count(samplesPerStack: samplesPerStack))
        XCTAssertEqual(table.count(samplesPerStack: samplesPerStack), [
            FunctionCount(name: "ksys_read [kernel]", own: 7, total: 7),
            FunctionCount(name: "walk (tree.py)", own: 2, total: 9),
            FunctionCount(name: "main (main.py)", own: 0, total: 9),
            FunctionCount(name: "visit (tree.py)", own: 0, total: 2),
        ])
    }

    /// Three 10 ms samples of `spin` and one 1 s sleep: by samples spin leads 3 to 1, by time the sleep has 1 s of the
    /// 1.03 s (97%), and `main` all of it.
    func testWeighOrdersFunctionsByTheirTime() {
        let spin = Frame(kind: .python, name: "spin", file: "/app/main.py", line: 9)
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.mode = .wall
        for time: UInt64 in 1...3 {
            profile.append(time: time * 10_000_000, pid: 1, tid: 1, threadName: "", stack: [Self.main, spin])
        }
        profile.append(time: 1_030_000_000, pid: 1, tid: 1, threadName: "", stack: [Self.main, .offCPUSleeping],
                       weight: 1_000_000_000)
        XCTAssertEqual(profile.functionCounts().map(\.name), ["spin (main.py)", "[off-CPU: sleeping]", "main (main.py)"])
        XCTAssertEqual(profile.functionWeights(), [
            FunctionWeight(name: "[off-CPU: sleeping]", own: 1_000_000_000, total: 1_000_000_000),
            FunctionWeight(name: "spin (main.py)", own: 30_000_000, total: 30_000_000),
            FunctionWeight(name: "main (main.py)", own: 0, total: 1_030_000_000),
        ])
        // The tally the end-of-run summary keeps weighs the same.
        let tally = SampleTally(profile.samples)
        XCTAssertEqual(tally.count, 4)
        XCTAssertEqual(tally.weight, 1_030_000_000)
        XCTAssertEqual(tally.samplesPerStack, [3, 1])
        XCTAssertEqual(tally.weightPerStack, [30_000_000, 1_000_000_000])
        XCTAssertEqual(FunctionTable(profile).weigh(weightPerStack: tally.weightPerStack), profile.functionWeights())
    }

    /// A recursive function's time counts once per sample in its total, as its samples do.
    func testWeighCountsARecursiveFunctionOncePerSample() {
        let profile = Self.recursiveProfile()
        let period = profile.samplePeriod
        XCTAssertEqual(profile.functionWeights(), profile.functionCounts().map { count in
            FunctionWeight(name: count.name, own: UInt64(count.own) * period, total: UInt64(count.total) * period)
        })
    }

    func testNoSamplesNoFunctions() {
        XCTAssertEqual(FunctionTable(Self.recursiveProfile()).count(samplesPerStack: [0, 0, 0]), [])
        XCTAssertEqual(Profile(sampleRate: 100, startDate: 0).functionCounts(), [])
    }
}
