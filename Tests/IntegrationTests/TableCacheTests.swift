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
        let entries = try self.entries(in: directory, kind: Self.tableMagic)
        XCTAssertEqual(entries.count, first.files, "one entry per file with a table: \(entries)")
        XCTAssertEqual(try self.entries(in: directory, kind: Self.kernelSymbolsMagic).count, 1, "and the kernel's symbols")

        let second = try files(in: try record(running.pid, cache: directory).tables)
        XCTAssertEqual(second.files, first.files)
        XCTAssertEqual(second.cached, first.files, "every table from the cache")

        // The largest entry (libpython's) damaged: found, deleted, compiled again, the recording as complete.
        let largest = try XCTUnwrap(entries.max { try sizeOf($0) < sizeOf($1) })
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: largest))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: largest))
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

    /// The kernel's symbols are read from /proc/kallsyms once a boot (some 80 ms of every start), then from the cache
    /// directory: the same kernel frames named either way, and a damaged or untrusted entry read again and replaced.
    func testKernelSymbolsComeFromTheCacheAfterTheFirstRecording() throws {
        let fixture = Checkout.root.appendingPathComponent("Tests/IntegrationTests/Fixtures/syscall_workload.py").path
        let running = try start(try PythonInterpreters.pyenv("3.12").command([fixture, "600"]))
        defer { running.killIfRunning() }
        let directory = scratchFile("symbols")
        /// The kernel functions under the workload's read(2), as one recording names them; and the cache entry after it.
        func recordKernelFrames() throws -> (names: Set<String>, entry: String, created: String) {
            let output = scratchFile("kernel-\(UInt32.random(in: 0...UInt32.max)).folded")
            let result = try runPyBPFProf(["record", "--pid", "\(running.pid)", "--rate", "499", "--duration", "1",
                                           "--table-cache", directory, "-o", output]).requireSuccess()
            let names = Set(try FoldedFile.stacks(at: output).filter { $0.pythonFrames.last?.name == "read_zeros" }
                .flatMap { $0.frames.filter { $0.name.hasSuffix("_[k]") }.map(\.name) })
            XCTAssertTrue(names.contains("__x64_sys_read_[k]") || names.contains("ksys_read_[k]"), "\(names.sorted())\n\(result.report)")
            XCTAssertFalse(names.contains { $0.hasPrefix("[kernel 0x") }, "unnamed kernel frames: \(names.sorted())")
            let entries = try self.entries(in: directory, kind: Self.kernelSymbolsMagic)
            XCTAssertEqual(entries.count, 1, "one entry for this boot's symbols: \(entries)")
            let entry = try XCTUnwrap(entries.first)
            // Its inode and birth time (in nanoseconds) tell a file written anew (renamed into place) from one read and
            // touched: a freed inode's number is soon used again.
            let created = try run("/usr/bin/stat", ["-c", "%i %w", entry]).requireSuccess().standardOutput
            return (names, entry, created)
        }
        let first = try recordKernelFrames()
        let second = try recordKernelFrames()
        XCTAssertEqual(second.created, first.created, "the second recording read the entry and did not write it again")

        // Damaged: read from /proc/kallsyms again, the entry replaced by a whole one (a new file, renamed into place).
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: first.entry))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: first.entry))
        let third = try recordKernelFrames()
        XCTAssertNotEqual(third.created, first.created, "the damaged entry should have been replaced")
        XCTAssertNotEqual(FileManager.default.contents(atPath: third.entry), bytes)
        // Writable by others: not trusted, replaced.
        XCTAssertEqual(chmod(third.entry, 0o666), 0)
        let fourth = try recordKernelFrames()
        XCTAssertNotEqual(fourth.created, third.created, "an entry others could have written should have been replaced")
        let mode = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: fourth.entry)[.posixPermissions] as? Int)
        XCTAssertEqual(mode, 0o600)
    }

    private static let tableMagic = "PYBPFUT", kernelSymbolsMagic = "PYBPFKS"

    /// The paths of the cache entries of one kind (their first bytes).
    private func entries(in directory: String, kind magic: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasPrefix(".") }.map { directory + "/" + $0 }
            .filter { FileHandle(forReadingAtPath: $0).map { String(decoding: $0.readData(ofLength: 7), as: UTF8.self) == magic } ?? false }
    }

    private func sizeOf(_ path: String) throws -> Int {
        try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
    }
}
