import Exporters
import Foundation
import ProfileModel
import TestSupport
import XCTest

final class FirefoxProfilerExporterTests: XCTestCase {
    private func render(_ profile: Profile = Fixture.profile) -> [UInt8] {
        FirefoxProfilerExporter().render(profile)
    }

    private func json(_ bytes: [UInt8]) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    /// A frame as the checker reads it back, for a profile frame.
    private func expected(_ frame: Frame) -> FirefoxProfileChecker.ReadFrame {
        let category = FirefoxProfilerExporter.categories[FirefoxProfilerExporter.categoryIndex(of: frame.kind)].name
        return FirefoxProfileChecker.ReadFrame(
            name: frame.name, file: frame.file, line: frame.line, category: category, functionLine: frame.line)
    }

    // MARK: - The profiler's integrity checks

    func testDocumentPassesTheProfilersIntegrityChecks() {
        XCTAssertEqual(FirefoxProfileChecker.problems(in: render()), [])
    }

    func testPinnedVersionsAreTheCheckersAndTheDocuments() throws {
        XCTAssertEqual(FirefoxProfilerExporter.processedProfileVersion, FirefoxProfileChecker.processedProfileVersion)
        XCTAssertEqual(FirefoxProfilerExporter.geckoProfileVersion, FirefoxProfileChecker.geckoProfileVersion)
        let meta = try XCTUnwrap(try json(render())["meta"] as? [String: Any])
        XCTAssertEqual(meta["preprocessedProfileVersion"] as? Int, 57)
        XCTAssertEqual(meta["version"] as? Int, 31)
    }

    func testMeta() throws {
        let profile = try FirefoxProfileChecker.read(render())
        // 2024-05-01T12:00:00Z in milliseconds since 1970, and the 10 ms period of 100 Hz.
        XCTAssertEqual(profile.startTime, 1_714_564_800_000)
        XCTAssertEqual(profile.interval, 10)
        XCTAssertEqual(profile.meta["product"] as? String, "pybpfprof")
        XCTAssertEqual(profile.meta["stackwalk"] as? Int, 1, "the fixture has native frames")
        XCTAssertEqual(profile.meta["symbolicated"] as? Bool, true)
        XCTAssertEqual(profile.meta["profilingStartTime"] as? Int, 0)
        XCTAssertEqual(profile.meta["profilingEndTime"] as? Int, 40, "the fixture's duration, 40 ms")
        XCTAssertEqual(profile.meta["endTime"] as? Int, 1_714_564_800_040)
        XCTAssertEqual(profile.categories.map(\.name), ["Python", "Native", "Kernel", "Other"])
        XCTAssertEqual(profile.categories.map(\.color), ["yellow", "blue", "orange", "grey"])
        XCTAssertEqual(Set(profile.categories.map(\.color)).count, 4, "each category has its own color")

        let extra = try XCTUnwrap(profile.meta["extra"] as? [[String: Any]])
        let entries = try XCTUnwrap(extra.first?["entries"] as? [[String: Any]])
        XCTAssertEqual(entries.map { $0["label"] as? String }, ["pid 100", "pid 200"])
        XCTAssertEqual(entries.map { $0["value"] as? String }, [
            "/usr/bin/python3 app.py (Python 3.12.1)", "/usr/local/bin/python3.11 -m batch (Python 3.11.9)",
        ])
    }

    func testOneStringTableOfDistinctStrings() throws {
        let document = try json(render())
        let strings = try XCTUnwrap((document["shared"] as? [String: Any])?["stringArray"] as? [String])
        XCTAssertEqual(Set(strings).count, strings.count, "a string appears once: \(strings)")
        for thread in try XCTUnwrap(document["threads"] as? [[String: Any]]) {
            XCTAssertNil(thread["stringArray"], "threads share the one string table")
        }
        for name in ["<module>", "app.py", "/srv/batch.py", "Worker.run", "[truncated]", "do_syscall_64"] {
            XCTAssertTrue(strings.contains(name), "\(name) should be in the string table")
        }
    }

