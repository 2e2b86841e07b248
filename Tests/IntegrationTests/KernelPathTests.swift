import Foundation
import XCTest

/// `--version` and the summary say how the running kernel runs the BPF program, from what it offers (probed).
final class KernelPathTests: IntegrationTestCase {
    private var release: String {
        var names = utsname()
        uname(&names)
        return withUnsafeBytes(of: names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// This machine's kernel has bpf_loop and bpf_task_pt_regs: the loop walk, and no limits to state.
    func testVersionNamesTheKernelAndItsPath() throws {
        let result = try runPyBPFProf(["--version"]).requireSuccess()
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2, result.report)
        XCTAssertTrue(lines.first?.hasPrefix("pybpfprof ") ?? false, result.report)
        XCTAssertEqual(lines.last, "kernel \(release): bpf_loop walk, 256 native and 256 Python frames", result.report)
    }

    /// `--oldest-kernel-mode` loads the 5.10 path, and the summary says so with its limits, and the verifier's cost of
    /// each program it loaded.
    func testSummarySaysThePathAndTheVerifiersCost() throws {
        let output = scratchFile("oldest.folded")
        let result = try runPyBPFProf([
            "record", "--oldest-kernel-mode", "--bpf-stats", "--rate", "199", "-o", output, "--",
        ] + PythonInterpreters.debian311().command(["-c", "sum(range(3_000_000))"])).requireSuccess()
        XCTAssertTrue(result.standardError.contains(
            "kernel \(release): tail-call walk, 16 native and 32 Python frames per call, 256 and 256 at most; "
                + "user registers from the kernel stack; native stacks for 512 processes at most"), result.report)
        guard let verifier = result.standardError.split(separator: "\n").first(where: { $0.hasPrefix("BPF verifier: ") }) else {
            return XCTFail("no verifier line\n\(result.report)")
        }
        // Only the variants this path loads.
        for program in ["on_sample", "unwind_native_bounded", "walk_python_bounded", "on_exec", "on_fork", "on_exit"] {
            XCTAssertTrue(verifier.contains(" \(program) "), "\(program) missing: \(verifier)")
        }
        XCTAssertFalse(verifier.contains("_loop"), "a bpf_loop variant was loaded too: \(verifier)")
    }
}
