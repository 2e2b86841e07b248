import Foundation
import Native
import XCTest

/// Interpreters pybpfprof must refuse rather than walk with offsets that do not fit them: a version newer than it
/// knows, a free-threaded build, a process whose `_Py_DebugOffsets` describe other structs. No such interpreter is
/// installed here, so the tests run real interpreters whose binaries are copies with the few bytes that say so
/// changed: what pybpfprof reads is exactly what such a build would show it, and the interpreter still runs.
final class VersionRefusalTests: IntegrationTestCase {
    /// Debian's static 3.11 whose `Py_Version` says 3.16.0: named, refused, and the way out said, in one line.
    func testNewerVersionIsRefusedInOneLine() throws {
        let binary = scratchFile("python3.16")
        try FileManager.default.copyItem(atPath: try PythonInterpreters.debian311().path, toPath: binary)
        try BinaryPatch.write([0xf0, 0x00, 0x10, 0x03], atSymbol: "Py_Version", in: binary)  // PY_VERSION_HEX 3.16.0
        let python = try start(binary, ["-c", "import sys, time; print('ready'); sys.stdout.flush(); time.sleep(60)"])
        try python.waitForLine("ready", timeout: 30)
        let result = try runPyBPFProf(["record", "--pid", "\(python.pid)", "--duration", "1", "-o", scratchFile("out.folded")])
        assertCleanError(result, keywords: ["\(python.pid)", "Python 3.16.0", "does not support", "upgrade pybpfprof"])
    }

    /// A launched command running a version pybpfprof does not know runs to its end, then the version is named.
    func testCommandRunningNewerVersionRunsToItsEndThenNamesIt() throws {
        let binary = scratchFile("python3.16")
        try FileManager.default.copyItem(atPath: try PythonInterpreters.debian311().path, toPath: binary)
        try BinaryPatch.write([0xf0, 0x00, 0x10, 0x03], atSymbol: "Py_Version", in: binary)
        let marker = scratchFile("ran-to-its-end")
        let result = try runPyBPFProf(["record", "-o", scratchFile("out.folded"), "--", binary, "-c",
                                       "open('\(marker)', 'w').write('done')"])
        assertCleanError(result, keywords: ["Python 3.16.0", "does not support"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: marker), "the command should have run to its end: \(result.report)")
    }

    /// Debian sid's 3.14 whose `_Py_DebugOffsets.free_threaded` is set: refused in one line that says why.
    func testFreeThreadedBuildIsRefusedInOneLine() throws {
        let result = try recordPatchedSid314 { offsets in offsets.freeThreaded = 1 }
        assertCleanError(result, keywords: ["free-threaded", "Python 3.14", "python3.14t"])
    }

    /// Debian sid's 3.14 whose `_Py_DebugOffsets` put `thread_state.current_frame` past the end of its PyThreadState:
    /// a layout pybpfprof does not know, refused rather than read.
    func testDebugOffsetsOutsideTheirStructAreRefusedInOneLine() throws {
        let result = try recordPatchedSid314 { offsets in offsets.currentFrame = 100_000 }
        assertCleanError(result, keywords: ["Python 3.14", "_Py_DebugOffsets", "thread_state.current_frame", "upgrade pybpfprof"])
    }

    // MARK: - Helpers

    private struct DebugOffsetsPatch {
        var freeThreaded: UInt64?
        var currentFrame: UInt64?
    }

    /// Records `--pid` of sid's python3.14, copied into the root with its `_Py_DebugOffsets` (every copy in the
    /// file: the `.PyRuntime` section and the initializer the runtime may copy from) changed by `change`.
    private func recordPatchedSid314(_ change: (inout DebugOffsetsPatch) -> Void) throws -> ProcessResult {
        let root = try XCTUnwrap(try PythonInterpreters.debianRoot("sid", "3.14").root)
        let name = "python3.14-patched-\(getpid())-\(UUID().uuidString.prefix(8))"
        let binary = root + "/tmp/" + name
        try FileManager.default.copyItem(atPath: root + "/usr/bin/python3.14", toPath: binary)
        defer { try? FileManager.default.removeItem(atPath: binary) }
        var patch = DebugOffsetsPatch()
        change(&patch)
        // 3.14's layout (Scripts/gen-offsets: free_threaded at 16, thread_state.current_frame at 208).
        var data = try Data(contentsOf: URL(fileURLWithPath: binary))
        let cookie = Data("xdebugpy".utf8)
        var found = 0
        var searchStart = data.startIndex
        while let range = data.range(of: cookie, in: searchStart..<data.endIndex) {
            let version = data.subdata(in: range.lowerBound + 8..<range.lowerBound + 16).withUnsafeBytes { $0.load(as: UInt64.self) }
            if version >> 16 == 0x030e {  // PY_VERSION_HEX 3.14: the struct, not a string that mentions the cookie
                func put(_ value: UInt64?, at offset: Int) {
                    guard let value else { return }
                    withUnsafeBytes(of: value.littleEndian) { data.replaceSubrange(range.lowerBound + offset..<range.lowerBound + offset + 8, with: $0) }
                }
                put(patch.freeThreaded, at: 16)
                put(patch.currentFrame, at: 208)
                found += 1
            }
            searchStart = range.upperBound
        }
        XCTAssertGreaterThan(found, 0, "no _Py_DebugOffsets of 3.14 in \(root)/usr/bin/python3.14")
        try data.write(to: URL(fileURLWithPath: binary))
        chmod(binary, 0o755)

        let python = try start("/usr/sbin/chroot", [root, "/tmp/" + name, "-c",
                                                    "import sys, time; print('ready'); sys.stdout.flush(); time.sleep(60)"])
        try python.waitForLine("ready", timeout: 30)
        return try runPyBPFProf(["record", "--pid", "\(python.pid)", "--duration", "1", "-o", scratchFile("out.folded")])
    }
}

/// Byte patches of a copied binary.
enum BinaryPatch {
    /// Overwrites the start of a symbol's data in an ELF file, found through its symbol table and load segments.
    static func write(_ bytes: [UInt8], atSymbol name: String, in path: String) throws {
        let elf = try ELFFile(path: path)
        guard let symbol = elf.symbol(named: name),
              let segment = elf.loadSegments.first(where: {
                  symbol.value >= $0.virtualAddress && symbol.value + UInt64(bytes.count) <= $0.virtualAddress + $0.fileSize
              })
        else { throw IntegrationError("\(path) has no \(name) in a loaded part of the file") }
        let offset = Int(segment.offset + (symbol.value - segment.virtualAddress))
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: Data(bytes))
    }
}
