import Exporters
import Foundation
import XCTest

/// `record --save` keeps the whole recording; `report` renders it later, filtered, in any format. And the
/// terminal: a progress line while recording on a terminal, nothing of the kind when not on one.
final class SaveAndReportTests: IntegrationTestCase {
    private func recordSaved() throws -> (folded: String, saved: String, mainTid: Int32, workerTid: Int32) {
        let workload = try Workload.load()
        let folded = scratchFile("run.folded"), saved = scratchFile("run.pybpfprof")
        let result = try runPyBPFProf([
            "record", "--rate", "499", "-o", folded, "--save", saved, "--",
        ] + PythonInterpreters.pyenv("3.12").command([workload.path, "shape", "--seconds", "2"])).requireSuccess()
        return (folded, saved, try printedThreadID("main-tid", in: result.standardOutput),
                try printedThreadID("worker-tid", in: result.standardOutput))
    }

    /// The saved recording renders to exactly the file `record` wrote, and to every other format.
    func testReportRendersTheSameProfileAndEveryFormat() throws {
        let run = try recordSaved()
        let again = scratchFile("again.folded")
        let result = try runPyBPFProf(["report", run.saved, "-o", again]).requireSuccess()
        XCTAssertEqual(FileManager.default.contents(atPath: again), FileManager.default.contents(atPath: run.folded),
                       "report should reproduce record's folded output byte for byte")
        let samples = try FoldedFile.stacks(at: run.folded).reduce(0) { $0 + $1.count }
        XCTAssertTrue(result.standardError.contains("\(samples) of \(samples) samples"), result.report)
        for name in ["out.html", "out.speedscope.json", "out.firefox.json", "out.pb.gz"] {
            try runPyBPFProf(["report", run.saved, "-o", scratchFile(name)]).requireSuccess()
            let size = (try? FileManager.default.attributesOfItem(atPath: scratchFile(name))[.size] as? Int) ?? 0
            XCTAssertGreaterThan(size, 100, name)
        }
    }

    /// Filters by thread id, thread name and time keep exactly the matching samples.
    func testFilters() throws {
        let run = try recordSaved()
        let all = try FoldedFile.stacks(at: run.folded).reduce(0) { $0 + $1.count }

        let worker = scratchFile("worker.folded")
        try runPyBPFProf(["report", run.saved, "--tid", String(run.workerTid), "-o", worker]).requireSuccess()
        let workerStacks = try FoldedFile.stacks(at: worker)
        let workerSamples = workerStacks.reduce(0) { $0 + $1.count }
        XCTAssertGreaterThan(workerSamples, 20)
        XCTAssertLessThan(workerSamples, all)
        XCTAssertFalse(workerStacks.contains { $0.frames.contains { $0.name == "heavy" } }, "the main thread's function in the worker's samples")

        let main = scratchFile("main.folded")
        try runPyBPFProf(["report", run.saved, "--tid", String(run.mainTid), "-o", main]).requireSuccess()
        XCTAssertEqual(try FoldedFile.stacks(at: main).reduce(0) { $0 + $1.count } + workerSamples, all)

        // A second of the recording: exactly the samples whose time falls in it, as the saved recording has them
        // (how many that is depends on the CPU the machine gave the workload then, not on the filter).
        let slice = scratchFile("slice.folded")
        try runPyBPFProf(["report", run.saved, "--from", "0.5", "--to", "1.5", "-o", slice]).requireSuccess()
        let sliceSamples = try FoldedFile.stacks(at: slice).reduce(0) { $0 + $1.count }
        let recording = try RecordingFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: run.saved))))
        let inSecond = recording.samples.filter { $0.time >= 500_000_000 && $0.time < 1_500_000_000 }.count
        XCTAssertEqual(sliceSamples, inSecond, "--from 0.5 --to 1.5 keeps the samples from 0.5 s to 1.5 s")
        XCTAssertGreaterThan(sliceSamples, 0)
        XCTAssertLessThan(sliceSamples, all)

        let none = try runPyBPFProf(["report", run.saved, "--thread", "no-such-thread", "-o", scratchFile("none.folded")])
        XCTAssertEqual(none.status, 1, none.report)
        XCTAssertTrue(none.standardError.contains("matches the filters"), none.report)
    }

    func testBadRecordingFilesAreRefusedInOneLine() throws {
        let notRecording = scratchFile("not.pybpfprof")
        try "a;b 1\n".write(toFile: notRecording, atomically: true, encoding: .utf8)
        for (file, expected) in [(scratchFile("missing.pybpfprof"), "no such file"), (notRecording, "not a pybpfprof recording")] {
            let result = try runPyBPFProf(["report", file, "-o", scratchFile("x.folded")])
            XCTAssertEqual(result.status, 1, result.report)
            XCTAssertEqual(result.standardErrorLines.count, 1, result.report)
            XCTAssertTrue(result.standardError.contains(expected), result.report)
        }
    }

    /// On a terminal (`script` gives the recording one) a progress line counts seconds and samples; with stderr
    /// in a file there is none.
    func testProgressLineOnlyOnATerminal() throws {
        let workload = try Workload.load()
        let python = try PythonInterpreters.pyenv("3.12").path
        let binary = try PyBPFProfBinary.path()
        // A small terminal: the end-of-recording summary must fit it.
        let command = "stty rows 20 cols 72; \(binary) record --rate 99 -o \(scratchFile("tty.folded")) -- \(python) \(workload.path) shape --seconds 3"
        let typescript = scratchFile("typescript")
        let onTerminal = try run("/usr/bin/script", ["-q", "-e", "-c", command, typescript], timeout: 60)
        XCTAssertEqual(onTerminal.status, 0, onTerminal.report)
        let text = String(decoding: FileManager.default.contents(atPath: typescript) ?? Data(), as: UTF8.self)
        XCTAssertTrue(text.contains("\rrecording: 1 s,") || text.contains("\rrecording: 2 s,"), "no progress line in:\n\(text.suffix(2000))")
        XCTAssertTrue(text.contains(" samples, 1 process"), text.suffix(2000).description)
        // From the summary's first line to the "wrote" line: within 20 rows of 72 columns.
        let lines = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
        let first = try XCTUnwrap(lines.lastIndex { $0.contains(" samples from 1 process") }, text.suffix(2000).description)
        let last = try XCTUnwrap(lines.lastIndex { $0.hasPrefix("wrote ") }, text.suffix(2000).description)
        let summary = lines[first...last].map { $0.split(separator: "\r").last.map(String.init) ?? "" }
        XCTAssertLessThanOrEqual(summary.count, 20, summary.joined(separator: "\n"))
        XCTAssertTrue(summary.contains { $0.contains("own   total  function") }, summary.joined(separator: "\n"))
        for line in summary where line.contains("%  ") {
            XCTAssertLessThanOrEqual(line.count, 72, "function line wider than the terminal: \(line)")
        }

        let notOnTerminal = try runPyBPFProf([
            "record", "--rate", "99", "-o", scratchFile("file.folded"), "--", python, workload.path, "shape", "--seconds", "3",
        ]).requireSuccess()
        // The progress line starts a line ("recording: 2 s, ..."); the summary may say "code mapped while recording: ...".
        let progressLines = notOnTerminal.standardError.split(separator: "\n").filter { $0.hasPrefix("recording: ") }
        XCTAssertEqual(progressLines, [], notOnTerminal.report)
        XCTAssertFalse(notOnTerminal.standardError.contains("\r"), notOnTerminal.report)
    }
}
