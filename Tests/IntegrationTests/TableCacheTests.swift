import Foundation
import XCTest

/// `--table-cache`: a second recording of a process takes every table from the cache, with native stacks as complete
/// as the first's; a damaged entry is compiled again and says so; a directory others can write to is not used.
final class TableCacheTests: IntegrationTestCase {
    private static let busyLoop = """
        import sys
        print("ready", flush=True)
        def spin():
            total = 0
            while True:
                for number in range(10000):
                    total += number
        spin()
        """

    /// `record --pid` of the busy loop with the cache in `directory`: the summary's `unwind tables:` line, and the
    /// result.
    private func record(_ pid: Int32, cache directory: String) throws -> (tables: String, result: ProcessResult) {
        let output = scratchFile("cache-\(UInt32.random(in: 0...UInt32.max)).folded")
        let result = try runPyBPFProf(["record", "--pid", "\(pid)", "--rate", "499", "--duration", "1", "--table-cache", directory,
                                       "-o", output]).requireSuccess()
        let tables = try XCTUnwrap(result.standardErrorLines.first { $0.hasPrefix("unwind tables: ") }, result.report)
        // Once the tables are in, every sample is unwound through libpython to the thread's entry.
        let loaded = try FoldedFile.stacks(at: output).filter { !$0.nativeFramesNotLoaded }
        let samples = loaded.reduce(0) { $0 + $1.count }
        let whole = loaded.filter { stack in
            stack.pythonFrames.last?.name == "spin" && stack.frames.contains { $0.name == "__libc_start_main" }
        }.reduce(0) { $0 + $1.count }
        print("  \(tables): \(whole) of \(samples) samples with native frames unwound from spin to __libc_start_main")
        XCTAssertGreaterThan(samples, 100, result.report)
        XCTAssertGreaterThanOrEqual(Double(whole) / Double(max(samples, 1)), 0.95, result.report)
        return (tables, result)
    }

    private func files(in tables: String) throws -> (files: Int, cached: Int) {
        // unwind tables: 6 files (6 from the cache), 106224 rows, 0.8 of 16.0 MiB
        let words = tables.split(separator: " ")
        let files = try XCTUnwrap(Int(words[2]), tables)
        let cached = tables.contains("from the cache") ? try XCTUnwrap(Int(words[4].dropFirst()), tables) : 0
        return (files, cached)
    }

    func testSecondRecordingTakesEveryTableFromTheCache() throws {
        let script = scratchFile("busy_loop.py")
        try Self.busyLoop.write(toFile: script, atomically: true, encoding: .utf8)
        let running = try start(try PythonInterpreters.pyenv("3.12").command([script]))
        try running.waitForLine("ready", timeout: 30)
        let directory = scratchFile("tables")

        let first = try files(in: try record(running.pid, cache: directory).tables)
        XCTAssertGreaterThanOrEqual(first.files, 4, "python3.12, libpython, libc, ld.so at least")
        XCTAssertEqual(first.cached, 0)
        let entries = try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasPrefix(".") }
        XCTAssertEqual(entries.count, first.files, "one entry per file with a table: \(entries)")

        let second = try files(in: try record(running.pid, cache: directory).tables)
        XCTAssertEqual(second.files, first.files)
        XCTAssertEqual(second.cached, first.files, "every table from the cache")

        // The largest entry (libpython's) damaged: found, deleted, compiled again, the recording as complete.
        let largest = try XCTUnwrap(entries.max { try sizeOf(directory + "/" + $0) < sizeOf(directory + "/" + $1) })
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: directory + "/" + largest))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: directory + "/" + largest))
        let (tables, result) = try record(running.pid, cache: directory)
        let third = try files(in: tables)
        XCTAssertEqual(third.cached, first.files - 1, tables)
        XCTAssertTrue(result.standardErrorLines.contains("  unwind-table cache: 1 damaged entry deleted and compiled again"), result.report)

        // A directory others can write to is not used, and the recording says why.
        XCTAssertEqual(chmod(directory, 0o777), 0)
        let (_, untrusted) = try record(running.pid, cache: directory)
        XCTAssertTrue(untrusted.standardErrorLines.contains { $0.hasPrefix("  unwind-table cache: not used: ") && $0.contains("writable by others") },
                      untrusted.report)
        running.killIfRunning()
    }

    private func sizeOf(_ path: String) throws -> Int {
        try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
    }
}
