import Exporters
import Foundation
import Glibc
import ProfileModel
import XCTest

/// `record --rotate SECONDS [--keep N]`: a recording written a period at a time, each period to files of its own named
/// after its start, the oldest deleted beyond --keep.
final class RotationTests: IntegrationTestCase {
    private static let second: UInt64 = 1_000_000_000

    /// A period every second, until stopped with SIGINT once 3 were written: every period's files are there, named after
    /// its start, and the periods follow each other without gap or overlap and hold every sample of the recording once.
    func testPeriodsFollowEachOtherAndHoldEverySample() throws {
        let workload = try Workload.load()
        let (target, recorder) = try startRecording(workload, [
            "--rotate", "1", "-o", scratchFile("run.speedscope.json"), "--save", scratchFile("run.pybpfprof"),
        ])
        try waitUntil("3 periods are written", recorder: recorder) { try rotations("run", ".pybpfprof").count >= 3 }
        recorder.send(SIGINT)
        let result = try recorder.wait(timeout: 60).requireSuccess()
        target.killIfRunning()

        let saved = try rotations("run", ".pybpfprof")
        let profiles = try rotations("run", ".speedscope.json")
        XCTAssertEqual(profiles.map(\.timestamp), saved.map(\.timestamp), "each period has its profile and its recording")
        let written = try periodsWritten(result)
        XCTAssertEqual(saved.count, written, result.report)
        XCTAssertGreaterThanOrEqual(written, 4, "3 periods before SIGINT, then the last one: \(result.report)")
        let last = try XCTUnwrap(saved.last)
        XCTAssertTrue(result.standardError.contains(
            "the last to \(scratchFile("run-\(last.timestamp).speedscope.json")) (speedscope), its recording saved to \(last.path)"),
            result.report)

        let recordings = try checkPeriods(saved, workload: workload, pid: target.pid)
        for (recording, profile) in zip(recordings, profiles) {
            let threads = try SpeedscopeFile.threads(at: profile.path)
            XCTAssertEqual(threads.reduce(0) { $0 + $1.stacks.count }, recording.samples.count,
                           "\(profile.path) and its saved recording should hold the same samples")
        }
        let total = recordings.reduce(0) { $0 + $1.samples.count }
        XCTAssertEqual(try summarySamples(result), total, "the summary counts every period's samples: \(result.report)")
        print("  \(written) periods, \(recordings.map { "\($0.samples.count) samples in \(Double($0.duration) / 1e9) s" })")
    }

