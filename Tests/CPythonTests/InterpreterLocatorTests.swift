@testable import CPython
import Foundation
import Native
import XCTest

/// Locates the interpreter of live processes of every test CPython: the file that holds it, the version
/// read from the binary, and `_PyRuntime`'s runtime address.
final class InterpreterLocatorTests: XCTestCase {
    private var processes: [Process] = []

    override func tearDown() {
        for process in processes where process.isRunning { process.terminate() }
        processes = []
    }

    private func startSleeping(_ python: String) throws -> (Int32, String) { try startSleeping([python]) }

    private func startSleeping(_ command: [String]) throws -> (Int32, String) {
        let (process, version) = try TestInterpreters.startSleeping(command)
        processes.append(process)
        return (process.processIdentifier, version)
    }

    private func checkLocates(_ python: String, binaryContains: String) throws { try checkLocates([python], binaryContains: binaryContains) }

    private func checkLocates(_ command: [String], binaryContains: String) throws {
        let python = command.joined(separator: " ")
        let (pid, version) = try startSleeping(command)
        let interpreter = try InterpreterLocator.locate(pid: pid)
        XCTAssertEqual(interpreter.version.description, version, python)
        XCTAssertTrue(interpreter.binaryPath.contains(binaryContains), "\(interpreter.binaryPath) for \(python)")
        XCTAssertEqual("\(interpreter.offsets.major).\(interpreter.offsets.minor)", version.split(separator: ".").prefix(2).joined(separator: "."))
        XCTAssertEqual(interpreter.debugOffsetsMismatch, [], "\(python): _Py_DebugOffsets disagrees with the table")
        // _PyRuntime.interpreters.head points at the main interpreter once Python runs.
        let head = try ProcessMemory(pid: pid).readUInt64(interpreter.interpretersHeadAddress)
        XCTAssertNotEqual(head, 0, "\(python): interpreters.head is NULL")
        // Every build here exports PyCode_Type, stripped ones too (it is public API).
        let codeType = try XCTUnwrap(interpreter.codeTypeAddress, "\(python): no PyCode_Type")
        let typeName = try ProcessMemory(pid: pid).readUInt64(codeType + 24)  // tp_name
        XCTAssertEqual(String(decoding: try ProcessMemory(pid: pid).read(typeName, count: 5), as: UTF8.self), "code\0")
    }

    /// Debian's own builds (stripped, static), each in its root: 3.13 in trixie (Debian 13) and sid, 3.14 and 3.15 in sid.
    func testDebianBuilds() throws {
        try checkLocates(try TestInterpreters.debian("trixie", "3.13"), binaryContains: "/usr/bin/python3.13")
        for minor in ["3.13", "3.14", "3.15"] {
            try checkLocates(try TestInterpreters.debian("sid", minor), binaryContains: "/usr/bin/python\(minor)")
        }
    }

    /// pyenv's builds keep their full symbol table: 2.7's and 3.6's list start, the static interp_head, is found in it.
    func testPyenvVersions() throws {
        for minor in ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"] {
            try checkLocates(try TestInterpreters.pyenv(minor), binaryContains: "libpython\(minor)")
        }
    }

    /// Debian's build links libpython statically into the executable.
    func testDebianStaticPython() throws {
        try checkLocates("/usr/bin/python3.11", binaryContains: "/usr/bin/python3.11")
    }

    /// A version newer than the table knows (no such interpreter runs here: the locator's decision, on a live process's
    /// runtime) is refused by name, never walked with another version's offsets.
    func testNewerVersionIsRefusedByName() throws {
        let (pid, _) = try startSleeping(try TestInterpreters.pyenv("3.13"))
        let located = try InterpreterLocator.locate(pid: pid)
        XCTAssertThrowsError(try InterpreterLocator.interpreter(
            pid: pid, path: located.binaryPath, version: PythonVersion(major: 3, minor: 16, micro: 0),
            runtimeSymbol: ("_PyRuntime", located.runtimeAddress), bias: 0, codeTypeAddress: nil)) { error in
            XCTAssertEqual(error as? InterpreterError, .unsupportedVersion(pid: pid, version: "3.16.0"))
        }
        // A 3.6 binary's list start named as 3.7's would be read at the wrong place: refused too.
        XCTAssertThrowsError(try InterpreterLocator.interpreter(
            pid: pid, path: located.binaryPath, version: PythonVersion(major: 3, minor: 7, micro: 3),
            runtimeSymbol: ("interp_head", located.runtimeAddress), bias: 0, codeTypeAddress: nil))
    }

    func testNotPythonAndGone() throws {
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["60"]
        try sleeper.run()
        processes.append(sleeper)
        XCTAssertThrowsError(try InterpreterLocator.locate(pid: sleeper.processIdentifier)) { error in
            XCTAssertEqual(error as? InterpreterError, .notPython(pid: sleeper.processIdentifier))
        }
        sleeper.terminate()
        sleeper.waitUntilExit()
        XCTAssertThrowsError(try InterpreterLocator.locate(pid: sleeper.processIdentifier)) { error in
            XCTAssertEqual(error as? InterpreterError, .processGone(pid: sleeper.processIdentifier))
        }
    }
}

