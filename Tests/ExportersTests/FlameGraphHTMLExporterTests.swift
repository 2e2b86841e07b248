import Exporters
import Foundation
import ProfileModel
import TestSupport
import XCTest

final class FlameGraphHTMLExporterTests: XCTestCase {
    private func page(_ profile: Profile) -> String {
        String(decoding: FlameGraphHTMLExporter().render(profile), as: UTF8.self)
    }

    private func embedded(_ profile: Profile) throws -> EmbeddedFlameGraph {
        try EmbeddedFlameGraph.read(html: page(profile))
    }

    /// A frame as the tests compare them: every field, so that two frames of one name stay apart.
    private static func key(_ frame: EmbeddedFlameGraph.Frame) -> String {
        "\(frame.kind)|\(frame.name)|\(frame.file)|\(frame.line)"
    }

    private static func key(_ frame: Frame) -> String {
        let kind: Int
        switch frame.kind {
        case .python: kind = 0
        case .native: kind = 1
        case .kernel: kind = 2
        case .marker: kind = 3
        }
        return "\(kind)|\(frame.name)|\(frame.file)|\(frame.line)"
    }

    /// Every node's path from the root (frame keys, the root left out) with its total and self count.
    private static func nodesByPath(_ graph: EmbeddedFlameGraph) -> [[String]: (total: Int, selfCount: Int)] {
        let parents = graph.parents()
        let selfCounts = graph.selfCounts()
        var paths: [[String]] = Array(repeating: [], count: graph.nodeCount)
        var result: [[String]: (total: Int, selfCount: Int)] = [:]
        for node in 0..<graph.nodeCount {
            if parents[node] >= 0 { paths[node] = paths[parents[node]] + [key(graph.frame(ofNode: node))] }
            XCTAssertNil(result[paths[node]], "two nodes have the path \(paths[node])")
            result[paths[node]] = (graph.nodeTotal[node], selfCounts[node])
        }
        return result
    }

    // MARK: - The embedded tree

    /// The fixture has two processes, so each is a level under the root; the tree's every node carries the
    /// samples of the stacks through it, counted here straight from the fixture's stacks.
    func testEmbeddedTreeRoundTripsTotalsSelfCountsAndNames() throws {
        let graph = try embedded(Fixture.profile)
        let app = "4|/usr/bin/python3 app.py (pid 100)|Python 3.12.1|0"
        let batch = "4|/usr/local/bin/python3.11 -m batch (pid 200)|Python 3.11.9|0"
        var expected: [[String]: (total: Int, selfCount: Int)] = [[]: (9, 0)]
        let stacksByProcess = [
            (app, Fixture.mainThreadStacks + Fixture.workerStacks),
            (batch, Fixture.batchStacks),
        ]
        for (process, stacks) in stacksByProcess {
            for stack in stacks {
                let path = [process] + stack.map(Self.key)
                for length in 1...path.count {
                    expected[Array(path.prefix(length)), default: (0, 0)].total += 1
                }
                expected[path, default: (0, 0)].selfCount += 1
            }
        }
        let actual = Self.nodesByPath(graph)
        XCTAssertEqual(Set(actual.keys), Set(expected.keys))
        for (path, counts) in expected {
            XCTAssertEqual(actual[path]?.total, counts.total, "total of \(path)")
            XCTAssertEqual(actual[path]?.selfCount, counts.selfCount, "self count of \(path)")
        }

        XCTAssertEqual(graph.frames[0], EmbeddedFlameGraph.Frame(kind: 5, name: "all", file: "", line: 0))
        XCTAssertEqual(graph.nodeFrame[0], 0)
        XCTAssertEqual(graph.nodeDepth[0], 0)
        XCTAssertEqual(graph.document["samples"] as? Int, 9)
        XCTAssertEqual(graph.document["sampleRate"] as? Int, 100)
        XCTAssertEqual(graph.document["durationNs"] as? Int, 40_000_000)
        XCTAssertEqual(graph.document["startDate"] as? Int, 1_714_564_800)
        let processes = try XCTUnwrap(graph.document["processes"] as? [[String: Any]])
        XCTAssertEqual(processes.map { $0["pid"] as? Int }, [100, 200])
        XCTAssertEqual(processes.map { $0["command"] as? String },
                       ["/usr/bin/python3 app.py", "/usr/local/bin/python3.11 -m batch"])
        XCTAssertEqual(processes.map { $0["python"] as? String }, ["3.12.1", "3.11.9"])
    }