    /// --keep 2 leaves the newest 2 files of each output and deletes the older ones as the recording goes, an earlier
    /// run's included, and never a file of another name, however close.
    func testKeepDeletesOnlyTheOldestRotatedFiles() throws {
        let workload = try Workload.load()
        let earlierRun = "w-20000101-000000.folded"
        let others = [
            "w.folded", "w-20000101-000000.folded.bak", "w-2000-01-01.folded", "wx-20000101-000000.folded",
            "w-20000101-000000.txt", ".w-20000101-000000.folded.3f2a.tmp", "w-20000101-000000.FOLDED", "notes.txt",
        ]
        for name in [earlierRun] + others { try Data(name.utf8).write(to: URL(fileURLWithPath: scratchFile(name))) }

        let (target, recorder) = try startRecording(workload, [
            "--rotate", "1", "--keep", "2", "-o", scratchFile("w.folded"), "--save", scratchFile("w.pybpfprof"),
        ])
        // Until 4 periods were seen, so that --keep had files of this run to delete as well.
        var seen = Set<String>()
        try waitUntil("4 periods are written", recorder: recorder) {
            seen.formUnion(try rotations("w", ".folded").map(\.timestamp).filter { $0 != "20000101-000000" })
            // A period's file is written before the oldest is deleted (never fewer than --keep), so a look in between
            // sees one more.
            XCTAssertLessThanOrEqual(try rotations("w", ".pybpfprof").count, 3, "more saved recordings than --keep 2 and the one being written")
            return seen.count >= 4
        }
        recorder.send(SIGINT)
        let result = try recorder.wait(timeout: 60).requireSuccess()
        target.killIfRunning()

        let folded = try rotations("w", ".folded")
        let saved = try rotations("w", ".pybpfprof")
        XCTAssertEqual(folded.count, 2, "\(folded.map(\.path))")
        XCTAssertEqual(saved.map(\.timestamp), folded.map(\.timestamp))
        XCTAssertGreaterThanOrEqual(try periodsWritten(result), 5, result.report)
        XCTAssertTrue(result.standardError.contains("kept the newest 2 of each"), result.report)
        XCTAssertTrue(result.standardError.contains("the last to \(try XCTUnwrap(folded.last).path) (folded; counts are samples of CPU time)"), result.report)
        XCTAssertTrue(folded.allSatisfy { $0.timestamp >= seen.max()! }, "older periods kept: \(folded.map(\.path))")
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratchFile(earlierRun)), "an earlier run's oldest file is kept")
        for name in others {
            XCTAssertEqual(FileManager.default.contents(atPath: scratchFile(name)), Data(name.utf8), "\(name) was changed or deleted")
        }

        let recordings = try checkPeriods(saved, workload: workload, pid: target.pid)
        // Each renders with `report`; the older is a whole period of the busy workload.
        for (index, recording) in saved.enumerated() {
            let rendered = scratchFile("report-\(index).folded")
            try runPyBPFProf(["report", recording.path, "-o", rendered]).requireSuccess()
            let names = Set(try FoldedFile.stacks(at: rendered).flatMap { $0.frames.filter { $0.file == workload.path }.map(\.name) })
            XCTAssertEqual(try FoldedFile.stacks(at: rendered).reduce(0) { $0 + $1.count }, recordings[index].samples.count)
            if index == 0 { XCTAssertTrue(names.contains("run_shape"), "\(recording.path) renders \(names.sorted())") }
        }
    }

    /// A period whose file cannot be written (a directory holds its name) is reported in one line and the recording goes
    /// on; its samples are written with the next period, which starts where it did. Twice here, so that the samples
    /// held back are carried over more than once.
    func testAFailedWriteIsRetriedWithTheNextPeriod() throws {
        let workload = try Workload.load()
        let (target, recorder) = try startRecording(workload, [
            "--rotate", "1", "-o", scratchFile("f.folded"), "--save", scratchFile("f.pybpfprof"),
        ])
        // The first period starts with sampling, which started before the line that says so.
        let now = Date().timeIntervalSince1970
        let blocked = Set((-5...2).map { scratchFile("f-\(RotatedFileName.timestamp(of: now + Double($0))).folded") })
        for path in blocked { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false) }
        try waitUntil("2 writes failed", recorder: recorder) {
            recorder.standardError.split(separator: "\n").filter { $0.hasPrefix("pybpfprof: error: cannot write") }.count >= 2
        }
        for path in blocked { try FileManager.default.removeItem(atPath: path) }
        try waitUntil("2 periods are written", recorder: recorder) { try rotations("f", ".pybpfprof").count >= 2 }
        recorder.send(SIGINT)
        let result = try recorder.wait(timeout: 60).requireSuccess()
        target.killIfRunning()

        let errors = result.standardErrorLines.filter { $0.hasPrefix("pybpfprof: error: ") }
        XCTAssertFalse(errors.isEmpty, result.report)
        for line in errors {
            XCTAssertTrue(line.contains("f-") && line.contains(".folded: Is a directory; its samples are kept for the next period's files"),
                          line)
        }
        XCTAssertTrue(result.standardError.contains("\(errors.count) write\(errors.count == 1 ? "" : "s") failed"), result.report)
        let saved = try rotations("f", ".pybpfprof")
        let recordings = try checkPeriods(saved, workload: workload, pid: target.pid)
        let first = try XCTUnwrap(saved.first)
        XCTAssertTrue(blocked.contains(scratchFile("f-\(first.timestamp).folded")), "the first period should keep its name")
        XCTAssertGreaterThanOrEqual(recordings[0].duration, 3 * Self.second, "the failed periods and the next, written together")
        XCTAssertEqual(try summarySamples(result), recordings.reduce(0) { $0 + $1.samples.count }, result.report)
        XCTAssertEqual(try rotations("f", ".folded").map(\.timestamp), saved.map(\.timestamp))
    }

    func testRotateAndKeepAreValidated() throws {
        let output = scratchFile("v.folded")
        for (arguments, keywords) in [
            (["--keep", "3"], ["--keep", "add --rotate SECONDS"]),
            (["--rotate", "0"], ["--rotate must be at least 1 second"]),
            (["--rotate", "0.5"], ["--rotate must be at least 1 second"]),
            (["--rotate", "nan"], ["--rotate must be at least 1 second"]),
            (["--rotate", "1e12"], ["--rotate must be at most"]),
            (["--rotate", "60", "--keep", "0"], ["--keep must be at least 1"]),
        ] {
            let result = try runPyBPFProf(["record", "--pid", "1", "-o", output] + arguments)
            assertCleanError(result, keywords: keywords)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: output))
    }

    // MARK: - Helpers

    /// The shape workload (until killed) and `pybpfprof record --pid` of it at 499 Hz with `options`, sampling.
    private func startRecording(_ workload: Workload, _ options: [String]) throws -> (target: RunningProcess, recorder: RunningProcess) {
        let target = try start(try PythonInterpreters.pyenv("3.12").command([workload.path, "shape"]))
        try target.waitForLine("ready", timeout: 30)
        let recorder = try start(try PyBPFProfBinary.path(), ["record", "--pid", "\(target.pid)", "--rate", "499"] + options)
        try recorder.waitForLine("pybpfprof: sampling 1 process", timeout: 60, onStandardError: true)
        return (target, recorder)
    }

    /// Checks `condition` every 10 ms until it holds; throws if the recorder exits first or after `timeout` seconds
    /// (times PYBPFPROF_TEST_SLOWDOWN).
    private func waitUntil(_ what: String, recorder: RunningProcess, timeout: TimeInterval = 60, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout * Slowdown.factor)
        while try !condition() {
            guard recorder.isRunning else { throw IntegrationError("the recording ended before \(what): \(recorder.standardError)") }
            guard Date() < deadline else { throw IntegrationError("not within \(timeout) s: \(what): \(recorder.standardError)") }
            usleep(10_000)
        }
    }

    /// The regular files of the scratch directory named `STEM-yyyyMMdd-HHmmssEXTENSION`, oldest first.
    private func rotations(_ stem: String, _ fileExtension: String) throws -> [(path: String, timestamp: String)] {
        let pattern = try NSRegularExpression(
            pattern: "^" + NSRegularExpression.escapedPattern(for: stem) + #"-(\d{8}-\d{6})"#
                + NSRegularExpression.escapedPattern(for: fileExtension) + "$")
        return try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted().compactMap { name in
            guard let match = pattern.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) else { return nil }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: scratchFile(name), isDirectory: &isDirectory), !isDirectory.boolValue else {
                return nil
            }
            return (scratchFile(name), String(name[Range(match.range(at: 1), in: name)!]))
        }
    }

    /// Reads the saved periods (oldest first) and checks that each is named after its start, has its samples within
    /// it, and ends where the next starts, the periods before the last (which ends with the recording) lasting whole
    /// seconds and holding the workload's samples.
    private func checkPeriods(
        _ saved: [(path: String, timestamp: String)], workload: Workload, pid: Int32,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> [Profile] {
        let recordings = try saved.map { try RecordingFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: $0.path)))) }
        for (index, (period, recording)) in zip(saved, recordings).enumerated() {
            XCTAssertEqual(RotatedFileName.timestamp(of: recording.startDate), period.timestamp, "\(period.path): named after its start",
                           file: file, line: line)
            XCTAssertTrue(recording.samples.allSatisfy { $0.time <= recording.duration },
                          "\(period.path): samples after its end \(recording.duration)", file: file, line: line)
            XCTAssertTrue(recording.processes.allSatisfy { $0.pid == pid }, "\(period.path): \(recording.processes)", file: file, line: line)
            if index + 1 < recordings.count {
                XCTAssertEqual(recording.startDate + Double(recording.duration) / 1e9, recordings[index + 1].startDate, accuracy: 1e-6,
                               "\(period.path) should end where the next period starts", file: file, line: line)
            }
            guard index + 1 < recordings.count else { continue }
            XCTAssertTrue(recording.duration > 0 && recording.duration % Self.second == 0,
                          "\(period.path) lasts \(recording.duration) ns, not whole periods", file: file, line: line)
            XCTAssertTrue(recording.frames.contains { $0.file == workload.path && $0.name == "run_shape" },
                          "\(period.path): no sample in the workload", file: file, line: line)
        }
        return recordings
    }

    /// N of the summary's `N samples from ...`.
    private func summarySamples(_ result: ProcessResult) throws -> Int {
        let line = try XCTUnwrap(result.standardErrorLines.first { $0.contains(" samples from ") }, result.report)
        return try XCTUnwrap(Int(line.prefix { $0.isNumber }), line)
    }

    /// N of `wrote N periods of ...`.
    private func periodsWritten(_ result: ProcessResult) throws -> Int {
        let line = try XCTUnwrap(result.standardErrorLines.first { $0.hasPrefix("wrote ") && $0.contains(" period") }, result.report)
        return try XCTUnwrap(Int(line.dropFirst("wrote ".count).prefix { $0.isNumber }), line)
    }
}
