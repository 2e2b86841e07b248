import CPython
import Foundation
import Native
import XCTest

/// `GILProbe` per version: which test the table gives each supported CPython, the test itself over memory laid out by
/// hand, and the test on live interpreters, where a thread spinning in Python holds the GIL and one in time.sleep does
/// not.
final class GILProbeTests: XCTestCase {
    private var processes: [Process] = []

    override func tearDown() {
        for process in processes where process.isRunning { process.terminate() }
        processes = []
    }

    // MARK: - The table

    private func interpreter(_ offsets: PythonOffsets, currentThreadState: UInt64? = nil) -> PythonInterpreter {
        PythonInterpreter(
            pid: 42, binaryPath: "/usr/lib/libpython.so", version: PythonVersion(major: offsets.major, minor: offsets.minor, micro: 0),
            offsets: offsets, runtimeAddress: 0x10_0000, currentThreadStateAddress: currentThreadState)
    }

    /// Every supported minor version has a GIL test, and it is the one its CPython allows.
    func testEverySupportedVersionHasAGILProbe() throws {
        XCTAssertFalse(PythonOffsets.supportedVersions.isEmpty)
        for (major, minor) in PythonOffsets.supportedVersions {
            let offsets = try XCTUnwrap(PythonOffsets.forVersion(major: major, minor: minor))
            let name = "\(major).\(minor)"
            switch (major, minor) {
            case (2, _), (3, 6):
                // The exported global, whose address only the binary can give.
                XCTAssertNil(interpreter(offsets).gilProbe, name)
                let reason = try XCTUnwrap(interpreter(offsets).gilProbeUnavailable, name)
                XCTAssertTrue(reason.contains("_PyThreadState_Current") && !reason.contains("\n"), reason)
                XCTAssertEqual(interpreter(offsets, currentThreadState: 0x5000).gilProbe, .holderSlot(address: 0x5000), name)
            case (3, 7...11):
                let slot = try XCTUnwrap(offsets.runtimeTstateCurrent, name)
                XCTAssertEqual(interpreter(offsets).gilProbe, .holderSlot(address: 0x10_0000 + UInt64(slot)), name)
            case (3, 12):
                XCTAssertEqual(interpreter(offsets).gilProbe, .interpreterGIL(
                    tstateInterp: offsets.tstateInterp, cevalGIL: try XCTUnwrap(offsets.interpCevalGIL),
                    locked: try XCTUnwrap(offsets.gilLocked), lastHolder: try XCTUnwrap(offsets.gilLastHolder)), name)
            default:
                // 3.13's flag is one bit of the _status word; 3.14's an int of its own.
                let mask: UInt32 = minor == 13 ? 1 << 5 : 0xffff_ffff
                XCTAssertEqual(offsets.tstateHoldsGILMask, mask, name)
                XCTAssertEqual(interpreter(offsets).gilProbe,
                               .threadStateFlag(offset: try XCTUnwrap(offsets.tstateHoldsGIL), mask: mask), name)
                // The GIL's own fields are there too (the debug offsets check them).
                XCTAssertNotNil(offsets.interpCevalGIL, name)
            }
            if major == 3 && minor >= 7 { XCTAssertNil(interpreter(offsets).gilProbeUnavailable, name) }
            XCTAssertEqual(offsets.tstateGILRequested != nil, major == 3 && minor >= 15, name)
        }
    }

    /// Memory laid out by hand: little-endian words at addresses, everything else unmapped.
    private struct FakeMemory: MemoryReading {
        var bytes: [UInt64: UInt8] = [:]

        mutating func store(_ value: UInt64, at address: UInt64, width: Int = 8) {
            for index in 0..<width { bytes[address + UInt64(index)] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        }

        func read(_ address: UInt64, count: Int) throws -> [UInt8] {
            try (0..<UInt64(count)).map {
                guard let byte = bytes[address + $0] else { throw ProcessMemoryError.unmapped(address: address, count: count) }
                return byte
            }
        }
    }

    func testHolderSlot() throws {
        var memory = FakeMemory()
        let probe = GILProbe.holderSlot(address: 0x1000)
        memory.store(0xA000, at: 0x1000)
        XCTAssertTrue(try probe.holdsGIL(tstate: 0xA000, memory: memory))
        XCTAssertFalse(try probe.holdsGIL(tstate: 0xB000, memory: memory))
        memory.store(0, at: 0x1000)  // released: no one holds it
        XCTAssertFalse(try probe.holdsGIL(tstate: 0xA000, memory: memory))
        XCTAssertThrowsError(try GILProbe.holderSlot(address: 0x2000).holdsGIL(tstate: 0xA000, memory: memory))
    }

    func testInterpreterGIL() throws {
        var memory = FakeMemory()
        let probe = GILProbe.interpreterGIL(tstateInterp: 16, cevalGIL: 384, locked: 16, lastHolder: 8)
        let tstate: UInt64 = 0xA000, interp: UInt64 = 0x5000, gil: UInt64 = 0x7000
        memory.store(interp, at: tstate + 16)
        memory.store(gil, at: interp + 384)
        memory.store(tstate, at: gil + 8)
        memory.store(1, at: gil + 16, width: 4)
        XCTAssertTrue(try probe.holdsGIL(tstate: tstate, memory: memory))
        // Released: last_holder stays, locked says no one holds it.
        memory.store(0, at: gil + 16, width: 4)
        XCTAssertFalse(try probe.holdsGIL(tstate: tstate, memory: memory))
        // -1: not yet initialized.
        memory.store(0xffff_ffff, at: gil + 16, width: 4)
        XCTAssertFalse(try probe.holdsGIL(tstate: tstate, memory: memory))
        // Held by another thread.
        memory.store(1, at: gil + 16, width: 4)
        memory.store(0xB000, at: gil + 8)
        XCTAssertFalse(try probe.holdsGIL(tstate: tstate, memory: memory))
    }

