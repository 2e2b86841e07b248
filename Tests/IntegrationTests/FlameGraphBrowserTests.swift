import Foundation
import TestSupport
import XCTest

/// The flame graph page of a real recording, in a real browser: pybpfprof records the workload's `shape`
/// mode on CPython 3.12 straight to `--format html`, and Debian's headless Chromium loads a copy of the file
/// with the tests' self-test in it (`HeadlessChromium.selfTest`, term `heavy`), which draws, hovers and clicks
/// a `heavy` frame, searches for `heavy`, switches to icicle and resets the zoom through the page's own event
/// handlers.
///
/// The search's matched samples are checked exactly against the data embedded in the same file (read here
/// with Foundation: this target cannot import the exporter), and loosely against what the workload is known
/// to do: heavy() runs three times as long as light().
final class FlameGraphBrowserTests: IntegrationTestCase {
    static let rate = 499

    func testRecordedFlameGraphWorksInChromium() throws {
        try HeadlessChromium.requireInstalled()
        let interpreter = try PythonInterpreters.pyenv("3.12")
        let workload = try Workload.load()
        let output = scratchFile("shape.html")
        let started = Date()
        let recording = try runPyBPFProf([
            "record", "--rate", "\(Self.rate)", "--format", "html", "-o", output, "--",
        ] + interpreter.command([workload.path, "shape", "--seconds", "2"]))
        try recording.requireSuccess()
        let recordSeconds = Date().timeIntervalSince(started)

        let html = try String(contentsOfFile: output, encoding: .utf8)
        let size = (try FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? -1
        let graph = try EmbeddedFlameGraph.read(html: html)
        let samples = graph.nodeTotal[0]
        let heavy = graph.matchedSamples(containing: "heavy")
        let light = graph.matchedSamples(containing: "light")
        print("""
              \(interpreter): \(recording.recordingSummary); \(output) is \(size) bytes, \(graph.nodeCount) nodes, \
              \(samples) samples (recorded in \(String(format: "%.1f", recordSeconds)) s); heavy \(heavy), light \(light)
              """)
        XCTAssertFalse(html.contains("http://") || html.contains("https://"), "the page refers to the network")
        XCTAssertGreaterThan(samples, 100, "too few samples to check the page against: \(recording.report)")
        XCTAssertEqual(graph.document["samples"] as? Int, samples)
        XCTAssertTrue(graph.frames.contains { $0.kind == 0 && $0.name == "run_shape" && $0.file == workload.path },
                      "no run_shape frame from \(workload.path)")
        // The workload's shape, loosely: the exact ratio is WorkloadShapeTests' subject.
        let heavyShare = Double(heavy) / Double(max(heavy + light, 1))
        XCTAssertGreaterThan(heavy + light, 50, "too few samples under heavy() and light()")
        XCTAssertTrue((0.6...0.9).contains(heavyShare),
                      "heavy() should have about 3/4 of heavy()+light()'s samples, has \(heavyShare)")

        let load = try HeadlessChromium.selfTest(page: output, term: "heavy")
        print("`\(load.commandLine.joined(separator: " "))` took \(String(format: "%.1f", load.seconds)) s")
        print("Chromium console (\(load.consoleMessages.count) messages):"
            + load.consoleMessages.map { "\n  " + $0 }.joined())
        let report = try load.selfTestReport()
        print("self-test: \(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))")

        XCTAssertEqual(report["errors"] as? [String], [], "errors the page caught")
        XCTAssertEqual(load.consoleErrors, [], "console errors")
        XCTAssertEqual(report["samples"] as? Int, samples)
        XCTAssertGreaterThan(report["framesDrawn"] as? Int ?? 0, 0, "the page drew no frames")

        // The click zoomed to the widest heavy() frame, which now spans the canvas.
        let click = report["click"] as? [String: Any] ?? [:]
        let target = click["target"] as? Int ?? -1
        XCTAssertTrue(graph.nodeTotal.indices.contains(target), "no frame clicked: \(click)")
        if graph.nodeTotal.indices.contains(target) {
            XCTAssertEqual(graph.frame(ofNode: target).name, "heavy")
            let widestHeavy = graph.nodeTotal.indices.filter { graph.frame(ofNode: $0).name == "heavy" }
                .max { graph.nodeTotal[$0] < graph.nodeTotal[$1] }
            XCTAssertEqual(target, widestHeavy, "the self-test should click the widest heavy() frame")
        }
        XCTAssertEqual(click["zoom"] as? Int, target, "the click did not zoom to the clicked frame")
        XCTAssertEqual(click["zoomName"] as? String, "heavy")
        XCTAssertEqual(click["zoomedFullWidth"] as? Bool, true, "the zoomed frame does not span the width")
        let tooltip = report["tooltip"] as? [String: Any] ?? [:]
        XCTAssertEqual(tooltip["visible"] as? Bool, true)
        let tooltipText = tooltip["text"] as? String ?? ""
        XCTAssertTrue(tooltipText.contains("heavy") && tooltipText.contains(workload.path) && tooltipText.contains("samples"),
                      "tooltip: \(tooltipText)")

        // The search counted exactly the samples under heavy() frames, each once.
        let search = report["search"] as? [String: Any] ?? [:]
        XCTAssertEqual(search["samples"] as? Int, heavy, "matched samples")
        let percent = 100 * Double(heavy) / Double(samples)
        XCTAssertEqual(search["percent"] as? Double ?? -1, percent, accuracy: 1e-9)
        XCTAssertTrue((search["text"] as? String ?? "").hasPrefix("matched: \(String(format: "%.2f", percent))%"),
                      "matched text: \(search["text"] ?? "none")")
        XCTAssertGreaterThan(search["highlighted"] as? Int ?? 0, 0, "no frame highlighted")

        let icicle = report["icicle"] as? [String: Any] ?? [:]
        XCTAssertEqual(icicle["checked"] as? Bool, true)
        XCTAssertGreaterThan(icicle["rootTopBefore"] as? Double ?? 0, 0, "the flame graph's root is not at the bottom")
        XCTAssertEqual(icicle["rootTopAfter"] as? Double, 0, "the icicle's root is not on top")
        let reset = report["reset"] as? [String: Any] ?? [:]
        XCTAssertEqual(reset["zoom"] as? Int, 0, "reset did not zoom out to the root")
        XCTAssertEqual(reset["framesDrawn"] as? Int, report["framesDrawn"] as? Int,
                       "after the reset the page should draw what it drew first")
    }
}
