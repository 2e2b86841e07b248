import ProfileModel
import XCTest

/// `Profile.renamingFrames`, which names frames late (debug files found when the profile is written): frames that
/// become equal become one frame, stacks that become equal one stack, and every sample stays, with its weight.
final class RenamedFramesTests: XCTestCase {
    func testFramesThatBecomeEqualAreMerged() {
        var profile = Profile(sampleRate: 100, startDate: 5)
        profile.mode = .wall
        let main = Frame(kind: .python, name: "main", file: "a.py", line: 3)
        let first = Frame(kind: .native, name: "lib.so+0x10", file: "lib.so", unnamed: UnnamedNativeCode(buildID: [1, 2], address: 0x10))
        let second = Frame(kind: .native, name: "lib.so+0x30", file: "lib.so", unnamed: UnnamedNativeCode(buildID: [1, 2], address: 0x30))
        let other = Frame(kind: .native, name: "other.so+0x99", file: "other.so", unnamed: UnnamedNativeCode(buildID: [9], address: 0x99))
        profile.append(time: 1, pid: 7, tid: 7, threadName: "main", stack: [main, first], weight: 10)
        profile.append(time: 2, pid: 7, tid: 8, threadName: "worker", stack: [main, second], weight: 20)
        profile.append(time: 3, pid: 7, tid: 7, threadName: "main", stack: [main, other], weight: 30)

        // Both addresses are in one function of lib.so; other.so's debug file was not found.
        let renamed = profile.renamingFrames { frame in
            guard frame.unnamed?.buildID == [1, 2] else { return nil }
            return Frame(kind: .native, name: "hot_loop", file: frame.file)
        }
        XCTAssertEqual(renamed.frames.count, 3)
        XCTAssertEqual(renamed.stacks.count, 2)
        XCTAssertEqual(renamed.samples.map(\.weight), [10, 20, 30])
        XCTAssertEqual(renamed.samples.map(\.tid), [7, 8, 7])
        XCTAssertEqual(renamed.samples[0].stack, renamed.samples[1].stack)
        let stacks = renamed.samples.map { renamed.stacks[Int($0.stack)].map { renamed.frames[Int($0)].name } }
        XCTAssertEqual(stacks, [["main", "hot_loop"], ["main", "hot_loop"], ["main", "other.so+0x99"]])
        XCTAssertEqual(renamed.threadNames, profile.threadNames)
        XCTAssertEqual(renamed.samples.map { renamed.threadNames[Int($0.threadName)] }, ["main", "worker", "main"])
        XCTAssertEqual(renamed.processes, profile.processes)
        XCTAssertEqual(renamed.mode, .wall)
        XCTAssertEqual(renamed.startDate, 5)
        XCTAssertEqual(renamed.frames.last?.unnamed, other.unnamed, "a frame left alone keeps where its code is")
    }
}
