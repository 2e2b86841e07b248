import Foundation
import XCTest

@testable import Native

/// Building a file's unwind table and symbol index reads the sections it needs, not the whole file: what a host with
/// 1-2 GB CUDA or PyTorch libraries under `--all` relies on. Measured on the largest binary the test machine has
/// (Chromium's, 282 MiB; Scripts/setup --tests installs it): the peak RSS this adds must stay far below the file's size
/// (13 MiB measured, against 296 MiB when files were read whole).
final class ELFMemoryTests: XCTestCase {
    static let largeBinary = "/usr/lib/chromium/chromium"

    func testLargeBinaryIsNotHeldInMemory() throws {
        guard FileManager.default.fileExists(atPath: Self.largeBinary) else {
            XCTFail("\(Self.largeBinary) is missing: run Scripts/setup --tests")
            return
        }
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: Self.largeBinary)[.size] as? Int) >> 20
        // From the current RSS, without the heap's free pages (which would absorb allocations unseen) or the test
        // runner's peak so far: /proc/self/status's VmHWM is reset by writing 5 to clear_refs.
        if let trim = dlsym(nil, "malloc_trim") {  // not in the Glibc module
            _ = unsafeBitCast(trim, to: (@convention(c) (Int) -> Int32).self)(0)
        }
        try "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        let before = try memoryStatus("VmHWM")
        let elf = try ELFFile(path: Self.largeBinary)
        let table = try UnwindTable(elf: elf)
        let symbolizer = NativeFileSymbolizer(file: elf, path: Self.largeBinary)
        let peak = try memoryStatus("VmHWM")
        print("  \(Self.largeBinary), \(size) MiB: peak RSS +\(peak - before) MiB (\(table.entries.count) unwind entries, "
              + "\(elf.symbols().count) symbols, debug file \(symbolizer.debugFilePath ?? "none"))")
        XCTAssertLessThan(peak - before, size / 4, "building the table and symbols of a \(size) MiB file held most of it")
    }

    /// A `/proc/self/status` field, in MiB.
    private func memoryStatus(_ field: String) throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix(field + ":") })
        return try XCTUnwrap(Int(line.split(separator: " ", omittingEmptySubsequences: true).dropLast().last ?? "")) >> 10
    }
}