    // MARK: - Threads, samples and frames

    /// In wall and offcpu mode a sample weighs its milliseconds ("tracing-ms"), so the profiler's call tree gives
    /// the 1 s sleep 1000 ms beside the sample's 10, and sits at their start, so the stack chart draws the sleep from
    /// 10 ms to 1010 ms; in cpu and gil mode every sample weighs one and sits at its time, as before.
    func testWeightsAreMillisecondsInIntervalModes() throws {
        for mode in ProfileMode.allCases {
            let bytes = render(IntervalFixture.profile(mode))
            XCTAssertEqual(FirefoxProfileChecker.problems(in: bytes), [], "\(mode)")
            let threads = try XCTUnwrap(try json(bytes)["threads"] as? [[String: Any]])
            let samples = try XCTUnwrap(threads.first?["samples"] as? [String: Any])
            let meta = try XCTUnwrap(try json(bytes)["meta"] as? [String: Any])
            if mode.hasIntervals {
                XCTAssertEqual(samples["weightType"] as? String, "tracing-ms", "\(mode)")
                XCTAssertEqual(samples["weight"] as? [Double], [10, 1000], "\(mode)")
                XCTAssertEqual(samples["time"] as? [Double], [0, 10], "\(mode)")
                XCTAssertEqual(threads.first?["registerTime"] as? Double, 0, "\(mode)")
            } else {
                XCTAssertEqual(samples["weightType"] as? String, "samples", "\(mode)")
                XCTAssertTrue(samples["weight"] is NSNull, "\(mode)")
                XCTAssertEqual(samples["time"] as? [Double], [10, 1010], "\(mode)")
                XCTAssertEqual(threads.first?["registerTime"] as? Double, 10, "\(mode)")
            }
            XCTAssertEqual(meta["profilingEndTime"] as? Double, 1020, "\(mode): the recording's duration")
            // Without a duration the profile ends with its last sample: the sleep's end, or a period after its time.
            var undated = IntervalFixture.profile(mode)
            undated.duration = 0
            let undatedMeta = try XCTUnwrap(try json(render(undated))["meta"] as? [String: Any])
            XCTAssertEqual(undatedMeta["profilingEndTime"] as? Double, mode.hasIntervals ? 1010 : 1020, "\(mode)")
        }
        // Weights keep the nanosecond: 37 ms and 1 ns.
        var profile = IntervalFixture.profile(.offcpu)
        profile.samples[1].weight = 37_000_001
        let text = String(decoding: render(profile), as: UTF8.self)
        XCTAssertTrue(text.contains("\"weight\":[10,37.000001],\"weightType\":\"tracing-ms\""), text)
    }

    func testOneThreadPerProcessAndThreadGroupedUnderItsProcess() throws {
        let threads = try FirefoxProfileChecker.read(render()).threads
        XCTAssertEqual(threads.map(\.pid), ["100", "100", "200"])
        XCTAssertEqual(threads.map(\.tid), [100, 101, 200])
        XCTAssertEqual(threads.map(\.name), ["MainThread", "worker", "MainThread"])
        XCTAssertEqual(threads.map(\.isMainThread), [true, false, true])
        XCTAssertEqual(threads.map(\.processName), [
            "/usr/bin/python3 app.py", "/usr/bin/python3 app.py", "/usr/local/bin/python3.11 -m batch",
        ])

        // The fields the profiler groups a process's threads by agree within a process.
        let document = try json(render())
        let rawThreads = try XCTUnwrap(document["threads"] as? [[String: Any]])
        XCTAssertEqual(rawThreads.map { $0["processStartupTime"] as? Int }, [0, 0, 1])
        XCTAssertEqual(rawThreads.map { $0["registerTime"] as? Int }, [0, 5, 1])
        XCTAssertEqual(rawThreads.map { $0["processType"] as? String }, ["default", "default", "default"])
    }

