import Exporters
import ProfileModel
import XCTest

final class FoldedExporterTests: XCTestCase {
    func testMergesThreadsAndCountsEachDistinctStack() {
        XCTAssertEqual(FoldedExporter().lines(Fixture.profile), [
            "<module> (/srv/batch.py:1);compute (/srv/batch.py) 1",
            "<module> (/srv/batch.py:1);compute (/srv/batch.py);helper 1",
            // The main thread's sample and the worker's with this stack make one line.
            "<module> (app.py:30);main (app.py:25) 2",
            "<module> (app.py:30);main (app.py:25);Server.serve (app.py:12) 2",
            "<module> (app.py:30);main (app.py:25);Server.serve (app.py:12);"
                + "_PyEval_EvalFrameDefault (libpython3.12.so.1.0);do_syscall_64_[k] 1",
            "[truncated];Worker.run (worker.py:8) 2",
        ])
    }

    func testPrefixesProcessAndThread() {
        XCTAssertEqual(FoldedExporter(prefixesThreads: true).lines(Fixture.profile), [
            "100;MainThread (100);<module> (app.py:30);main (app.py:25) 1",
            "100;MainThread (100);<module> (app.py:30);main (app.py:25);Server.serve (app.py:12) 2",
            "100;MainThread (100);<module> (app.py:30);main (app.py:25);Server.serve (app.py:12);"
                + "_PyEval_EvalFrameDefault (libpython3.12.so.1.0);do_syscall_64_[k] 1",
            "100;worker (101);<module> (app.py:30);main (app.py:25) 1",
            "100;worker (101);[truncated];Worker.run (worker.py:8) 2",
            "200;MainThread (200);<module> (/srv/batch.py:1);compute (/srv/batch.py) 1",
            "200;MainThread (200);<module> (/srv/batch.py:1);compute (/srv/batch.py);helper 1",
        ])
    }

    func testRenamedThreadIsPrefixedWithItsLastName() {
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.append(time: 0, pid: 1, tid: 2, threadName: "Thread-1", stack: [Fixture.main])
        profile.append(time: 10, pid: 1, tid: 2, threadName: "downloader", stack: [Fixture.main])
        XCTAssertEqual(FoldedExporter(prefixesThreads: true).lines(profile), ["1;downloader (2);main (app.py:25) 2"])
    }

    func testFileIsTheSortedLinesEachEndingInANewline() {
        let lines = FoldedExporter().lines(Fixture.profile)
        let file = String(decoding: FoldedExporter().render(Fixture.profile), as: UTF8.self)
        XCTAssertEqual(file, lines.map { $0 + "\n" }.joined())
        XCTAssertEqual(lines.map { Int($0.split(separator: " ").last!)! }.reduce(0, +), Fixture.profile.samples.count)
    }

    func testFramesAreRootFirst() {
        var profile = Profile(sampleRate: 100, startDate: 0)
        let stack = ["root", "middle", "leaf"].map { Frame(kind: .python, name: $0) }
        profile.append(time: 0, pid: 1, tid: 1, threadName: "MainThread", stack: stack)
        XCTAssertEqual(FoldedExporter().lines(profile), ["root;middle;leaf 1"])
    }

    func testSeparatorsInsideNamesAreReplaced() {
        var profile = Profile(sampleRate: 100, startDate: 0)
        let odd = Frame(kind: .python, name: "odd;name\nwith\ttab\r\0", file: "dir;1/f.py", line: 3)
        let marker = Frame(kind: .marker, name: "[a;b]")
        profile.append(time: 0, pid: 7, tid: 8, threadName: "bad;thread\n", stack: [marker, odd])

        XCTAssertEqual(FoldedExporter().lines(profile), ["[a,b];odd,name with tab   (dir,1/f.py:3) 1"])
        XCTAssertEqual(FoldedExporter(prefixesThreads: true).lines(profile), [
            "7;bad,thread  (8);[a,b];odd,name with tab   (dir,1/f.py:3) 1",
        ])
        let file = FoldedExporter(prefixesThreads: true).render(profile)
        XCTAssertEqual(file.filter { $0 == UInt8(ascii: "\n") }.count, 1)
    }

