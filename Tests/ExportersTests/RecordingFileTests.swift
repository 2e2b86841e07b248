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

    /// A native frame no symbol named keeps its file's build ID and its address, which `report` names it by later.
    func testUnnamedNativeFramesKeepTheirBuildIDAndAddress() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        let buildID = (0..<20).map { UInt8($0) }
        let named = Frame(kind: .native, name: "deflate", file: "libz.so.1")
        let unnamed = Frame(kind: .native, name: "libz.so.1+0x4970", file: "libz.so.1",
                            unnamed: UnnamedNativeCode(buildID: buildID, address: 0x4970))
        profile.append(time: 0, pid: 1, tid: 1, threadName: "main", stack: [named, unnamed])
        let bytes = RecordingFile.encode(profile)
        let decoded = try RecordingFile.decode(bytes)
        XCTAssertEqual(decoded.frames, profile.frames)
        XCTAssertEqual(decoded.frames.last?.unnamed, UnnamedNativeCode(buildID: buildID, address: 0x4970))
        XCTAssertNil(decoded.frames.first?.unnamed)

        // The build ID's length is bounded: 65 bytes is corruption, named at its byte.
        let lengthPosition = try XCTUnwrap((0..<(bytes.count - 21)).first { bytes[$0] == 20 && Array(bytes[($0 + 1)...($0 + 20)]) == buildID })
        var corrupt = bytes
        corrupt[lengthPosition] = 65
        XCTAssertThrowsError(try RecordingFile.decode(corrupt)) { error in
            XCTAssertTrue("\(error)".contains("build ID length 65 is more than 64"), "\(error)")
        }
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

    /// The mode and every sample's weight come back, in every mode; a second encoding is the same file.
    func testRoundTripKeepsModeAndWeightsInEveryMode() throws {
        for mode in ProfileMode.allCases {
            let profile = IntervalFixture.profile(mode)
            let bytes = RecordingFile.encode(profile)
            let decoded = try RecordingFile.decode(bytes)
            XCTAssertEqual(decoded.mode, mode)
            XCTAssertEqual(decoded.samples.map(\.weight), [Fixture.period, IntervalFixture.second], "\(mode)")
            XCTAssertEqual(decoded.samples.map(\.time), profile.samples.map(\.time), "\(mode)")
            XCTAssertEqual(RecordingFile.encode(decoded), bytes, "\(mode)")
        }
        let cpu = try RecordingFile.decode(RecordingFile.encode(Fixture.profile))
        XCTAssertEqual(cpu.mode, .cpu)
        XCTAssertTrue(cpu.samples.allSatisfy { $0.weight == Fixture.period })
    }

    /// A sample weighing the period costs one byte more than in version 2; the 1 s interval costs five, its weight
    /// less the period (990 ms) zigzag-encoded in 31 bits.
    func testWeightCostsOneByteForASampleOfOnePeriod() {
        var single = IntervalFixture.profile()
        single.samples.removeLast()
        var twice = single
        twice.samples.append(single.samples[0])
        XCTAssertEqual(RecordingFile.encode(twice).count - RecordingFile.encode(single).count, 8,
                       "time delta 0, cpu, process, tid (2 bytes), thread name, stack, weight")
        let interval = IntervalFixture.profile()
        var onCPU = interval
        onCPU.samples[1].weight = Fixture.period
        XCTAssertEqual(RecordingFile.encode(interval).count - RecordingFile.encode(onCPU).count, 4)
    }

    /// Versions 1 and 2 had no mode and no weights: their samples are CPU samples of one period each.
    func testOlderVersionsReadAsCPUSamplesOfOnePeriod() throws {
        for version: UInt32 in [1, 2] {
            let profile = try RecordingFile.decode(Self.handWrittenRecording(version: version))
            XCTAssertEqual(profile.mode, .cpu, "version \(version)")
            XCTAssertEqual(profile.samples.map(\.weight), [10_000_000, 10_000_000], "version \(version)")
            XCTAssertEqual(profile.samples.map(\.time), [0, 10_000_000], "version \(version)")
            XCTAssertEqual(profile.processes, [ProfiledProcess(pid: 7, commandLine: "python3 a.py", pythonVersion: "3.12.1")])
            XCTAssertEqual(FoldedExporter().lines(profile), ["main (a.py:3) 2"], "version \(version)")
        }
    }

    func testUnknownModeIsRefused() {
        var bytes = RecordingFile.encode(IntervalFixture.profile(.wall))
        // Magic, version, rate (100: one byte), start date, duration (1.02e9: five bytes), then the mode.
        let modePosition = 8 + 4 + 1 + 8 + 5
        XCTAssertEqual(bytes[modePosition], 1, "wall")
        bytes[modePosition] = 4
        XCTAssertThrowsError(try RecordingFile.decode(bytes)) { error in
            XCTAssertEqual("\(error)", "the recording is corrupt at byte \(modePosition + 1): unknown mode 4")
        }
    }

    /// A weight beyond 64 signed bits, or weights that add up to more, would overflow the exporters' sums.
    func testWeightsOutOfRangeAreRefused() {
        var beyond = IntervalFixture.profile()
        beyond.samples[1].weight = UInt64(Int64.max) + 1
        XCTAssertThrowsError(try RecordingFile.decode(RecordingFile.encode(beyond))) { error in
            XCTAssertTrue("\(error)".hasSuffix("a sample weight is negative or beyond 64 bits"), "\(error)")
        }
        var tooMany = IntervalFixture.profile()
        tooMany.samples[1].weight = UInt64(Int64.max) - Fixture.period + 1
        XCTAssertThrowsError(try RecordingFile.decode(RecordingFile.encode(tooMany))) { error in
            XCTAssertTrue("\(error)".hasSuffix("sample weights add up to more than 9223372036854775807 ns"), "\(error)")
        }
        tooMany.samples[1].weight -= 1
        XCTAssertNoThrow(try RecordingFile.decode(RecordingFile.encode(tooMany)))
    }

    /// Every truncation of a weighted recording throws; every byte set to a few telling values either throws or
    /// decodes into a profile every format renders.
    func testCorruptedWeightedRecordingsThrowOrRenderInEveryFormat() {
        let bytes = RecordingFile.encode(IntervalFixture.profile())
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try RecordingFile.decode(Array(bytes[0..<length])), "truncated to \(length)")
        }
        for position in 12..<bytes.count {
            for value: UInt8 in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                var corrupted = bytes
                corrupted[position] = value
                guard let profile = try? RecordingFile.decode(corrupted) else { continue }
                for format in OutputFormat.allCases { _ = format.render(profile) }
            }
        }
    }

    /// A recording of format `version` 1 or 2, written byte by byte as those versions' writers did: one process
    /// (pid 7), one frame, one stack, and two samples 10 ms apart at 100 Hz.
    private static func handWrittenRecording(version: UInt32) -> [UInt8] {
        var bytes = RecordingFile.magic
        withUnsafeBytes(of: version.littleEndian) { bytes += $0 }
        func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                bytes.append(UInt8(value & 0x7F) | 0x80)
                value >>= 7
            }
            bytes.append(UInt8(value))
        }
        func string(_ text: String) {
            varint(UInt64(text.utf8.count))
            bytes += Array(text.utf8)
        }
        varint(100)  // sample rate
        withUnsafeBytes(of: (1_714_564_800.0).bitPattern.littleEndian) { bytes += $0 }
        varint(20_000_000)  // duration
        varint(1)  // processes
        varint(14)  // pid 7, zigzag
        string("python3 a.py")
        string("3.12.1")
        if version >= 2 { string("") }  // container ID
        varint(1)  // frames
        varint(0)  // python
        string("main")
        string("a.py")
        varint(3)
        varint(1)  // stacks
        varint(1)
        varint(0)
        varint(1)  // thread names
        string("MainThread")
        varint(2)  // samples
        for delta: UInt64 in [0, 10_000_000] {
            varint(delta)
            varint(0)  // cpu
            varint(version == 1 ? 14 : 0)  // version 1: the pid (zigzag); later: the process index
            varint(14)  // tid 7, zigzag
            varint(0)  // thread name
            varint(0)  // stack
        }
        return bytes
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
