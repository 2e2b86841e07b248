import Exporters
import ProfileModel
import XCTest

/// `record --save` files: everything round-trips, and bad files are refused with a message saying what to do.
final class RecordingFileTests: XCTestCase {
    /// Sample times, CPUs, processes, threads and every frame come back; samples come back in time order.
    func testRoundTrip() throws {
        let profile = Fixture.profile
        let decoded = try RecordingFile.decode(RecordingFile.encode(profile))
        XCTAssertEqual(decoded.sampleRate, profile.sampleRate)
        XCTAssertEqual(decoded.startDate, profile.startDate)
        XCTAssertEqual(decoded.duration, profile.duration)
        XCTAssertEqual(decoded.processes, profile.processes)
        XCTAssertEqual(decoded.frames, profile.frames)
        XCTAssertEqual(decoded.stacks, profile.stacks)
        XCTAssertEqual(decoded.threadNames, profile.threadNames)
        func described(_ profile: Profile) -> [String] {
            profile.samples.sorted { ($0.time, $0.tid) < ($1.time, $1.tid) }.map { sample in
                let pid = profile.process(of: sample).pid
                return "\(sample.time) \(sample.cpu) \(pid) \(sample.tid) \(profile.threadNames[Int(sample.threadName)]) "
                    + profile.stacks[Int(sample.stack)].map { profile.frames[Int($0)].name }.joined(separator: ";")
            }
        }
        XCTAssertEqual(described(decoded), described(profile))
        XCTAssertEqual(decoded.samples.map(\.time), decoded.samples.map(\.time).sorted())
        // Rendering the decoded recording gives the same file as rendering the original.
        XCTAssertEqual(FoldedExporter().render(decoded), FoldedExporter().render(profile))
    }

    func testNewerVersionIsRefusedNamingTheFix() {
        var bytes = RecordingFile.encode(Fixture.profile)
        bytes[8] = UInt8(RecordingFile.currentVersion + 1)
        XCTAssertThrowsError(try RecordingFile.decode(bytes)) { error in
            XCTAssertTrue("\(error)".contains("newer pybpfprof") && "\(error)".contains("upgrade"), "\(error)")
        }
    }

    func testOlderVersionIsRefusedNamingTheFix() {
        var bytes = RecordingFile.encode(Fixture.profile)
        bytes[8] = UInt8(RecordingFile.oldestReadableVersion - 1)
        XCTAssertThrowsError(try RecordingFile.decode(bytes)) { error in
            XCTAssertTrue("\(error)".contains("older than this pybpfprof reads"), "\(error)")
        }
    }

    func testOtherFilesAreNotRecordings() {
        XCTAssertThrowsError(try RecordingFile.decode(Array("a;b;c 3\n".utf8))) { error in
            XCTAssertTrue("\(error)".contains("not a pybpfprof recording"), "\(error)")
        }
    }

    /// Every truncation and a sweep of single-byte corruptions either decode or throw: never a trap, never an
    /// index out of range later (every decoded index is checked).
    func testTruncatedAndCorruptedFilesThrowOrDecodeSafely() throws {
        let bytes = RecordingFile.encode(Fixture.profile)
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try RecordingFile.decode(Array(bytes[0..<length])), "truncated to \(length)")
        }
        var generator = SystemRandomNumberGenerator()
        for position in 12..<bytes.count {
            var corrupted = bytes
            corrupted[position] = UInt8.random(in: 0...255, using: &generator)
            guard let profile = try? RecordingFile.decode(corrupted) else { continue }
            for sample in profile.samples {
                XCTAssertLessThan(Int(sample.stack), profile.stacks.count)
                XCTAssertLessThan(Int(sample.threadName), profile.threadNames.count)
            }
            for stack in profile.stacks { XCTAssertTrue(stack.allSatisfy { Int($0) < profile.frames.count }) }
            _ = FoldedExporter().render(profile)
        }
    }

    func testFilterKeepsTheChosenSamplesOnly() {
        let profile = Fixture.profile
        let byProcess = profile.filtered(SampleFilter(pids: [200]))
        XCTAssertEqual(byProcess.samples.count, Fixture.batchStacks.count)
        XCTAssertEqual(byProcess.processes.map(\.pid), [200])
        XCTAssertTrue(byProcess.samples.allSatisfy { byProcess.process(of: $0).pid == 200 })
        // Frames no kept sample uses are gone.
        XCTAssertFalse(byProcess.frames.contains(Fixture.serve))

        let early = profile.filtered(SampleFilter(timeRange: 0..<(2 * Fixture.period)))
        XCTAssertTrue(early.samples.allSatisfy { $0.time < 2 * Fixture.period })
        XCTAssertEqual(early.samples.count, profile.samples.filter { $0.time < 2 * Fixture.period }.count)

        let name = profile.threadNames[Int(profile.samples[0].threadName)]
        let byName = profile.filtered(SampleFilter(threadNames: [name]))
        XCTAssertEqual(byName.samples.count, profile.samples.filter { profile.threadNames[Int($0.threadName)] == name }.count)
    }
}
