import Exporters
import Foundation
import ProfileModel
import XCTest

/// `--mode gil`: only the samples of the thread that holds the GIL at that moment, read per CPython version (the
/// holder's slot up to 3.11, the GIL's own fields in 3.12, the thread state's flag from 3.13).
final class GILModeTests: IntegrationTestCase {
    /// A thread in pure Python and one compressing with bz2 (which releases the GIL meanwhile), busy at once: in cpu mode
    /// both are there, in gil mode the compressing thread nearly disappears and the Python thread stays.
    func testGILModeKeepsOnlyTheHolder() throws {
        let fixture = Checkout.fixtures.appendingPathComponent("gil_workload.py").path
        for interpreter in try PythonInterpreters.supported() {
            try stage([fixture], for: interpreter)
            var shares: [String: (python: Double, compressing: Double, samples: Int)] = [:]
            for mode in ["cpu", "gil"] {
                let recording = scratchFile("\(mode)-\(interpreter.name).pybpfprof")
                let result = try runPyBPFProf(
                    ["record", "--mode", mode, "--rate", "499", "--save", recording, "-o", scratchFile("\(mode).folded"), "--"]
                        + interpreter.command([fixture, "\(2 * Slowdown.factor)"]), timeout: 120).requireSuccess()
                let pythonTid = try printedThreadID("python-tid", in: result.standardOutput)
                let compressingTid = try printedThreadID("compressing-tid", in: result.standardOutput)
                let profile = try RecordingFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: recording))))
                XCTAssertEqual(profile.mode.rawValue, mode, "\(interpreter): the recording did not keep its mode")
                let both = profile.samples.filter { $0.tid == pythonTid || $0.tid == compressingTid }
                let python = both.filter { $0.tid == pythonTid }.count, compressing = both.count - python
                shares[mode] = (Double(python) / Double(max(both.count, 1)), Double(compressing) / Double(max(both.count, 1)), both.count)
                print("  \(interpreter.label) --mode \(mode): python thread \(python), compressing thread \(compressing) samples\n    \(result.recordingSummary)")
            }
            let cpu = try XCTUnwrap(shares["cpu"]), gil = try XCTUnwrap(shares["gil"])
            // Both there: how the CPU is split between them is the machine's doing (under emulation beside other guests
            // the Python thread got 16% to 24%), not the mode's.
            XCTAssertGreaterThan(cpu.compressing, 0.05, "\(interpreter): the compressing thread should be on a CPU in cpu mode: \(cpu)")
            XCTAssertGreaterThan(cpu.python, 0.05, "\(interpreter): \(cpu)")
            XCTAssertLessThan(gil.compressing, 0.05, "\(interpreter): the compressing thread, which released the GIL, in gil mode: \(gil)")
            XCTAssertGreaterThan(gil.samples, 250, "\(interpreter): the Python thread holds the GIL for about 2 s: \(gil)")
        }
    }
}