/// `_Py_DebugOffsets` as real 3.13, 3.14 and 3.15 processes publish it (each minor lays the struct out its own way),
/// and what happens when it disagrees with the table or describes structs pybpfprof does not know.
final class DebugOffsetsTests: XCTestCase {
    func testPyenv3_13() throws { try checkDebugOffsets(try TestInterpreters.pyenv("3.13"), minor: 13) }
    func testDebianSid3_14() throws { try checkDebugOffsets(try TestInterpreters.debian("sid", "3.14"), minor: 14) }
    func testDebianSid3_15() throws { try checkDebugOffsets(try TestInterpreters.debian("sid", "3.15"), minor: 15) }

    private func checkDebugOffsets(_ python: String, minor: Int) throws { try checkDebugOffsets([python], minor: minor) }

    private func checkDebugOffsets(_ command: [String], minor: Int) throws {
        let (process, _) = try TestInterpreters.startSleeping(command)
        defer { process.terminate() }
        let interpreter = try InterpreterLocator.locate(pid: process.processIdentifier)
        let table = try XCTUnwrap(PythonOffsets.forVersion(major: 3, minor: minor))
        let layout = try XCTUnwrap(table.debugOffsets)
        let published = try ProcessMemory(pid: process.processIdentifier).read(interpreter.runtimeAddress, count: layout.size)
        func with(_ value: UInt64, at position: Int) -> [UInt8] {
            var bytes = published
            withUnsafeBytes(of: value) { bytes.replaceSubrange(position..<position + 8, with: $0) }
            return bytes
        }

        var offsets = table
        XCTAssertEqual(try DebugOffsets.reconcile(&offsets, layout: layout, debugOffsets: published), [])
        XCTAssertEqual(offsets, table)

        // A build whose thread_id moved (a patch release, py-spy's issue 852): the process's value is used, and said.
        let moved = table.tstateThreadId + 8
        XCTAssertEqual(
            try DebugOffsets.reconcile(&offsets, layout: layout, debugOffsets: with(UInt64(moved), at: layout.tstateThreadId)),
            ["thread_state.thread_id: table \(table.tstateThreadId), process \(moved)"])
        XCTAssertEqual(offsets.tstateThreadId, moved)

        // The word holding holds_gil, where the process publishes it (3.13: the _status word; 3.15: holds_gil), is the
        // process's too; 3.14 publishes it nowhere.
        offsets = table
        if let position = layout.tstateHoldsGIL {
            let word = try XCTUnwrap(table.tstateHoldsGIL) + 4
            XCTAssertEqual(
                try DebugOffsets.reconcile(&offsets, layout: layout, debugOffsets: with(UInt64(word), at: position)),
                ["\(minor == 13 ? "thread_state.status" : "thread_state.holds_gil"): table \(word - 4), process \(word)"])
            XCTAssertEqual(offsets.tstateHoldsGIL, word)
        } else {
            XCTAssertEqual(minor, 14)
        }
        // The GIL's fields are published relative to the interpreter: their differences are the struct's offsets.
        offsets = table
        let gil = try XCTUnwrap(published.uint64(at: layout.interpGIL))
        XCTAssertEqual(
            try DebugOffsets.reconcile(&offsets, layout: layout, debugOffsets: with(gil + 24, at: layout.interpGILLocked)),
            ["gil_runtime_state.locked: table \(try XCTUnwrap(table.gilLocked)), process 24"])
        XCTAssertEqual(offsets.gilLocked, 24)

        // Values that do not fit the structs they describe are a layout this pybpfprof does not know: refused.
        let tstateSize = Int(try XCTUnwrap(published.uint64(at: layout.tstateSize)))
        offsets = table
        XCTAssertThrowsError(try DebugOffsets.reconcile(
            &offsets, layout: layout, debugOffsets: with(UInt64(tstateSize), at: layout.tstateCurrentFrame))) { error in
            XCTAssertEqual((error as? DebugOffsets.DebugOffsetsError)?.kind, .unknownLayout, "\(error)")
        }
        // A frame whose owner lies beyond what the BPF program reads of a frame.
        XCTAssertThrowsError(try DebugOffsets.reconcile(
            &offsets, layout: layout,
            debugOffsets: with(UInt64(PythonOffsets.frameReadLimit + 8), at: layout.frameOwner))) { error in
            XCTAssertEqual((error as? DebugOffsets.DebugOffsetsError)?.kind, .unknownLayout, "\(error)")
        }
        // A free-threaded build (3.13t+) has another object layout.
        XCTAssertThrowsError(try DebugOffsets.reconcile(&offsets, layout: layout, debugOffsets: with(1, at: layout.freeThreaded))) { error in
            XCTAssertEqual((error as? DebugOffsets.DebugOffsetsError)?.kind, .freeThreaded, "\(error)")
        }
        var noCookie = published
        noCookie[0] = 0
        XCTAssertThrowsError(try DebugOffsets.reconcile(&offsets, layout: layout, debugOffsets: noCookie))
    }