    func testThreadStateFlag() throws {
        var memory = FakeMemory()
        let bit = GILProbe.threadStateFlag(offset: 32, mask: 1 << 5)
        memory.store(0x3b, at: 0xA000 + 32, width: 4)  // 3.13 _status of a thread that runs Python
        XCTAssertTrue(try bit.holdsGIL(tstate: 0xA000, memory: memory))
        memory.store(0x1b, at: 0xA000 + 32, width: 4)  // every other bit set: still not the GIL
        XCTAssertFalse(try bit.holdsGIL(tstate: 0xA000, memory: memory))
        let int = GILProbe.threadStateFlag(offset: 36, mask: 0xffff_ffff)
        memory.store(1, at: 0xB000 + 36, width: 4)
        XCTAssertTrue(try int.holdsGIL(tstate: 0xB000, memory: memory))
        memory.store(0, at: 0xB000 + 36, width: 4)
        XCTAssertFalse(try int.holdsGIL(tstate: 0xB000, memory: memory))
    }

    // MARK: - Live interpreters

    /// The main thread spins in Python (so it holds the GIL but for 2.7's release every 100 ticks), while a second thread
    /// sleeps in time.sleep (which releases it). Prints "M.m.p <spinner ident> <sleeper ident>" once the sleeper sleeps.
    private static let script = """
        import sys, threading, time
        ready = threading.Event()
        def sleeper():
            ready.set()
            time.sleep(100)
        t = threading.Thread(target=sleeper)
        t.daemon = True
        t.start()
        ready.wait()
        time.sleep(0.1)
        sys.stdout.write('%d.%d.%d %d %d\\n' % (tuple(sys.version_info[:3]) + (threading.current_thread().ident, t.ident)))
        sys.stdout.flush()
        deadline = time.time() + 60
        while time.time() < deadline:
            pass
        """

    private func checkGIL(_ command: [String], expect kind: String) throws {
        let name = command.joined(separator: " ")
        let (process, line) = try TestInterpreters.start(command, script: Self.script)
        processes.append(process)
        let fields = line.split(separator: " ")
        guard fields.count == 3, let spinnerID = UInt64(fields[1]), let sleeperID = UInt64(fields[2]) else {
            return XCTFail("\(name) printed \(line.debugDescription), not its version and its threads' idents")
        }
        let pid = process.processIdentifier
        let interpreter = try InterpreterLocator.locate(pid: pid)
        XCTAssertEqual(interpreter.version.description, String(fields[0]), name)
        let probe = try XCTUnwrap(interpreter.gilProbe, "\(name): \(interpreter.gilProbeUnavailable ?? "no GIL probe")")
        XCTAssertTrue("\(probe)".hasPrefix(kind), "\(name): \(probe), expected \(kind)")
        // `--all` and `--subprocesses` locate through the file cache: the same probe.
        XCTAssertEqual(try InterpreterLocator.locate(pid: pid, cache: InterpreterLocator.FileCache()).gilProbe, probe, name)

        let memory = ProcessMemory(pid: pid)
        let states = try interpreter.threadStates(memory: memory)
        let spinner = try XCTUnwrap(states.first { $0.threadID == spinnerID }, "\(name): no thread state of the main thread in \(states)")
        let sleeper = try XCTUnwrap(states.first { $0.threadID == sleeperID }, "\(name): no thread state of the sleeping thread in \(states)")
        XCTAssertEqual(states.count, 2, "\(name): \(states)")

        var spinnerHeld = 0, sleeperHeld = 0
        for _ in 0..<20 {
            if try probe.holdsGIL(tstate: spinner.address, memory: memory) { spinnerHeld += 1 }
            if try probe.holdsGIL(tstate: sleeper.address, memory: memory) { sleeperHeld += 1 }
            usleep(2_000)
        }
        print("GIL \(interpreter.version) (\(interpreter.binaryPath)): \(probe); spinning thread state 0x"
              + "\(String(spinner.address, radix: 16)) held it in \(spinnerHeld)/20 reads, sleeping 0x"
              + "\(String(sleeper.address, radix: 16)) in \(sleeperHeld)/20")
        XCTAssertEqual(sleeperHeld, 0, "\(name): the thread in time.sleep held the GIL")
        XCTAssertGreaterThanOrEqual(spinnerHeld, 15, "\(name): the thread spinning in Python seldom held the GIL")
    }

    func testPyenvVersions() throws {
        let kinds = ["2.7": "holderSlot", "3.6": "holderSlot", "3.7": "holderSlot", "3.8": "holderSlot", "3.9": "holderSlot",
                     "3.10": "holderSlot", "3.11": "holderSlot", "3.12": "interpreterGIL", "3.13": "threadStateFlag"]
        for minor in ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"] {
            try checkGIL([try TestInterpreters.pyenv(minor)], expect: kinds[minor]!)
        }
    }

    /// Debian's static build: the slot is found in the executable.
    func testDebianStaticPython() throws {
        try checkGIL(["/usr/bin/python3.11"], expect: "holderSlot")
    }

    /// Debian's own (stripped) builds of 3.13, 3.14 and 3.15, each in its root.
    func testDebianRoots() throws {
        try checkGIL(try TestInterpreters.debian("trixie", "3.13"), expect: "threadStateFlag")
        for minor in ["3.13", "3.14", "3.15"] {
            try checkGIL(try TestInterpreters.debian("sid", minor), expect: "threadStateFlag")
        }
    }
}