    func testStacksThatRenderAlikeShareALine() {
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.append(time: 0, pid: 1, tid: 1, threadName: "t", stack: [Frame(kind: .python, name: "a;b")])
        profile.append(time: 1, pid: 1, tid: 1, threadName: "t", stack: [Frame(kind: .python, name: "a,b")])
        XCTAssertEqual(FoldedExporter().lines(profile), ["a,b 2"])
    }

    func testFrameRendering() {
        XCTAssertEqual(FoldedExporter.render(Fixture.serve), "Server.serve (app.py:12)")
        XCTAssertEqual(FoldedExporter.render(Fixture.compute), "compute (/srv/batch.py)")
        XCTAssertEqual(FoldedExporter.render(Fixture.helper), "helper")
        XCTAssertEqual(FoldedExporter.render(Fixture.evalFrame), "_PyEval_EvalFrameDefault (libpython3.12.so.1.0)")
        XCTAssertEqual(FoldedExporter.render(Fixture.syscall), "do_syscall_64_[k]")
        XCTAssertEqual(FoldedExporter.render(.noPython), "[no Python frame]")
    }

    /// In wall and offcpu mode a line counts microseconds: the 1 s sleep outweighs the 10 ms sample 100 to 1, so a
    /// flame graph gives it 99% of the width. In cpu and gil mode every sample counts one, as before.
    func testIntervalModesCountMicrosecondsAndTheOthersSamples() {
        let running = "<module> (app.py:30);main (app.py:25);Server.serve (app.py:12)"
        let sleeping = "<module> (app.py:30);main (app.py:25);wait (/usr/lib/python3.12/threading.py:355);[off-CPU: sleeping]"
        for mode in [ProfileMode.wall, .offcpu] {
            XCTAssertEqual(FoldedExporter().lines(IntervalFixture.profile(mode)), [
                "\(running) 10000",
                "\(sleeping) 1000000",
            ], "\(mode)")
            XCTAssertEqual(FoldedExporter(prefixesThreads: true).lines(IntervalFixture.profile(mode)), [
                "100;MainThread (100);\(running) 10000",
                "100;MainThread (100);\(sleeping) 1000000",
            ], "\(mode)")
        }
        for mode in [ProfileMode.cpu, .gil] {
            XCTAssertEqual(FoldedExporter().lines(IntervalFixture.profile(mode)), ["\(running) 1", "\(sleeping) 1"], "\(mode)")
        }
    }

    /// A line's weights are summed before they are rounded to the microsecond, halves up.
    func testMicrosecondsAreRoundedOncePerLine() {
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.mode = .offcpu
        for (name, weights) in [("a", [1_400, 1_400]), ("b", [2_500]), ("c", [2_499])] as [(String, [UInt64])] {
            for weight in weights {
                profile.append(time: 0, pid: 1, tid: 1, threadName: "t", stack: [Frame(kind: .python, name: name)], weight: weight)
            }
        }
        XCTAssertEqual(FoldedExporter().lines(profile), ["a 3", "b 3", "c 2"])
    }

    func testUnitDescriptionNamesTheCountsAndTheTime() {
        XCTAssertEqual(ProfileMode.allCases.map(FoldedExporter.unitDescription), [
            "counts are samples of CPU time",
            "counts are microseconds of wall time",
            "counts are microseconds of off-CPU time",
            "counts are samples of GIL-holding time",
        ])
    }

    /// The line naming a written file says what a folded file's counts are; the other formats carry their unit.
    func testWrittenLineNamesTheFoldedUnit() {
        XCTAssertEqual(OutputFormat.folded.written(mode: .wall), "folded; counts are microseconds of wall time")
        XCTAssertEqual(OutputFormat.folded.written(mode: .cpu), "folded; counts are samples of CPU time")
        XCTAssertEqual(OutputFormat.pprof.written(mode: .wall), "pprof")
    }

    func testEmptyProfileIsAnEmptyFile() {
        XCTAssertEqual(FoldedExporter().render(Profile(sampleRate: 100, startDate: 0)), [])
    }
}