    /// Children come in the order of their names (then files and lines), as flamegraph.pl draws them.
    func testChildrenAreOrderedByName() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        for name in ["zeta", "alpha", "Mid", "beta", "alpha"] {
            profile.append(time: 0, pid: 1, tid: 1, threadName: "MainThread",
                           stack: [Fixture.appModule, Frame(kind: .python, name: name, file: "a.py", line: 1)])
        }
        let graph = try embedded(profile)
        let parents = graph.parents()
        let children = (0..<graph.nodeCount).filter { parents[$0] == 1 }.map { graph.frame(ofNode: $0).name }
        XCTAssertEqual(children, ["Mid", "alpha", "beta", "zeta"])
        XCTAssertEqual(children.map { name in graph.nodeTotal[(0..<graph.nodeCount).first { graph.frame(ofNode: $0).name == name }!] },
                       [1, 2, 1, 1])
    }

    /// One process: its stacks start right under the root, with no level for the process.
    func testOneProcessHasNoProcessLevel() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        _ = profile.add(ProfiledProcess(pid: 7, commandLine: "python3 one.py", pythonVersion: "3.12.1"))
        for stack in Fixture.mainThreadStacks {
            profile.append(time: 0, pid: 7, tid: 7, threadName: "MainThread", stack: stack)
        }
        let graph = try embedded(profile)
        XCTAssertFalse(graph.frames.contains { $0.kind == 4 }, "no process frames")
        let depthOne = (0..<graph.nodeCount).filter { graph.nodeDepth[$0] == 1 }
        XCTAssertEqual(depthOne.map { graph.frame(ofNode: $0).name }, ["<module>"])
        XCTAssertEqual(depthOne.map { graph.nodeTotal[$0] }, [4])
        XCTAssertEqual(graph.nodeTotal[0], 4)
        XCTAssertEqual(graph.matchedSamples(containing: "serve"), 3)
        XCTAssertEqual(graph.matchedSamples(containing: "syscall"), 1)
    }

    // MARK: - Modes and weights

    /// In wall and offcpu mode totals are microseconds, so the 1 s sleep is 99% of the root beside the 10 ms sample;
    /// in cpu and gil mode they count samples of one period each. The data says which, and the mode's time.
    func testTotalsAreMicrosecondsInIntervalModesAndSamplesInTheOthers() throws {
        for mode in ProfileMode.allCases {
            let graph = try embedded(IntervalFixture.profile(mode))
            let byPath = Self.nodesByPath(graph)
            let running = IntervalFixture.runningStack.map(Self.key)
            let sleeping = IntervalFixture.sleepingStack.map(Self.key)
            XCTAssertEqual(graph.document["mode"] as? String, mode.rawValue)
            XCTAssertEqual(graph.document["timeDescription"] as? String, mode.timeDescription)
            XCTAssertEqual(graph.document["samples"] as? Int, 2)
            if mode.hasIntervals {
                XCTAssertEqual(graph.document["unit"] as? String, "microseconds", "\(mode)")
                XCTAssertEqual(graph.document["unitNs"] as? Int, 1000, "\(mode)")
                XCTAssertEqual(graph.nodeTotal[0], 1_010_000, "\(mode)")
                XCTAssertEqual(byPath[sleeping]?.selfCount, 1_000_000, "\(mode)")
                XCTAssertEqual(byPath[running]?.selfCount, 10_000, "\(mode)")
                XCTAssertEqual(byPath[Array(sleeping.prefix(2))]?.total, 1_010_000, "\(mode): main")
            } else {
                XCTAssertEqual(graph.document["unit"] as? String, "samples", "\(mode)")
                XCTAssertEqual(graph.document["unitNs"] as? Int, 10_000_000, "\(mode)")
                XCTAssertEqual(graph.nodeTotal[0], 2, "\(mode)")
                XCTAssertEqual(byPath[sleeping]?.selfCount, 1, "\(mode)")
            }
        }
    }

    /// Paths are rounded to the microsecond once, after their weights are summed; a path under half a microsecond
    /// is left out rather than drawn zero wide.
    func testMicrosecondsAreRoundedOncePerPath() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        profile.mode = .offcpu
        for (name, weight) in [("a", 1_400), ("a", 1_400), ("b", 499)] as [(String, UInt64)] {
            profile.append(time: 0, pid: 1, tid: 1, threadName: "t", stack: [Frame(kind: .python, name: name)], weight: weight)
        }
        let graph = try embedded(profile)
        XCTAssertEqual(graph.nodeTotal, [3, 3])
        XCTAssertEqual(graph.frame(ofNode: 1).name, "a")
    }

    /// The wall-mode page in Chromium: its heading, tooltip and search say seconds of wall time, and the sleep's
    /// share of it.
    func testIntervalPageSaysSecondsOfWallTimeInChromium() throws {
        let directory = try temporaryDirectory()
        let path = directory.appendingPathComponent("wall.html").path
        try Data(FlameGraphHTMLExporter().render(IntervalFixture.profile(.wall))).write(to: URL(fileURLWithPath: path))
        let load = try HeadlessChromium.selfTest(page: path, term: "sleeping")
        let report = try load.selfTestReport()
        XCTAssertEqual(report["errors"] as? [String], [])
        XCTAssertEqual(load.consoleErrors, [], "console errors:\n\(load.consoleMessages.joined(separator: "\n"))")
        XCTAssertTrue(load.dom.contains("2 samples \u{B7} 1.01 s of wall time in 1.02 s \u{B7} 100 Hz"), load.dom)
        let tooltip = report["tooltip"] as? [String: Any] ?? [:]
        XCTAssertEqual(tooltip["text"] as? String,
                       "[off-CPU: sleeping]marker1.00 s of wall time, 99.01% \u{B7} self 1.00 s of wall time, 99.01%")
        let search = report["search"] as? [String: Any] ?? [:]
        XCTAssertEqual(search["text"] as? String, "matched: 99.01%, 1.00 s of wall time")
        XCTAssertEqual(search["samples"] as? Int, 1_000_000, "the matched microseconds")
    }

    /// A CPU page counts samples and says the CPU time they stand for.
    func testCPUPageSaysSamplesAndCPUTimeInChromium() throws {
        let directory = try temporaryDirectory()
        let path = directory.appendingPathComponent("cpu.html").path
        try Data(FlameGraphHTMLExporter().render(IntervalFixture.profile(.cpu))).write(to: URL(fileURLWithPath: path))
        let load = try HeadlessChromium.selfTest(page: path, term: "serve")
        let report = try load.selfTestReport()
        XCTAssertEqual(report["errors"] as? [String], [])
        XCTAssertTrue(load.dom.contains("2 samples \u{B7} 20.0 ms of CPU time in 1.02 s \u{B7} 100 Hz"), load.dom)
        let tooltip = report["tooltip"] as? [String: Any] ?? [:]
        XCTAssertEqual(tooltip["text"] as? String, "Server.servePython \u{B7} app.py:12"
            + "10.0 ms of CPU time (1 sample), 50.00% \u{B7} self 10.0 ms of CPU time (1 sample), 50.00%")
        let search = report["search"] as? [String: Any] ?? [:]
        XCTAssertEqual(search["text"] as? String, "matched: 50.00%, 10.0 ms of CPU time (1 sample)")
    }

    // MARK: - Safety

    /// Names come from the profiled programs: nothing in them may end the data's script element, open a
    /// comment, or become markup, and they read back exactly.
    func testHostileNamesAreEscapedAndReadBackExactly() throws {
        let hostile = Self.hostileProfile()
        let html = page(hostile)
        let innocent = page(Fixture.profile)
        XCTAssertEqual(html.components(separatedBy: "</script>").count, innocent.components(separatedBy: "</script>").count,
                       "a frame name closed a script element")
        XCTAssertEqual(html.components(separatedBy: "<script").count, innocent.components(separatedBy: "<script").count)
        for forbidden in ["<img", "<!--", "<svg", "onerror=alert(1)>"] {
            XCTAssertNil(html.range(of: forbidden, options: .caseInsensitive), "\(forbidden) reached the page unescaped")
        }
        let graph = try EmbeddedFlameGraph.read(html: html)
        let names = Set(graph.frames.map(\.name))
        for frame in hostile.frames {
            XCTAssertTrue(names.contains(frame.name), "\(frame.name) did not read back")
        }
        XCTAssertTrue(graph.frames.contains { $0.file == Self.hostileFile })
        let processes = try XCTUnwrap(graph.document["processes"] as? [[String: Any]])
        XCTAssertEqual(processes.first?["command"] as? String, Self.hostileCommand)
    }

    /// No CDN, font or anything else from the network: the page works offline.
    func testPageReferencesNothingOutside() {
        let html = page(Fixture.profile)
        for reference in ["http://", "https://", "url(", "@import", "<link", "src="] {
            XCTAssertNil(html.range(of: reference, options: .caseInsensitive), "the page contains \(reference)")
        }
    }

    /// The page is flamegraph.html with flamegraph.css and flamegraph.js in place of their markers: every
    /// marker is filled, neither file ends its element early (the data's element is the other script), and
    /// the Content-Security-Policy comes before anything it governs.
    func testPageIsTheTemplateWithItsStyleAndScriptInline() throws {
        let html = page(Fixture.profile)
        XCTAssertFalse(html.contains("{{"), "a marker of flamegraph.html is left in the page")
        let count = { (text: String) in html.components(separatedBy: text).count - 1 }
        XCTAssertEqual(count("<style>"), 1)
        XCTAssertEqual(count("</style"), 1)
        XCTAssertEqual(count("<script"), 2)
        XCTAssertEqual(count("</script"), 2)
        let policy = try XCTUnwrap(html.range(of: """
            <meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; \
            style-src 'unsafe-inline'">
            """), "the page lost its Content-Security-Policy")
        XCTAssertLessThan(policy.upperBound, try XCTUnwrap(html.range(of: "<style>")).lowerBound)
    }

    /// The self-test is the tests' (Tests/TestSupport/flamegraph-selftest.js): users' pages do without it.
    func testPageHoldsNoSelfTest() {
        for profile in [Fixture.profile, Profile(sampleRate: 100, startDate: 0)] {
            let html = page(profile)
            XCTAssertNil(html.range(of: "selftest", options: .caseInsensitive))
            XCTAssertNil(html.range(of: "self-test", options: .caseInsensitive))
        }
    }

    func testEmptyProfileHasOnlyTheRoot() throws {
        let graph = try embedded(Profile(sampleRate: 100, startDate: 0))
        XCTAssertEqual(graph.nodeCount, 1)
        XCTAssertEqual(graph.nodeTotal, [0])
    }

    // MARK: - In a browser

    /// The fixture's page in Chromium: frames drawn, a click zooms, "main" matches 5 of the 9 samples (the
    /// main thread's 4 and the worker's 1), icicle puts the root on top, reset zooms out, no errors.
    func testFixturePageSelfTestInChromium() throws {
        let directory = try temporaryDirectory()
        let path = directory.appendingPathComponent("fixture.html").path
        try Data(FlameGraphHTMLExporter().render(Fixture.profile)).write(to: URL(fileURLWithPath: path))
        let graph = try EmbeddedFlameGraph.read(html: String(contentsOfFile: path, encoding: .utf8))
        XCTAssertEqual(graph.matchedSamples(containing: "main"), 5)

        let load = try HeadlessChromium.selfTest(page: path, term: "main")
        let report = try load.selfTestReport()
        Self.assertSelfTest(report, load: load, term: "main", expectedSamples: 5, totalSamples: 9)
    }

    /// The hostile names in a browser: the page runs, and none of them became an element.
    func testHostileNamesStayTextInChromium() throws {
        let directory = try temporaryDirectory()
        let path = directory.appendingPathComponent("hostile.html").path
        try Data(FlameGraphHTMLExporter().render(Self.hostileProfile())).write(to: URL(fileURLWithPath: path))
        let load = try HeadlessChromium.selfTest(page: path, term: "img")
        let report = try load.selfTestReport()
        XCTAssertEqual(report["errors"] as? [String], [], "the page caught errors")
        XCTAssertEqual(load.consoleErrors, [], "console errors:\n\(load.consoleMessages.joined(separator: "\n"))")
        XCTAssertGreaterThan(report["framesDrawn"] as? Int ?? 0, 0)
        XCTAssertNil(load.dom.range(of: "<img", options: .caseInsensitive), "a frame name became an <img> element")
        XCTAssertNil(load.dom.range(of: "<svg", options: .caseInsensitive))
        // The heading shows the hostile command line as text.
        XCTAssertTrue(load.dom.contains("&lt;img src=x onerror=alert(2)&gt;"), "the command line is not in the heading")
    }

    func testEmptyProfilePageLoadsInChromium() throws {
        let directory = try temporaryDirectory()
        let path = directory.appendingPathComponent("empty.html").path
        try Data(FlameGraphHTMLExporter().render(Profile(sampleRate: 100, startDate: 0)))
            .write(to: URL(fileURLWithPath: path))
        let load = try HeadlessChromium.selfTest(page: path)
        let report = try load.selfTestReport()
        XCTAssertEqual(report["errors"] as? [String], [])
        XCTAssertEqual(load.consoleErrors, [], "console errors:\n\(load.consoleMessages.joined(separator: "\n"))")
        XCTAssertEqual(report["framesDrawn"] as? Int, 0)
        XCTAssertTrue(load.dom.contains("This profile has no samples."))
    }

    // MARK: - Scale

    /// 100,000 distinct stacks, about a million tree nodes: the file's size stays bounded (printed with the
    /// exporter's time), and Chromium loads and draws it, zooms and searches it, without errors. The page's
    /// own timings are printed, not asserted: they depend on the machine.
    func testHundredThousandDistinctStacks() throws {
        let profile = Self.largeProfile(distinctStacks: 100_000)
        XCTAssertEqual(profile.stacks.count, 100_000)
        let started = Date()
        let bytes = FlameGraphHTMLExporter().render(profile)
        let exportSeconds = Date().timeIntervalSince(started)
        let html = String(decoding: bytes, as: UTF8.self)
        let graph = try EmbeddedFlameGraph.read(html: html)
        print("""
            100,000 distinct stacks, \(profile.samples.count) samples, \(profile.frames.count) frames: \
            \(graph.nodeCount) nodes, \(bytes.count) bytes (\(String(format: "%.1f", Double(bytes.count) / Double(graph.nodeCount))) \
            per node), exported in \(String(format: "%.2f", exportSeconds)) s
            """)
        XCTAssertEqual(graph.nodeTotal[0], profile.samples.count)
        // Three short numbers per node and the frame table: well under 40 bytes a node.
        XCTAssertLessThan(bytes.count, graph.nodeCount * 40 + profile.frames.count * 80 + 100_000)
        // Every stack ends in a node whose self count is its samples: the self counts add up to all samples.
        XCTAssertEqual(graph.selfCounts().reduce(0, +), profile.samples.count)

        let directory = try temporaryDirectory()
        let path = directory.appendingPathComponent("large.html").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let term = "handler_17"
        let expected = graph.matchedSamples(containing: term)
        XCTAssertGreaterThan(expected, 0)
        let load = try HeadlessChromium.selfTest(page: path, term: term, virtualTimeBudget: 30_000, timeout: 300)
        let report = try load.selfTestReport()
        let timings = report["timings"] as? [String: Double] ?? [:]
        let click = report["click"] as? [String: Any] ?? [:]
        let search = report["search"] as? [String: Any] ?? [:]
        let milliseconds = { (value: Any?) in String(format: "%.0f ms", value as? Double ?? -1) }
        print("""
            Chromium: \(String(format: "%.1f", load.seconds)) s for the whole run; page: JSON.parse and typed arrays \
            \(milliseconds(timings["parseMs"])), layout \(milliseconds(timings["layoutMs"])), first render \
            \(milliseconds(timings["firstRenderMs"])) (\(report["framesDrawn"] ?? "?") rectangles), ready \
            \(milliseconds(timings["readyMs"])) after navigation; zoom render \(milliseconds(click["renderMs"])), \
            search \(milliseconds(search["ms"]))
            """)
        Self.assertSelfTest(report, load: load, term: term, expectedSamples: expected, totalSamples: profile.samples.count)
    }

    // MARK: - Helpers

    static let hostileFile = "/srv/<script>alert('file')</script>.py"
    static let hostileCommand = "python3 \"x\" '<img src=x onerror=alert(2)>' </script>"

    static func hostileProfile() -> Profile {
        var profile = Profile(sampleRate: 100, startDate: 0)
        _ = profile.add(ProfiledProcess(pid: 1, commandLine: hostileCommand, pythonVersion: "3.12</script>"))
        let names = [
            "</script><script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "\"double\" 'single' `back` \\backslash\\",
            "<!-- comment --> & &amp; &lt;",
            "na\u{00EF}ve \u{2603} \u{2028}line\u{2029} \u{1}control\t",
            "<svg onload=alert(1)>",
        ]
        for (position, name) in names.enumerated() {
            profile.append(time: UInt64(position), pid: 1, tid: 1, threadName: "<b>thread</b>", stack: [
                Frame(kind: .python, name: "<module>", file: hostileFile, line: 1),
                Frame(kind: .python, name: name, file: hostileFile, line: position + 2),
                Frame(kind: .native, name: name, file: "lib<x>.so"),
            ])
        }
        return profile
    }

    /// A recording with `distinctStacks` distinct stacks shaped like a large program's: a few entry points,
    /// then Python calls chosen from a few likely callees of each function (so that stacks share prefixes, as
    /// real ones do), then sometimes native and kernel frames. Deterministic (a fixed-seed generator).
    static func largeProfile(distinctStacks: Int) -> Profile {
        var profile = Profile(sampleRate: 1000, startDate: 1_714_564_800)
        _ = profile.add(ProfiledProcess(pid: 4242, commandLine: "python3 big_service.py --workers 8",
                                                  pythonVersion: "3.12.1"))
        var random = SplitMix64(seed: 0x5EED)
        let python = (0..<3000).map { index in
            profile.intern(Frame(kind: .python, name: index % 50 == 17 ? "handler_\(index % 100)" : "function_\(index)",
                                 file: "/srv/app/module_\(index % 300).py", line: 10 + index % 500))
        }
        let native = (0..<600).map { index in
            profile.intern(Frame(kind: .native, name: "native_\(index)", file: "libnative_\(index % 25).so"))
        }
        let kernel = (0..<120).map { index in profile.intern(Frame(kind: .kernel, name: "kernel_\(index)")) }
        let entry = profile.intern(Frame(kind: .python, name: "<module>", file: "/srv/app/big_service.py", line: 1))
        let threadName = profile.intern(threadName: "MainThread")

        var time: UInt64 = 0
        var stack: [Int32] = []
        while profile.stacks.count < distinctStacks {
            stack.removeAll(keepingCapacity: true)
            stack.append(entry)
            var current = Int(random.next() % 8)
            for _ in 0..<(4 + Int(random.next() % 22)) {
                stack.append(python[current])
                // One of four likely callees of this function.
                current = (current &* 7 + 1 + Int(random.next() % 4) &* 389) % python.count
            }
            if random.next() % 3 == 0 {
                var nativeFrame = Int(random.next() % UInt64(native.count))
                for _ in 0..<(1 + Int(random.next() % 5)) {
                    stack.append(native[nativeFrame])
                    nativeFrame = (nativeFrame * 3 + 1 + Int(random.next() % 2)) % native.count
                }
                if random.next() % 2 == 0 {
                    var kernelFrame = Int(random.next() % 10)
                    for _ in 0..<(1 + Int(random.next() % 4)) {
                        stack.append(kernel[kernelFrame])
                        kernelFrame = (kernelFrame * 5 + 1 + Int(random.next() % 3)) % kernel.count
                    }
                }
            }
            let stackIndex = profile.intern(stack: stack)
            for _ in 0..<(1 + Int(random.next() % 3)) {
                profile.samples.append(Sample(time: time, cpu: 0, process: 0, tid: 4242, threadName: threadName,
                                              stack: stackIndex, weight: profile.samplePeriod))
                time += 1_000_000
            }
        }
        profile.duration = time
        return profile
    }

    /// What every self-test run must show: frames drawn; the click zoomed to the clicked frame, now the full
    /// width; the search matched exactly the samples the data says; icicle moved the root to the top; reset
    /// went back to the root; nothing logged an error.
    static func assertSelfTest(
        _ report: [String: Any], load: HeadlessChromium.PageLoad, term: String, expectedSamples: Int, totalSamples: Int,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        print("Chromium console (\(load.consoleMessages.count) messages):"
            + load.consoleMessages.map { "\n  " + $0 }.joined())
        XCTAssertEqual(report["errors"] as? [String], [], "errors the page caught", file: file, line: line)
        XCTAssertEqual(load.consoleErrors, [], "console errors", file: file, line: line)
        XCTAssertEqual(report["samples"] as? Int, totalSamples, file: file, line: line)
        XCTAssertGreaterThan(report["framesDrawn"] as? Int ?? 0, 0, "no frames drawn", file: file, line: line)

        let click = report["click"] as? [String: Any] ?? [:]
        let target = click["target"] as? Int ?? -1
        XCTAssertGreaterThan(target, 0, "the self-test found no frame to click", file: file, line: line)
        XCTAssertEqual(click["zoom"] as? Int, target, "the click did not zoom to the clicked frame", file: file, line: line)
        XCTAssertEqual(click["zoomedFullWidth"] as? Bool, true, file: file, line: line)
        XCTAssertGreaterThan(click["framesDrawn"] as? Int ?? 0, 0, file: file, line: line)
        XCTAssertTrue((click["targetName"] as? String ?? "").localizedCaseInsensitiveContains(term), file: file, line: line)
        let tooltip = report["tooltip"] as? [String: Any] ?? [:]
        XCTAssertEqual(tooltip["visible"] as? Bool, true, "no tooltip on hover", file: file, line: line)
        XCTAssertTrue((tooltip["text"] as? String ?? "").contains(click["targetName"] as? String ?? "\u{0}"),
                      "the tooltip does not name the frame: \(tooltip)", file: file, line: line)

        let search = report["search"] as? [String: Any] ?? [:]
        XCTAssertEqual(search["samples"] as? Int, expectedSamples, "matched samples", file: file, line: line)
        let percent = 100 * Double(expectedSamples) / Double(totalSamples)
        XCTAssertEqual(search["percent"] as? Double ?? -1, percent, accuracy: 1e-9, file: file, line: line)
        XCTAssertTrue((search["text"] as? String ?? "").hasPrefix("matched: \(String(format: "%.2f", percent))%"),
                      "matched text: \(search["text"] ?? "none")", file: file, line: line)
        XCTAssertGreaterThan(search["highlighted"] as? Int ?? 0, 0, "no highlighted frames", file: file, line: line)

        let icicle = report["icicle"] as? [String: Any] ?? [:]
        XCTAssertEqual(icicle["checked"] as? Bool, true, file: file, line: line)
        XCTAssertGreaterThan(icicle["rootTopBefore"] as? Double ?? 0, 0, "the flame graph's root is not at the bottom",
                             file: file, line: line)
        XCTAssertEqual(icicle["rootTopAfter"] as? Double, 0, "the icicle's root is not on top", file: file, line: line)
        let reset = report["reset"] as? [String: Any] ?? [:]
        XCTAssertEqual(reset["zoom"] as? Int, 0, "reset did not zoom out to the root", file: file, line: line)
        XCTAssertGreaterThan(reset["framesDrawn"] as? Int ?? 0, 0, file: file, line: line)
    }

    private func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("pybpfprof-flamegraph-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        return directory
    }
}

/// A small fixed-seed generator, so the large profile is the same on every run.
private struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