    func testEverySampleAtItsOwnTimeInTimeOrder() throws {
        let threads = try FirefoxProfileChecker.read(render()).threads
        XCTAssertEqual(threads.map(\.times), [[0, 10, 20, 30], [5, 15, 25], [1, 11]])

        // Times keep every nanosecond: 1.234567 ms after the start.
        var profile = Profile(sampleRate: 997, startDate: 1_714_564_800.123456)
        profile.append(time: 1_234_567, pid: 7, tid: 7, threadName: "MainThread", stack: [Fixture.main])
        profile.append(time: 3_000_001, pid: 7, tid: 7, threadName: "MainThread", stack: [Fixture.main])
        let read = try FirefoxProfileChecker.read(render(profile))
        XCTAssertEqual(read.threads[0].times, [1.234567, 3.000001])
        XCTAssertEqual(read.startTime, 1_714_564_800_123.456)
        XCTAssertEqual(read.interval, 1.003009, "1/997 s is 1003009 ns")
        let text = String(decoding: render(profile), as: UTF8.self)
        XCTAssertTrue(text.contains("\"time\":[1.234567,3.000001]"), "times written exactly")
    }

    /// The exported stacks, read back by walking prefixes, are the profile's stacks frame by frame, and
    /// each thread has its own samples.
    func testStacksReadBackAreTheProfilesStacks() throws {
        let read = try FirefoxProfileChecker.read(render())
        let expectations = [Fixture.mainThreadStacks, Fixture.workerStacks, Fixture.batchStacks]
        XCTAssertEqual(read.threads.count, expectations.count)
        for (thread, stacks) in zip(read.threads, expectations) {
            XCTAssertEqual(thread.stacks.count, stacks.count, "tid \(thread.tid): sample count")
            XCTAssertEqual(thread.stacks, stacks.map { $0.map(expected) }, "tid \(thread.tid)")
        }
        // The same, derived from the profile itself rather than the fixture's lists.
        XCTAssertEqual(read.threads.map(\.stacks), stacksByThread(Fixture.profile))
    }

