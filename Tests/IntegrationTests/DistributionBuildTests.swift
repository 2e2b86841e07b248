import Foundation
import XCTest

/// The distributions' own interpreter builds, run in the Debian root Scripts/setup --tests makes (chroot ROOT
/// pythonX.Y: their libc is newer than the host's).
final class DistributionBuildTests: IntegrationTestCase {
    /// Debian sid's python3.13 is stripped, and GCC moved most of `_PyEval_EvalFrameDefault` into a part no symbol
    /// names: before the parts were found from the code, 98.6% of its samples were `[python/native mismatch]`. Each
    /// sample in the workload's innermost function is spliced: its Python frames in order, under the native ones.
    func testDebianSidPython3_13SplicesItsStrippedEvalLoop() throws {
        let interpreter = try PythonInterpreters.debianRoot("sid", "3.13")
        // Written in the scratch directory and staged at the same path in the root. It runs for 4 s of CPU time (about
        // 2000 samples), however long a loaded machine makes that.
        let script = scratchFile("sid313.py")
        try """
        import time
        def leaf(n):
            total = 0
            for i in range(n):
                total += i * i
            return total
        def middle():
            return leaf(20000)
        def top(seconds):
            end = time.process_time() + seconds
            while time.process_time() < end:
                middle()
        top(\(4 * Slowdown.factor))
        """.write(toFile: script, atomically: true, encoding: .utf8)
        try stage([script], for: interpreter)

        let output = scratchFile("sid313.folded")
        let result = try runPyBPFProf(["record", "--rate", "499", "-o", output, "--format", "folded", "--"]
            + interpreter.command([script])).requireSuccess()
        var total = 0, mismatched = 0, inLeaf = 0, notLoaded = 0, spliced = 0
        for line in try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n") {
            guard let space = line.lastIndex(of: " "), let count = Int(line[line.index(after: space)...]) else { continue }
            let frames = line[..<space].split(separator: ";").map(String.init)
            total += count
            if frames.contains("[python/native mismatch]") { mismatched += count }
            let python = frames.filter { $0.contains("(\(script):") }.map { String($0.prefix { $0 != " " }) }
            guard python.last == "leaf" else { continue }
            inLeaf += count
            // Sampled before the binary's unwind tables were loaded: Python frames only, said so.
            if frames.first == nativeFramesNotLoadedMarker {
                notLoaded += count
                continue
            }
            // Native frames first (the process's entry), then the Python frames, nothing after `leaf` but the kernel's.
            if python == ["<module>", "top", "middle", "leaf"], frames.first?.hasPrefix("__libc_start_main") == true {
                spliced += count
            }
        }
        print("  sid python3.13: \(total) samples, \(mismatched) [python/native mismatch]; in leaf() \(inLeaf): "
            + "\(spliced) spliced exactly, \(notLoaded) before the native tables were loaded\n    \(result.recordingSummary)")
        XCTAssertEqual(mismatched, 0, result.report)
        XCTAssertGreaterThan(spliced, 200, result.report)
        XCTAssertEqual(spliced, inLeaf - notLoaded, "samples in leaf() whose stack is not __libc_start_main … <module>;top;middle;leaf\n" + result.report)
    }
}
