@testable import Exporters
import Foundation
import ProfileModel
import XCTest

final class PprofExporterTests: XCTestCase {
    private func decode(_ profile: Profile) throws -> DecodedProfile {
        try DecodedProfile(PprofExporter().encode(profile))
    }

    // MARK: - The file

    func testFileIsTheGzipCompressedMessage() throws {
        let bytes = PprofExporter().render(Fixture.profile)
        XCTAssertEqual(Array(bytes.prefix(2)), [0x1F, 0x8B], "a gzip stream starts with its magic number")
        XCTAssertEqual(try PprofTestTools.gunzip(bytes), PprofExporter().encode(Fixture.profile))
    }

    func testHeader() throws {
        let decoded = try decode(Fixture.profile)
        XCTAssertEqual(decoded.stringTable.first, "")
        XCTAssertEqual(decoded.sampleTypes.map { "\($0.type)/\($0.unit)" }, ["samples/count", "cpu/nanoseconds"])
        XCTAssertEqual(decoded.periodType.map { "\($0.type)/\($0.unit)" }, "cpu/nanoseconds")
        XCTAssertEqual(decoded.period, Int64(Fixture.period))
        XCTAssertEqual(decoded.defaultSampleType, "cpu")
        XCTAssertEqual(decoded.timeNanos, 1_714_564_800_000_000_000)
        XCTAssertEqual(decoded.durationNanos, Int64(40 * Fixture.ms))
        // Two programs: the mapping has no file; it only says that every location is symbolized.
        XCTAssertEqual(Array(decoded.mappings.values), [
            .init(id: 1, fileName: "", hasFunctions: true, hasFileNames: true, hasLineNumbers: true),
        ])
        XCTAssertTrue(decoded.locations.values.allSatisfy { $0.mappingID == 1 })
        XCTAssertEqual(decoded.comments, [
            "pid 100: /usr/bin/python3 app.py (Python 3.12.1)",
            "pid 200: /usr/local/bin/python3.11 -m batch (Python 3.11.9)",
        ])
        XCTAssertEqual(Set(decoded.stringTable).count, decoded.stringTable.count, "each string is in the table once")
    }