    func testFrameCategoriesFilesAndLines() throws {
        let frames = Set(try FirefoxProfileChecker.read(render()).threads.flatMap { $0.stacks.joined() })
        let byName = Dictionary(frames.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(byName["Server.serve"], expected(Fixture.serve))
        XCTAssertEqual(byName["Server.serve"]?.category, "Python")
        XCTAssertEqual(byName["_PyEval_EvalFrameDefault"], expected(Fixture.evalFrame))
        XCTAssertEqual(byName["_PyEval_EvalFrameDefault"]?.category, "Native")
        XCTAssertEqual(byName["_PyEval_EvalFrameDefault"]?.file, "libpython3.12.so.1.0")
        XCTAssertEqual(byName["do_syscall_64"], expected(Fixture.syscall))
        XCTAssertEqual(byName["do_syscall_64"]?.category, "Kernel")
        XCTAssertEqual(byName["[truncated]"], expected(.truncated))
        XCTAssertEqual(byName["[truncated]"]?.category, "Other")
        // Unknown lines and files are null, not 0 and "".
        XCTAssertEqual(byName["compute"], expected(Fixture.compute))
        XCTAssertEqual(byName["helper"], expected(Fixture.helper))

        let document = try json(render())
        let threads = try XCTUnwrap(document["threads"] as? [[String: Any]])
        let batch = try XCTUnwrap(threads.last)
        let funcs = try XCTUnwrap(batch["funcTable"] as? [String: Any])
        let frameTable = try XCTUnwrap(batch["frameTable"] as? [String: Any])
        // batch: <module> (/srv/batch.py:1), compute (/srv/batch.py), helper.
        XCTAssertEqual((funcs["lineNumber"] as? [Any])?.map { $0 is NSNull ? -1 : $0 as! Int }, [1, -1, -1])
        XCTAssertEqual((frameTable["line"] as? [Any])?.map { $0 is NSNull ? -1 : $0 as! Int }, [1, -1, -1])
        XCTAssertEqual((funcs["fileName"] as? [Any])?.map { $0 is NSNull }, [false, false, true])
        XCTAssertEqual(funcs["isJS"] as? [Bool], [true, true, true], "Python functions show under the JS filter")
    }

    func testNativeFramesHaveTheirLibraryAsResource() throws {
        let document = try json(render())
        let strings = try XCTUnwrap((document["shared"] as? [String: Any])?["stringArray"] as? [String])
        let main = try XCTUnwrap((document["threads"] as? [[String: Any]])?.first)
        let resources = try XCTUnwrap(main["resourceTable"] as? [String: Any])
        let names = try XCTUnwrap(resources["name"] as? [Int]).map { strings[$0] }
        let types = try XCTUnwrap(resources["type"] as? [Int])
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: zip(names, types)), ["app.py": 5, "libpython3.12.so.1.0": 1])
        XCTAssertNil(main["libs"], "libs are the profile's, not the thread's")
    }

    func testSamplesWithAnEmptyStackHaveANullStack() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.append(time: 0, pid: 1, tid: 1, threadName: "", stack: [])
        profile.append(time: 10_000_000, pid: 1, tid: 1, threadName: "", stack: [Fixture.main])
        let bytes = render(profile)
        XCTAssertEqual(FirefoxProfileChecker.problems(in: bytes), [])
        let thread = try XCTUnwrap(try FirefoxProfileChecker.read(bytes).threads.first)
        XCTAssertEqual(thread.stacks, [[], [expected(Fixture.main)]])
        XCTAssertEqual(thread.name, "Thread 1", "a thread without a name is named by its tid")
        XCTAssertEqual(thread.processName, "pid 1", "an unknown process is named by its pid")
    }

    func testEmptyProfileIsAValidDocumentWithoutThreads() throws {
        let bytes = render(Profile(sampleRate: 100, startDate: 1_714_564_800))
        XCTAssertEqual(FirefoxProfileChecker.problems(in: bytes), [])
        XCTAssertEqual(try FirefoxProfileChecker.read(bytes).threads.count, 0)
    }

    func testNamesWithQuotesAndControlCharactersSurvive() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        let odd = Frame(kind: .python, name: "f\"\\\n\t\u{1}é", file: "/tmp/a \"b\".py", line: 3)
        profile.append(time: 0, pid: 2, tid: 3, threadName: "w\"1", stack: [odd])
        let read = try FirefoxProfileChecker.read(render(profile))
        XCTAssertEqual(read.threads.first?.stacks, [[expected(odd)]])
        XCTAssertEqual(read.threads.first?.name, "w\"1")
    }

    func testOutputIsDeterministic() {
        XCTAssertEqual(render(), render())
        // Interning order aside, the same recording gives the same bytes.
        var shuffled = Profile(sampleRate: 100, startDate: 1_714_564_800)
        let original = Fixture.profile
        for process in original.processes { _ = shuffled.add(process) }
        shuffled.duration = original.duration
        for sample in original.samples.reversed() {
            shuffled.append(time: sample.time, cpu: sample.cpu, pid: original.process(of: sample).pid, tid: sample.tid,
                            threadName: original.threadNames[Int(sample.threadName)],
                            stack: original.stacks[Int(sample.stack)].map { original.frames[Int($0)] })
        }
        XCTAssertEqual(render(shuffled), render(original))
    }

    // MARK: - The checker catches what it should

    /// The checker reports each kind of broken document; a checker that passes everything proves nothing.
    func testCheckerReportsBrokenDocuments() throws {
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("threads[0].stackTable.prefix[1]", { $0[thread: 0, "stackTable", "prefix", 1] = 5 }),
            ("threads[0].stackTable.prefix[0]", { $0[thread: 0, "stackTable", "prefix", 0] = 0 }),
            ("threads[0].stackTable.frame[0]", { $0[thread: 0, "stackTable", "frame", 0] = 99 }),
            ("threads[0].frameTable.func[0]", { $0[thread: 0, "frameTable", "func", 0] = -1 }),
            ("threads[0].frameTable.category[0]", { $0[thread: 0, "frameTable", "category", 0] = 4 }),
            ("threads[0].frameTable.subcategory[0]", { $0[thread: 0, "frameTable", "subcategory", 0] = 1 }),
            ("threads[0].funcTable.name[0]", { $0[thread: 0, "funcTable", "name", 0] = 1000 }),
            ("threads[0].funcTable.fileName[0]", { $0[thread: 0, "funcTable", "fileName", 0] = 1000 }),
            ("threads[0].funcTable.resource[0]", { $0[thread: 0, "funcTable", "resource", 0] = 9 }),
            ("threads[0].samples.stack[0]", { $0[thread: 0, "samples", "stack", 0] = 1000 }),
            ("threads[0].samples.time[1]", { $0[thread: 0, "samples", "time", 1] = -1 }),
            ("threads[0].samples.stack", { $0[thread: 0, "samples", "length"] = 5 }),
            ("threads[0].stringArray", { $0[thread: 0, "stringArray"] = ["x"] }),
            ("threads[1]", { document in
                var threads = document["threads"] as! [[String: Any]]
                threads[1]["tid"] = threads[0]["tid"]
                document["threads"] = threads
            }),
            ("meta.preprocessedProfileVersion", { document in
                var meta = document["meta"] as! [String: Any]
                meta["preprocessedProfileVersion"] = 58
                document["meta"] = meta
            }),
            ("meta.categories", { document in
                var meta = document["meta"] as! [String: Any]
                meta["categories"] = [["name": "Python", "color": "yellow", "subcategories": ["Other"]]]
                document["meta"] = meta
            }),
            ("shared", { $0["shared"] = nil }),
        ]
        XCTAssertEqual(FirefoxProfileChecker.problems(in: render()), [], "the unbroken document")
        for (path, breakDocument) in cases {
            var document = try json(render())
            breakDocument(&document)
            let bytes = Array(try JSONSerialization.data(withJSONObject: document))
            let problems = FirefoxProfileChecker.problems(in: bytes)
            XCTAssertTrue(problems.contains { $0.hasPrefix(path) }, "\(path) should be reported, got: \(problems)")
        }
    }

    // MARK: - Helpers

    /// The profile's stacks per thread, in (pid, tid) order and time order, as the checker reads them back.
    private func stacksByThread(_ profile: Profile) -> [[[FirefoxProfileChecker.ReadFrame]]] {
        profile.threads.map { thread in
            profile.samples.enumerated()
                .filter { $0.element.process == thread.key.process && $0.element.tid == thread.key.tid }
                .sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }
                .map { profile.stacks[Int($0.element.stack)].map { expected(profile.frames[Int($0)]) } }
        }
    }
}

private extension Dictionary where Key == String, Value == Any {
    /// `document[thread: i, "table", "column", position]`: a value inside a thread, for breaking documents.
    subscript(thread index: Int, table: String, column: String, position: Int) -> Any {
        get { fatalError("write-only") }
        set {
            var threads = self["threads"] as! [[String: Any]]
            var tableObject = threads[index][table] as! [String: Any]
            var values = tableObject[column] as! [Any]
            values[position] = newValue
            tableObject[column] = values
            threads[index][table] = tableObject
            self["threads"] = threads
        }
    }

    subscript(thread index: Int, table: String, column: String) -> Any? {
        get { fatalError("write-only") }
        set {
            var threads = self["threads"] as! [[String: Any]]
            var tableObject = threads[index][table] as! [String: Any]
            tableObject[column] = newValue
            threads[index][table] = tableObject
            self["threads"] = threads
        }
    }

    subscript(thread index: Int, field: String) -> Any? {
        get { fatalError("write-only") }
        set {
            var threads = self["threads"] as! [[String: Any]]
            threads[index][field] = newValue
            self["threads"] = threads
        }
    }
}
