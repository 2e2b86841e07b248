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

    private func startSleeping(_ python: String) throws -> (Int32, String) {
        let (process, version) = try TestInterpreters.startSleeping(python)
        processes.append(process)
        return (process.processIdentifier, version)
    }

    private func checkLocates(_ python: String, binaryContains: String) throws {
        let (pid, version) = try startSleeping(python)
        let interpreter = try InterpreterLocator.locate(pid: pid)
        XCTAssertEqual(interpreter.version.description, version, python)
        XCTAssertTrue(interpreter.binaryPath.contains(binaryContains), "\(interpreter.binaryPath) for \(python)")
        XCTAssertEqual("\(interpreter.offsets.major).\(interpreter.offsets.minor)", version.split(separator: ".").prefix(2).joined(separator: "."))
        XCTAssertEqual(interpreter.debugOffsetsMismatch, [], "\(python): _Py_DebugOffsets disagrees with the table")
        // _PyRuntime.interpreters.head points at the main interpreter once Python runs.
        let head = try ProcessMemory(pid: pid).readUInt64(interpreter.interpretersHeadAddress)
        XCTAssertNotEqual(head, 0, "\(python): interpreters.head is NULL")
    }

    func testPyenvVersions() throws {
        for minor in ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"] {
            try checkLocates(try TestInterpreters.pyenv(minor), binaryContains: "libpython\(minor)")
        }
    }

    /// Debian's build links libpython statically into the executable.
    func testDebianStaticPython() throws {
        try checkLocates("/usr/bin/python3.11", binaryContains: "/usr/bin/python3.11")
    }

    func testUnsupportedVersionsAreNamed() throws {
        for minor in ["2.7", "3.7"] {
            let (pid, version) = try startSleeping(try TestInterpreters.pyenv(minor))
            XCTAssertThrowsError(try InterpreterLocator.locate(pid: pid)) { error in
                XCTAssertEqual(error as? InterpreterError, .unsupportedVersion(pid: pid, version: version))
                XCTAssertTrue("\(error)".contains("Python \(version)"), "\(error)")
            }
        }
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

/// 3.13's `_Py_DebugOffsets` as a real process publishes it, and what happens when it disagrees.
final class DebugOffsetsTests: XCTestCase {
    func testProcessValuesWinAndAreReported() throws {
        let (process, _) = try TestInterpreters.startSleeping(try TestInterpreters.pyenv("3.13"))
        defer { process.terminate() }
        let interpreter = try InterpreterLocator.locate(pid: process.processIdentifier)
        let table = try XCTUnwrap(PythonOffsets.forVersion(major: 3, minor: 13))
        let layout = try XCTUnwrap(table.debugOffsets)
        var bytes = try ProcessMemory(pid: process.processIdentifier).read(interpreter.runtimeAddress, count: layout.size)

        var offsets = table
        XCTAssertEqual(try DebugOffsets.reconcile(&offsets, layout: layout, debugOffsets: bytes), [])
        XCTAssertEqual(offsets, table)

        // A build whose thread_id moved: the process's value is used, and said.
        withUnsafeBytes(of: UInt64(999)) { bytes.replaceSubrange(layout.tstateThreadId..<layout.tstateThreadId + 8, with: $0) }
        XCTAssertEqual(
            try DebugOffsets.reconcile(&offsets, layout: layout, debugOffsets: bytes),
            ["thread_state.thread_id: table \(table.tstateThreadId), process 999"])
        XCTAssertEqual(offsets.tstateThreadId, 999)

        bytes[0] = 0
        XCTAssertThrowsError(try DebugOffsets.reconcile(&offsets, layout: layout, debugOffsets: bytes))
    }
}