    func testMappingIsNamedByTheProgramAllProcessesRun() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        XCTAssertEqual(PprofExporter.programName(profile), "")
        _ = profile.add(ProfiledProcess(pid: 1, commandLine: "/usr/bin/python3 a.py", pythonVersion: "3.11.2"))
        _ = profile.add(ProfiledProcess(pid: 2, commandLine: "python3 -m b", pythonVersion: "3.11.2"))
        XCTAssertEqual(PprofExporter.programName(profile), "python3")
        XCTAssertEqual(try decode(profile).mappings[1]?.fileName, "python3")
        _ = profile.add(ProfiledProcess(pid: 3, commandLine: "/opt/app/bin/python3.12 c.py", pythonVersion: "3.12.1"))
        XCTAssertEqual(PprofExporter.programName(profile), "")
    }

    func testStartTimeKeepsSubsecondPrecision() throws {
        let decoded = try decode(Profile(sampleRate: 997, startDate: 1_714_564_800.25))
        XCTAssertEqual(decoded.timeNanos, 1_714_564_800_250_000_000)
        XCTAssertEqual(decoded.period, 1_000_000_000 / 997)
    }

    // MARK: - Samples

    /// Samples with the same stack, process, thread and thread name are one pprof sample with values
    /// [n, n × period]; the same stack in another thread is another sample.
    func testSamplesAreAggregatedByStackAndThread() throws {
        let profile = Fixture.profile
        let decoded = try decode(profile)

        struct Key: Hashable {
            var pid: Int64
            var tid: Int64
            var threadName: String
            /// Root first, as the Profile stores stacks.
            var frames: [DecodedProfile.Frame]
        }
        var expected: [Key: Int64] = [:]
        for sample in profile.samples {
            let frames = profile.stacks[Int(sample.stack)].map { index -> DecodedProfile.Frame in
                let frame = profile.frames[Int(index)]
                return DecodedProfile.Frame(name: frame.name, fileName: PprofExporter.fileName(of: frame), line: Int64(frame.line))
            }
            let key = Key(pid: Int64(profile.process(of: sample).pid), tid: Int64(sample.tid),
                          threadName: profile.threadNames[Int(sample.threadName)], frames: frames)
            expected[key, default: 0] += 1
        }

        var exported: [Key: Int64] = [:]
        for sample in decoded.samples {
            let key = Key(
                pid: try XCTUnwrap(decoded.label("pid", of: sample)?.number),
                tid: try XCTUnwrap(decoded.label("thread_id", of: sample)?.number),
                threadName: try XCTUnwrap(decoded.label("thread_name", of: sample)?.string),
                frames: decoded.frames(of: sample).reversed())
            XCTAssertNil(exported[key], "one sample per stack and thread: \(key)")
            XCTAssertEqual(sample.values.count, 2)
            XCTAssertEqual(sample.values.last, sample.values.first! * Int64(Fixture.period), "cpu = samples × period")
            exported[key] = sample.values.first
        }
        XCTAssertEqual(exported, expected)
        XCTAssertEqual(decoded.samples.count, 7)
        XCTAssertEqual(decoded.samples.map { $0.values[0] }.reduce(0, +), Int64(profile.samples.count))
    }

    /// pprof wants the leaf first: location_id[0] is where the sample was taken.
    func testLocationsAreLeafFirst() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.append(time: 0, pid: 1, tid: 1, threadName: "MainThread", stack: [Fixture.appModule, Fixture.main, Fixture.serve])
        let decoded = try decode(profile)
        let sample = try XCTUnwrap(decoded.samples.first)
        XCTAssertEqual(decoded.frames(of: sample).map(\.name), ["Server.serve", "main", "<module>"])
    }

    func testLabelsNameProcessAndThread() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.append(time: 0, pid: 7, tid: 9, threadName: "Thread-1", stack: [Fixture.main])
        // Renamed: the later sample carries the new name, so it is another sample.
        profile.append(time: 10, pid: 7, tid: 9, threadName: "downloader", stack: [Fixture.main])
        // A thread without a name has no thread_name label (a label with string index 0 would read as numeric).
        profile.append(time: 20, pid: 7, tid: 10, threadName: "", stack: [Fixture.main])
        let decoded = try decode(profile)
        XCTAssertEqual(decoded.samples.count, 3)
        let labels = decoded.samples.map(\.labels)
        XCTAssertEqual(labels[0], [
            .init(key: "pid", string: nil, number: 7, numberUnit: ""),
            .init(key: "thread_id", string: nil, number: 9, numberUnit: ""),
            .init(key: "thread_name", string: "Thread-1", number: nil, numberUnit: ""),
        ])
        XCTAssertEqual(labels[1].last?.string, "downloader")
        XCTAssertEqual(labels[2].map(\.key), ["pid", "thread_id"])
        // No container label: the Profile does not know containers yet.
        XCTAssertFalse(decoded.samples.contains { $0.labels.contains { $0.key == "container" } })
    }

    // MARK: - Locations and functions

    /// A location per distinct frame (line included), a function per distinct (name, file name), and file
    /// names that say what a frame is.
    func testOneLocationPerFrameAndOneFunctionPerNameAndFile() throws {
        let spinLine3 = Frame(kind: .python, name: "spin", file: "app.py", line: 3)
        let spinLine4 = Frame(kind: .python, name: "spin", file: "app.py", line: 4)
        let spinElsewhere = Frame(kind: .python, name: "spin", file: "other.py", line: 3)
        let read = Frame(kind: .native, name: "read", file: "libc.so.6")
        let kernel = Frame(kind: .kernel, name: "vfs_read")
        let kernelModule = Frame(kind: .kernel, name: "ext4_file_read_iter", file: "ext4")
        var profile = Profile(sampleRate: 100, startDate: 0)
        for stack in [
            [Fixture.main, spinLine3], [Fixture.main, spinLine4], [Fixture.main, spinLine3],
            [spinElsewhere], [.truncated, Fixture.helper, read, kernel, kernelModule],
        ] {
            profile.append(time: 0, pid: 1, tid: 1, threadName: "MainThread", stack: stack)
        }
        let decoded = try decode(profile)

        XCTAssertEqual(decoded.locations.count, profile.frames.count, "one location per distinct frame")
        for location in decoded.locations.values {
            XCTAssertEqual(location.lines.count, 1)
            XCTAssertEqual(location.address, 0)
            XCTAssertEqual(location.mappingID, 1)
        }
        let functions = decoded.functions.values.map { "\($0.name) [\($0.fileName)]" }.sorted()
        XCTAssertEqual(functions, [
            "[truncated] []",
            "ext4_file_read_iter [ext4]",
            "helper []",
            "main [app.py]",
            "read [libc.so.6]",
            "spin [app.py]",
            "spin [other.py]",
            "vfs_read [[kernel]]",
        ].sorted())
        let spinFunction = try XCTUnwrap(decoded.functions.values.first { $0.name == "spin" && $0.fileName == "app.py" })
        let spinLines = decoded.locations.values.flatMap(\.lines).filter { $0.functionID == spinFunction.id }.map(\.line)
        XCTAssertEqual(spinLines.sorted(), [3, 4], "one function, a location per line")
        let lastSample = try XCTUnwrap(decoded.samples.last)
        XCTAssertEqual(decoded.frames(of: lastSample).map(\.description), [
            "ext4_file_read_iter (ext4:0)", "vfs_read ([kernel]:0)", "read (libc.so.6:0)", "helper (:0)", "[truncated] (:0)",
        ])
    }

    func testArbitraryNamesSurviveTheRoundTrip() throws {
        let names = ["quote \" ; semicolon", "controls \n\t\0 end", "unicode é 漢字 🐍", ""]
        var profile = Profile(sampleRate: 100, startDate: 0)
        for name in names {
            profile.append(time: 0, pid: 1, tid: 1, threadName: name, stack: [Frame(kind: .python, name: name, file: name, line: 1)])
        }
        let decoded = try decode(profile)
        XCTAssertEqual(Set(decoded.samples.flatMap { decoded.frames(of: $0).map(\.name) }), Set(names))
        XCTAssertEqual(Set(decoded.samples.compactMap { decoded.label("thread_name", of: $0)?.string }), Set(names.dropLast()))
    }

    func testEmptyProfileIsValid() throws {
        let decoded = try DecodedProfile(try PprofTestTools.gunzip(PprofExporter().render(Profile(sampleRate: 100, startDate: 0))))
        XCTAssertEqual(decoded.samples.count, 0)
        XCTAssertEqual(decoded.sampleTypes.count, 2)
        XCTAssertEqual(decoded.period, 10_000_000)
    }

    func testLargeRecordingAggregates() throws {
        var profile = Profile(sampleRate: 997, startDate: 0)
        let frames = (0..<200).map { profile.intern(Frame(kind: .python, name: "function\($0)", file: "module\($0 % 7).py", line: $0)) }
        let stacks = (0..<1000).map { stack in
            profile.intern(stack: (0..<(10 + stack % 30)).map { frames[(stack * 31 + $0 * 7) % frames.count] })
        }
        let threadName = profile.intern(threadName: "worker")
        let process = profile.add(ProfiledProcess(pid: 1, commandLine: "python3 big.py", pythonVersion: "3.12.1"))
        for index in 0..<200_000 {
            profile.samples.append(Sample(
                time: UInt64(index) * 1000, cpu: 0, process: process, tid: Int32(index % 8), threadName: threadName,
                stack: stacks[(index * 7919) % stacks.count], weight: profile.samplePeriod))
        }
        let bytes = PprofExporter().render(profile)
        let decoded = try DecodedProfile(try PprofTestTools.gunzip(bytes))
        XCTAssertEqual(decoded.samples.map { $0.values[0] }.reduce(0, +), 200_000)
        struct StackThread: Hashable {
            var stack: Int32
            var tid: Int32
        }
        let distinct = Set(profile.samples.map { StackThread(stack: $0.stack, tid: $0.tid) }).count
        XCTAssertEqual(decoded.samples.count, distinct, "one pprof sample per distinct (stack, thread)")
        print("  200000 samples, \(distinct) distinct (stack, thread): \(bytes.count) bytes compressed")
    }

    // MARK: - Modes

    /// The time sample type is named after what the mode measures; it is the default and the period type, and the
    /// period stays the sampling period.
    func testSampleTypesFollowTheMode() throws {
        let expected: [ProfileMode: String] = [.cpu: "cpu", .wall: "wall", .offcpu: "off-cpu", .gil: "gil"]
        for mode in ProfileMode.allCases {
            let decoded = try decode(IntervalFixture.profile(mode))
            let time = expected[mode]!
            XCTAssertEqual(decoded.sampleTypes.map { "\($0.type)/\($0.unit)" }, ["samples/count", "\(time)/nanoseconds"], "\(mode)")
            XCTAssertEqual(decoded.periodType.map { "\($0.type)/\($0.unit)" }, "\(time)/nanoseconds", "\(mode)")
            XCTAssertEqual(decoded.defaultSampleType, time, "\(mode)")
            XCTAssertEqual(decoded.period, Int64(Fixture.period), "\(mode)")
        }
    }

    /// A sample's time value is its samples' weights summed: the sleep's 1 s beside the 10 ms sample.
    func testTimeValuesAreTheWeights() throws {
        let decoded = try decode(IntervalFixture.profile(.wall))
        XCTAssertEqual(decoded.samples.map(\.values), [[1, 10_000_000], [1, 1_000_000_000]])
        XCTAssertEqual(decoded.frames(of: decoded.samples[1]).first?.name, "[off-CPU: sleeping]")
        // Two intervals of one stack and thread are one pprof sample.
        var twice = IntervalFixture.profile(.offcpu)
        twice.append(time: 2 * IntervalFixture.second, pid: 100, tid: 100, threadName: "MainThread",
                     stack: IntervalFixture.sleepingStack, weight: 37_000_000)
        XCTAssertEqual(try decode(twice).samples.map(\.values), [[1, 10_000_000], [2, 1_037_000_000]])
    }

    /// go tool pprof reads a wall profile as seconds of wall time: the sleep is 1 s of the 1.01 s, 99.01%.
    func testGoToolPprofReadsWallTimeInSeconds() throws {
        let go = try GoPprof()
        let path = go.directory.appendingPathComponent("wall.pb.gz")
        try Data(PprofExporter().render(IntervalFixture.profile(.wall))).write(to: path)
        let top = try go.run(["-top", path.path])
        print(top.text)
        XCTAssertEqual(top.standardError, "")
        XCTAssertTrue(top.text.contains("Type: wall"), top.text)
        XCTAssertTrue(top.text.contains("Total samples = 1.01s"), top.text)
        let rows = try PprofTopRow.parse(top.text)
        XCTAssertEqual(rows.first?.name, "[off-CPU: sleeping]")
        XCTAssertEqual(rows.first?.flat, 1)
        XCTAssertTrue(top.text.contains("1s 99.01% 99.01%"), top.text)
        XCTAssertEqual(try PprofTopRow.parse(try go.run(["-top", "-unit=ms", path.path]).text).map { "\($0.name) \($0.flat)" },
                       ["[off-CPU: sleeping] 1000.0", "Server.serve 10.0", "<module> 0.0", "main 0.0", "wait 0.0"])

        // The off-CPU type's name, dash and all, selects it.
        let offCPUPath = go.directory.appendingPathComponent("offcpu.pb.gz")
        try Data(PprofExporter().render(IntervalFixture.profile(.offcpu))).write(to: offCPUPath)
        let offCPU = try go.run(["-top", "-sample_index=off-cpu", offCPUPath.path])
        XCTAssertTrue(offCPU.text.contains("Type: off-cpu") && offCPU.text.contains("Total samples = 1.01s"), offCPU.text)
    }

    // MARK: - The wire format

    func testVarintsAndNegativeIntegers() throws {
        var writer = ProtobufWriter()
        writer.uint64(1, 300)
        writer.int64(2, -1)
        writer.uint64(3, 0)
        writer.packedUInt64s(4, [1, 128, UInt64.max])
        writer.string(5, "")
        XCTAssertEqual(writer.bytes, [
            0x08, 0xAC, 0x02,
            0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
            0x22, 13, 0x01, 0x80, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
            0x2A, 0x00,
        ])
        let fields = try WireReader.fields(writer.bytes)
        XCTAssertEqual(try fields.int64(2), -1)
        XCTAssertEqual(try fields.repeatedUInt64(4), [1, 128, UInt64.max])
    }

    // MARK: - go tool pprof

    /// pprof's own reader takes the file, and its top table has the exact flat and cumulative counts of a
    /// hand-made profile: flat counts only come out right when location_id[0] is the leaf.
    func testGoToolPprofTopHasExactCounts() throws {
        let spinLine3 = Frame(kind: .python, name: "spin", file: "app.py", line: 3)
        let spinLine4 = Frame(kind: .python, name: "spin", file: "app.py", line: 4)
        let helper = Frame(kind: .python, name: "helper", file: "lib.py", line: 10)
        let read = Frame(kind: .native, name: "read", file: "libc.so.6")
        let syscall = Frame(kind: .kernel, name: "do_syscall_64")
        var profile = Profile(sampleRate: 100, startDate: 1_714_564_800)
        func add(_ count: Int, tid: Int32, _ threadName: String, _ stack: [Frame]) {
            for index in 0..<count {
                profile.append(time: UInt64(index) * Fixture.period, pid: 100, tid: tid, threadName: threadName, stack: stack)
            }
        }
        add(5, tid: 100, "MainThread", [Fixture.appModule, Fixture.main, spinLine3])
        add(2, tid: 100, "MainThread", [Fixture.appModule, Fixture.main, spinLine4])
        add(3, tid: 101, "worker", [Fixture.appModule, Fixture.main, helper])
        add(2, tid: 100, "MainThread", [Fixture.appModule, Fixture.main, read, syscall])
        add(1, tid: 101, "worker", [.truncated, spinLine3])
        profile.duration = 200 * Fixture.ms

        let go = try GoPprof()
        let path = go.directory.appendingPathComponent("hand-made.pb.gz")
        try Data(PprofExporter().render(profile)).write(to: path)

        let top = try go.run(["-top", "-sample_index=samples", path.path])
        print(top.text)
        // Without a mapping that says the locations are symbolized, pprof would print "Main binary filename
        // not available." here.
        XCTAssertEqual(top.standardError, "", "go tool pprof should have nothing to complain about")
        let rows = try PprofTopRow.parse(top.text)
        let byName = Dictionary(uniqueKeysWithValues: rows.map { ($0.name, $0) })
        let expected: [(name: String, flat: Double, cum: Double)] = [
            ("spin", 8, 8), ("helper", 3, 3), ("do_syscall_64", 2, 2), ("read", 0, 2),
            ("main", 0, 12), ("<module>", 0, 12), ("[truncated]", 0, 1),
        ]
        XCTAssertEqual(Set(byName.keys), Set(expected.map(\.name)))
        for row in expected {
            XCTAssertEqual(byName[row.name]?.flat, row.flat, "flat of \(row.name)")
            XCTAssertEqual(byName[row.name]?.cum, row.cum, "cum of \(row.name)")
        }
        XCTAssertEqual(rows.first?.name, "spin")
        XCTAssertTrue(top.text.contains("of 13 total"), top.text)
        XCTAssertTrue(top.text.contains("Type: samples"), top.text)

        // The default sample type is cpu: the same table in time.
        let cpu = try go.run(["-top", "-unit=ms", path.path])
        XCTAssertTrue(cpu.text.contains("Type: cpu"), cpu.text)
        XCTAssertEqual(try PprofTopRow.parse(cpu.text).first.map { "\($0.name) \($0.flat)" }, "spin 80.0")

        // Labels: pid and thread_id as numbers, thread_name as a string.
        let tags = try go.run(["-tags", "-sample_index=samples", path.path])
        print(tags.text)
        for expectedLine in ["pid: Total 13", "thread_id: Total 13", "thread_name: Total 13", "MainThread", "worker"] {
            XCTAssertTrue(tags.text.contains(expectedLine), "-tags should show '\(expectedLine)':\n\(tags.text)")
        }
        let worker = try go.run(["-top", "-sample_index=samples", "-tagfocus=thread_name=worker", path.path])
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: try PprofTopRow.parse(worker.text).map { ($0.name, $0.flat) }),
                       ["helper": 3, "spin": 1, "main": 0, "<module>": 0, "[truncated]": 0])

        // -traces shows each sample leaf first, with file and line (-lines).
        let traces = try go.run(["-traces", "-lines", "-sample_index=samples", path.path])
        XCTAssertTrue(traces.text.contains("spin app.py:4\n") || traces.text.contains("spin app.py:4 "), traces.text)
        XCTAssertTrue(traces.text.contains("do_syscall_64 [kernel]"), traces.text)
    }
}

