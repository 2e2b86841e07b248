import CPython
import Foundation
import Native
import XCTest

/// `GILWaitRange` per version: on live interpreters, the futex a thread waiting for the GIL sleeps in lies in the range,
/// and the futex of a thread blocked on a `threading.Lock` does not. What the kernel says each thread is blocked in comes
/// from /proc/PID/task/TID/syscall (the number and arguments the thread entered the system call with, as the BPF
/// program reads them from its saved registers): no kprobe needed, so this runs on any host.
final class GILWaitRangeTests: XCTestCase {
    private var processes: [Process] = []

    override func tearDown() {
        for process in processes where process.isRunning { process.terminate() }
        processes = []
    }

    /// Every version from 3.7 has a range from its offsets; 2.7 and 3.6 have none from them (theirs comes from the binary's
    /// local symbols: `testPyenv2_7And3_6FromTheirLocalSymbols`).
    func testEveryVersionFrom3_7HasARange() throws {
        for (major, minor) in PythonOffsets.supportedVersions {
            let offsets = try XCTUnwrap(PythonOffsets.forVersion(major: major, minor: minor))
            let interpreter = PythonInterpreter(
                pid: 42, binaryPath: "/usr/lib/libpython.so", version: PythonVersion(major: major, minor: minor, micro: 0),
                offsets: offsets, runtimeAddress: 0x10_0000, currentThreadStateAddress: nil)
            let name = "\(major).\(minor)"
            switch (major, minor) {
            case (2, _), (3, 6):
                XCTAssertNil(interpreter.gilWaitRange, name)
            case (3, 7...11):
                let start = 0x10_0000 + UInt64(try XCTUnwrap(offsets.runtimeGIL) + XCTUnwrap(offsets.gilCond))
                // cond, mutex, switch_cond, switch_mutex: 48 + 40 + 48 + 40 bytes with glibc on x86_64.
                XCTAssertEqual(interpreter.gilWaitRange, .address(start: start, size: 176), name)
            default:
                XCTAssertEqual(interpreter.gilWaitRange, .interpreterGIL(
                    cevalGIL: try XCTUnwrap(offsets.interpCevalGIL), start: try XCTUnwrap(offsets.gilCond), size: 176), name)
            }
        }
    }

    /// The main thread blocks on a held lock; two threads spin in Python, so each waits for the GIL while the other runs.
    /// They start spinning a moment later, once the main thread is in its lock's futex, where it then stays (before, it
    /// could be caught waiting for the GIL on its way there).
    private static let script = """
        import sys, threading, time
        lock = threading.Lock()
        lock.acquire()
        def spin():
            time.sleep(0.2)
            n = 0
            while True:
                n += 1
        for _ in range(2):
            t = threading.Thread(target=spin)
            t.daemon = True
            t.start()
        sys.stdout.write('%d.%d.%d\\n' % tuple(sys.version_info[:3]))
        sys.stdout.flush()
        lock.acquire()
        """

    /// The futex address a thread is blocked in now, from /proc; nil when it runs or is in another system call.
    private func futexAddress(pid: Int32, tid: Int32) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/syscall", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, fields[0] == "202", fields[1].hasPrefix("0x") else { return nil }
        return UInt64(fields[1].dropFirst(2), radix: 16)
    }

    private func checkWaits(_ command: [String]) throws {
        let name = command.joined(separator: " ")
        let (process, line) = try TestInterpreters.start(command, script: Self.script)
        processes.append(process)
        let pid = process.processIdentifier
        let interpreter = try InterpreterLocator.locate(pid: pid)
        XCTAssertEqual(interpreter.version.description, line, name)
        let range = try XCTUnwrap(interpreter.gilWaitRange, "\(name): no GIL wait range")
        let memory = ProcessMemory(pid: pid)

        // The main thread (tid == pid) reaches its futex at once; the spinners take turns waiting for the GIL.
        var lockAddress: UInt64?, gilWaits: [UInt64] = [], deadline = Date().addingTimeInterval(20)
        while (lockAddress == nil || gilWaits.count < 20) && Date() < deadline {
            if lockAddress == nil { lockAddress = futexAddress(pid: pid, tid: pid) }
            let tids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).compactMap { Int32($0) }
            for tid in tids where tid != pid {
                if let address = futexAddress(pid: pid, tid: tid) { gilWaits.append(address) }
            }
            usleep(500)
        }
        let lock = try XCTUnwrap(lockAddress, "\(name): the main thread never blocked on its lock")
        XCTAssertGreaterThanOrEqual(gilWaits.count, 20, "\(name): the spinning threads were seldom seen waiting")
        let outside = try gilWaits.filter { !(try range.contains($0, interpretersHead: interpreter.interpretersHeadAddress, memory: memory)) }
        print("GIL wait \(interpreter.version): \(range); \(gilWaits.count) waits of the spinning threads, "
              + "\(Set(gilWaits).count) addresses, \(outside.count) outside; the lock's futex 0x\(String(lock, radix: 16))")
        XCTAssertEqual(outside, [], "\(name): spinning threads waited on futexes outside the GIL's range")
        XCTAssertFalse(try range.contains(lock, interpretersHead: interpreter.interpretersHeadAddress, memory: memory),
                       "\(name): a thread blocked on a threading.Lock counted as waiting for the GIL")
    }

    /// 2.7's and 3.6's GIL from their full symbol tables (pyenv's builds keep them): 2.7's semaphore through the pointer
    /// `interpreter_lock`, 3.6's four statics, adjacent, as one range.
    func testPyenv2_7And3_6FromTheirLocalSymbols() throws {
        for minor in ["2.7", "3.6"] {
            let python = try TestInterpreters.pyenv(minor)
            let (process, _) = try TestInterpreters.startSleeping(python)
            processes.append(process)
            let range = try InterpreterLocator.locate(pid: process.processIdentifier).gilWaitRange
            switch (minor, range) {
            case ("2.7", .pointer(_, let size)?):
                XCTAssertEqual(size, 32, "2.7: a sem_t")
            case ("3.6", .address(_, let size)?):
                // gil_cond, gil_mutex, switch_cond, switch_mutex: 176 bytes, and what alignment puts between them.
                XCTAssertGreaterThanOrEqual(size, 176, "3.6: \(String(describing: range))")
                XCTAssertLessThanOrEqual(size, 256, "3.6: \(String(describing: range))")
            default:
                XCTFail("\(minor): \(String(describing: range))")
            }
            try checkWaits([python])
        }
    }

    func testPyenvVersions() throws {
        for minor in ["3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"] {
            try checkWaits([try TestInterpreters.pyenv(minor)])
        }
    }

    /// Debian's static 3.11: the GIL is in the executable's _PyRuntime.
    func testDebianStaticPython() throws {
        try checkWaits(["/usr/bin/python3.11"])
    }

    /// Debian's own (stripped) builds of 3.13, 3.14 and 3.15, each in its root.
    func testDebianRoots() throws {
        try checkWaits(try TestInterpreters.debian("trixie", "3.13"))
        for minor in ["3.13", "3.14", "3.15"] {
            try checkWaits(try TestInterpreters.debian("sid", minor))
        }
    }
}
