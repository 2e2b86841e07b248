import Foundation
import XCTest

@testable import Native

/// Prints the peak RSS (and CPU time) of what the profiler builds from one file when it first maps (its unwind table
/// and symbol index), to compare ways of reading ELF files. A measurement, not a check: it runs only when
/// `PYBPFPROF_MEASURE_ELF` names a file, and alone in its process (`swift test --filter ELFMemoryMeasurement`), since
/// peak RSS is per process.
final class ELFMemoryMeasurement: XCTestCase {
    func testPeakRSSOfUnwindTableAndSymbolIndex() throws {
        guard let path = ProcessInfo.processInfo.environment["PYBPFPROF_MEASURE_ELF"], !path.isEmpty else {
            throw XCTSkip("set PYBPFPROF_MEASURE_ELF to the file to measure")
        }
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        // Start from the current RSS, without the heap's free pages (which would absorb allocations unseen) or the
        // test runner's own peak. getrusage's maxrss cannot be reset this way, and `swift test` passes its own
        // through exec; /proc/self/status's VmHWM can.
        if let trim = dlsym(nil, "malloc_trim") {  // not in the Glibc module
            _ = unsafeBitCast(trim, to: (@convention(c) (Int) -> Int32).self)(0)
        }
        try "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        let before = try memoryStatus("VmHWM")
        let startTime = threadCPUSeconds()
        let elf = try ELFFile(path: path)
        let table = try UnwindTable(elf: elf)
        let symbolizer = NativeFileSymbolizer(file: elf, path: path)
        let after = try memoryStatus("VmHWM")
        let cpuSeconds = threadCPUSeconds() - startTime
        print("""
            ELF memory: \(path), \(size >> 20) MiB: RSS \(before) MiB before, peak \(after) MiB, +\(after - before) MiB, \
            \(String(format: "%.2f", cpuSeconds)) s of CPU \
            (\(table.entries.count) unwind entries, \(elf.symbols().count) symbols, debug file \(symbolizer.debugFilePath ?? "none"))
            """)
    }

    private func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// A `/proc/self/status` field, in MiB.
    private func memoryStatus(_ field: String) throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix(field + ":") })
        return try XCTUnwrap(Int(line.split(separator: " ", omittingEmptySubsequences: true).dropLast().last ?? "")) >> 10
    }
}