/// `go tool pprof` (Debian's golang-go), run in a scratch directory that also serves as its HOME and
/// GOCACHE: as root in a sandbox neither may be writable or even set.
final class GoPprof {
    let executable: String
    let directory: URL

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }

    init() throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates = path.split(separator: ":").map { "\($0)/go" } + ["/usr/bin/go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ProtobufDecodeError(description: "`go` is not installed (searched PATH and \(candidates.suffix(3).joined(separator: ", "))); "
                + "the pprof tests read the profiles with go tool pprof: apt-get install golang-go")
        }
        executable = found
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pybpfprof-pprof-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// `go tool pprof ARGUMENTS...`; throws with its stderr unless it succeeds.
    func run(_ arguments: [String]) throws -> PprofTestTools.Output {
        let output = try PprofTestTools.run(executable, ["tool", "pprof"] + arguments, in: directory, environment: [
            "HOME": directory.path, "GOCACHE": directory.appendingPathComponent("gocache").path,
            "PPROF_TMPDIR": directory.path, "GOTOOLCHAIN": "local", "GOFLAGS": "",
        ])
        guard output.status == 0 else {
            throw ProtobufDecodeError(description: "go tool pprof \(arguments.joined(separator: " ")) failed "
                + "(status \(output.status)):\n\(output.standardError)\n\(output.text)")
        }
        return output
    }
}