    /// What a user reads for each refusal: one line naming the process, the version and what to do.
    func testRefusalsAreOneLine() {
        let messages = [
            InterpreterError.freeThreaded(pid: 42, version: PythonVersion(major: 3, minor: 14, micro: 2)).description,
            InterpreterError.unknownLayout(pid: 42, version: PythonVersion(major: 3, minor: 14, micro: 2), detail: "thread_state.current_frame at 832 is outside its 832-byte struct").description,
            InterpreterError.unsupportedVersion(pid: 42, version: "3.16.0").description,
        ]
        for message in messages {
            XCTAssertFalse(message.contains("\n"), message)
            XCTAssertTrue(message.hasPrefix("process 42 runs "), message)
        }
        XCTAssertTrue(messages[0].contains("free-threaded") && messages[0].contains("python3.14t"), messages[0])
        XCTAssertTrue(messages[1].contains("upgrade pybpfprof"), messages[1])
        XCTAssertTrue(messages[2].contains("Python 3.16.0") && messages[2].contains("3.15)") && messages[2].contains("upgrade pybpfprof"), messages[2])
    }
}

extension InterpreterLocatorTests {
    /// The executable first, then libpython, then other files, extension modules last: a process with numpy and
    /// onnxruntime imported maps dozens of `.cpython-312-…so` files, and opening each before libpython cost 160 ms.
    func testCandidateFilesPutExtensionModulesLast() {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/proc/self/exe"
        let paths = [
            "/venv/lib/python3.12/site-packages/numpy/_core/_multiarray_umath.cpython-312-x86_64-linux-gnu.so",
            "/venv/lib/python3.12/site-packages/pydantic_core/_pydantic_core.abi3.so",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/opt/python/lib/libpython3.12.so.1.0",
            "/usr/lib/x86_64-linux-gnu/libboost_python312.so.1.83.0",
            executable,
        ]
        let text = paths.enumerated().map { index, path in
            String(format: "%08x-%08x r-xp 00000000 08:01 %d %@", 0x1000 * (index + 1), 0x1000 * (index + 1) + 0x800, 100 + index, path)
        }.joined(separator: "\n")
        let ranked = InterpreterLocator.candidateFiles(pid: getpid(), mappings: MemoryMapping.parse(text)).map(\.0)
        XCTAssertEqual(ranked, [
            executable,
            "/opt/python/lib/libpython3.12.so.1.0",
            "/usr/lib/x86_64-linux-gnu/libboost_python312.so.1.83.0",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/venv/lib/python3.12/site-packages/numpy/_core/_multiarray_umath.cpython-312-x86_64-linux-gnu.so",
            "/venv/lib/python3.12/site-packages/pydantic_core/_pydantic_core.abi3.so",
        ])
    }
}
