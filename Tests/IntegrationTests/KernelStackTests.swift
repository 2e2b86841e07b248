import Foundation
import XCTest

/// A workload that spends its time in a system call shows the kernel's frames under the Python frame
/// that made the call (with libc's native frames in between); --python-only leaves them out.
final class KernelStackTests: IntegrationTestCase {
    private var fixture: String {
        Checkout.root.appendingPathComponent("Tests/IntegrationTests/Fixtures/syscall_workload.py").path
    }

    /// Kernel frames in folded output carry the `_[k]` suffix flame graph tools colour as kernel.
    private func isKernel(_ frame: ProfileFrame) -> Bool { frame.name.hasSuffix("_[k]") }

    func testSystemCallShowsKernelFramesUnderPythonFrame() throws {
        try checkKernelFramesUnderPythonFrame()
    }

    /// The same with the user registers of a thread sampled in the kernel read from the top of its kernel stack, as
    /// on kernels without bpf_task_pt_regs (5.10).
    func testSystemCallShowsKernelFramesUnderPythonFrameInOldestKernelMode() throws {
        try checkKernelFramesUnderPythonFrame(options: ["--oldest-kernel-mode"])
    }

    private func checkKernelFramesUnderPythonFrame(options: [String] = []) throws {
        let output = scratchFile("syscall.folded")
        // 3 s of CPU time: about 1500 samples, of which those taken while the binary's tables compile (0.5-1 s here,
        // more on a loaded machine) have no native frames.
        let result = try runPyBPFProf(["record"] + options + [
            "--rate", "499", "-o", output, "--",
        ] + PythonInterpreters.debian311().command([fixture, "3"])).requireSuccess()
        if !options.isEmpty {
            XCTAssertTrue(result.standardError.contains("user registers from the kernel stack"), "the summary should name the path\n\(result.report)")
        }
        let stacks = try FoldedFile.stacks(at: output)
        // Samples taken while the native tables were still being compiled (the launch's first moments) carry no
        // native frames, and say so.
        let inReadZeros = stacks.filter {
            $0.frames.contains { $0.name == "read_zeros" } && $0.frames.first?.name != nativeFramesNotLoadedMarker
        }
        let samples = inReadZeros.reduce(0) { $0 + $1.count }
        var withKernelBelow = 0
        for stack in inReadZeros {
            let firstKernel = stack.frames.firstIndex(where: isKernel)
            // Python frames are never below a kernel frame.
            if let firstKernel {
                XCTAssertFalse(stack.frames[firstKernel...].contains { !isKernel($0) }, "Python frame below kernel frames: \(stack.frames)")
            }
            // The nearest Python frame above the kernel's is the function that made the call; between them
            // native code (libc's read), unwound from the user registers saved at the system call.
            if let firstKernel, let python = stack.frames[..<firstKernel].lastIndex(where: \.isPython),
               stack.frames[python].name == "read_zeros", python + 1 < firstKernel,
               stack.frames[(python + 1)..<firstKernel].allSatisfy({ !$0.file.isEmpty && !$0.isPython }) {
                withKernelBelow += stack.count
            }
        }
        let kernelNames = Set(inReadZeros.flatMap { $0.frames.filter(isKernel).map(\.name) })
        print("  \(samples) samples in read_zeros, \(withKernelBelow) with native and then kernel frames under it; "
            + "kernel functions include \(kernelNames.sorted().prefix(6))")
        print("    \(result.recordingSummary)")
        XCTAssertGreaterThan(samples, 500, result.report)
        XCTAssertGreaterThan(Double(withKernelBelow) / Double(samples), 0.8, "most of read_zeros' time is in read(2)")
        XCTAssertTrue(kernelNames.contains("vfs_read_[k]") || kernelNames.contains("ksys_read_[k]"),
                      "the read(2) path should be named: \(kernelNames.sorted())")
    }

    func testPythonOnlyHasNoKernelFrames() throws {
        let output = scratchFile("python-only.folded")
        try runPyBPFProf([
            "record", "--python-only", "--rate", "499", "-o", output, "--",
        ] + PythonInterpreters.debian311().command([fixture, "1"])).requireSuccess()
        let stacks = try FoldedFile.stacks(at: output)
        XCTAssertGreaterThan(stacks.reduce(0) { $0 + $1.count }, 200)
        XCTAssertFalse(stacks.contains { $0.frames.contains(where: isKernel) }, "--python-only wrote kernel frames")
        XCTAssertTrue(stacks.contains { $0.frames.last?.name == "read_zeros" })
    }
}