/// One row of `go tool pprof -top`: `flat flat% sum% cum cum% name`.
struct PprofTopRow {
    var flat: Double
    var cum: Double
    var name: String

    /// The rows under the `flat  flat%   sum%        cum   cum%` header. Values may carry a unit (`80ms`),
    /// which is dropped: callers choose it with -unit or -sample_index.
    static func parse(_ text: String) throws -> [PprofTopRow] {
        let lines = text.split(separator: "\n")
        guard let header = lines.firstIndex(where: { $0.split(separator: " ").prefix(2) == ["flat", "flat%"] }) else {
            throw ProtobufDecodeError(description: "no table in go tool pprof's output:\n\(text)")
        }
        return try lines[(header + 1)...].map { line in
            let words = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            func number(_ word: Substring) throws -> Double {
                let digits = word.prefix { $0.isNumber || $0 == "." || $0 == "-" }
                guard let value = Double(digits) else { throw ProtobufDecodeError(description: "not a number: \(word) in \(line)") }
                return value
            }
            guard words.count == 6 else { throw ProtobufDecodeError(description: "not a top row: \(line)") }
            return PprofTopRow(flat: try number(words[0]), cum: try number(words[3]),
                               name: words[5].trimmingCharacters(in: .whitespaces))
        }
    }
}
