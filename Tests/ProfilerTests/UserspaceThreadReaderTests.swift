import CBPF
import CPython
import Native
@testable import Profiler
import XCTest

/// Memory as a dictionary of bytes: a read of any byte that was not mapped fails, as process_vm_readv of an unmapped
/// range does.
struct FakeMemory: TargetMemory {
    private(set) var bytes: [UInt64: UInt8] = [:]

    mutating func map(_ address: UInt64, count: Int) {
        for index in 0..<UInt64(count) where bytes[address + index] == nil { bytes[address + index] = 0 }
    }

    mutating func write<Value>(_ value: Value, at address: UInt64) {
        withUnsafeBytes(of: value) { for (index, byte) in $0.enumerated() { bytes[address + UInt64(index)] = byte } }
    }

    func read(_ address: UInt64, count: Int) throws -> [UInt8] {
        try (0..<UInt64(count)).map { index in
            guard let byte = bytes[address + index] else { throw ProcessMemoryError.unmapped(address: address, count: count) }
            return byte
        }
    }
}

/// The userspace reader's pure parts over fake memory and text: the BPF program's Python walk and native unwind,
/// which thread runs which thread state, the /proc files, and the records it writes.
final class UserspaceThreadReaderTests: XCTestCase {
    // MARK: - Python frames

    /// One frame of a fake thread, leaf first in a list.
    enum FakeFrame {
        /// A frame of `code` at instruction `instruction`; `entry`: the first of its eval-loop call (3.11's is_entry).
        case code(UInt64, instruction: UInt32, entry: Bool = false)
        /// A C-stack shim frame (3.12+).
        case shim
    }

    /// A process of Python 3.`minor` laid out with that version's generated offsets: `_PyRuntime`, one interpreter,
    /// its thread states (each its pthread_self(), native id and frames), code objects whose checksum window holds
    /// their address.
    struct FakePython {
        let interpreter: PythonInterpreter
        var memory = FakeMemory()
        let runtime: UInt64 = 0x1000
        let interpreterState: UInt64 = 0x2000
        private var states: [UInt64] = []
        private var nextFrame: UInt64 = 0x10_0000

        init(minor: Int) throws {
            let offsets = try XCTUnwrap(PythonOffsets.forVersion(major: 3, minor: minor))
            interpreter = PythonInterpreter(pid: 1, binaryPath: "python", version: PythonVersion(major: 3, minor: minor, micro: 0),
                                            offsets: offsets, runtimeAddress: runtime)
            memory.map(runtime, count: offsets.runtimeInterpretersHead + 8)
            memory.write(interpreterState, at: interpreter.interpretersHeadAddress)
            memory.map(interpreterState, count: offsets.interpThreadsHead + 8)
        }

        var offsets: PythonOffsets { interpreter.offsets }
        var walk: PythonFrameWalk { PythonFrameWalk(process: py_process(interpreter), memory: memory) }

        /// Appends a thread state to the list; returns its address.
        @discardableResult
        mutating func addThread(pointer: UInt64, nativeID: UInt64, frames: [FakeFrame]) -> UInt64 {
            let tstate = 0x8000 + UInt64(states.count) * 0x1000
            memory.map(tstate, count: 512)
            memory.write(pointer, at: tstate + UInt64(offsets.tstateThreadId))
            if let native = offsets.tstateNativeThreadId { memory.write(nativeID, at: tstate + UInt64(native)) }
            if let last = states.last {
                memory.write(tstate, at: last + UInt64(offsets.tstateNext))
            } else {
                memory.write(tstate, at: interpreterState + UInt64(offsets.interpThreadsHead))
            }
            states.append(tstate)
            var previous: UInt64 = 0
            for frame in frames.reversed() { previous = addFrame(frame, previous: previous) }
            if let cframe = offsets.cframeCurrentFrame {
                let cframeAddress = tstate + 0x100
                memory.write(cframeAddress, at: tstate + UInt64(offsets.tstateFrame))
                memory.write(previous, at: cframeAddress + UInt64(cframe))
            } else {
                memory.write(previous, at: tstate + UInt64(offsets.tstateFrame))
            }
            return tstate
        }

        private mutating func addFrame(_ frame: FakeFrame, previous: UInt64) -> UInt64 {
            let address = nextFrame
            nextFrame += 0x200
            memory.map(address, count: 0x100)
            memory.write(previous, at: address + UInt64(offsets.frameBack))
            switch frame {
            case .shim:
                memory.write(UInt8(offsets.frameBoundaryOwner!), at: address + UInt64(offsets.frameOwner!))
                // 3.14+: the entry frame's executable is None, tagged.
                if offsets.frameCodeTagBits != 0 { memory.write(UInt64(0x7f_dead_0001), at: address + UInt64(offsets.frameCode)) }
            case let .code(code, instruction, entry):
                memory.map(code, count: 0x100)
                memory.write(code, at: code + UInt64(offsets.codeChecksum))
                // 3.14+: a _PyStackRef, tagged in its low bits (here as a reference to an immortal object).
                memory.write(code | (offsets.frameCodeTagBits != 0 ? 1 : 0), at: address + UInt64(offsets.frameCode))
                if offsets.instructionKind == .pointer {
                    memory.write(code + UInt64(instruction), at: address + UInt64(offsets.frameInstr))
                } else {
                    memory.write(instruction, at: address + UInt64(offsets.frameInstr))
                }
                if entry, let isEntry = offsets.frameIsEntry { memory.write(UInt8(1), at: address + UInt64(isEntry)) }
            }
            return address
        }
    }

    /// A frame as the BPF program records it: its checksum hashes the 8 bytes at code_checksum (the code's address here).
    private func sampled(_ code: UInt64, _ instruction: UInt32) -> [UInt64] {
        [code, UInt64(instruction), UInt64(UInt32(truncatingIfNeeded: (code &* 0x9E37_79B9_7F4A_7C15) >> 32))]
    }

    private let boundary: [UInt64] = [0, UInt64(PY_FRAME_BOUNDARY), 0]

    private func fields(_ frames: [py_frame]) -> [[UInt64]] {
        frames.map { [$0.code, UInt64($0.instr), UInt64($0.checksum)] }
    }

    /// CPython's knowledge of how much of a frame is read at once, and the BPF program's buffer, are one number.
    func testFrameReadLimitIsTheBPFProgramsBuffer() {
        XCTAssertEqual(PythonOffsets.frameReadLimit, Int(PY_FRAME_READ_MAX))
        for (major, minor) in PythonOffsets.supportedVersions {
            XCTAssertLessThanOrEqual(PythonOffsets.forVersion(major: major, minor: minor)!.frameReadSize, PythonOffsets.frameReadLimit)
        }
    }

    func testFramesOfEachVersionAsTheBPFWalkRecordsThem() throws {
        for minor in [8, 9, 10, 11, 12, 13, 14, 15] {
            var python = try FakePython(minor: minor)
            // Leaf first: f (entered from C on 3.11), a shim below it on 3.12+, then g and the module.
            var frames: [FakeFrame] = [.code(0x20_0000, instruction: 6, entry: minor == 11)]
            if minor >= 12 { frames.append(.shim) }
            frames += [.code(0x20_1000, instruction: 20), .code(0x20_2000, instruction: 42, entry: minor == 11)]
            python.addThread(pointer: 0x7f00_0000_0100, nativeID: 41, frames: frames)
            let walk = python.walk
            let tstate = try XCTUnwrap(walk.threadState(threadPointer: 0x7f00_0000_0100), "3.\(minor)")
            let (walked, flags) = walk.frames(from: walk.currentFrame(of: tstate))
            var expected = [sampled(0x20_0000, 6)]
            if minor >= 11 { expected.append(boundary) }
            expected += [sampled(0x20_1000, 20), sampled(0x20_2000, 42)]
            if minor == 11 { expected.append(boundary) }
            XCTAssertEqual(fields(walked), expected, "3.\(minor)")
            XCTAssertEqual(flags, 0, "3.\(minor)")
        }
    }

    func testThreadStatesAreFoundByPointerWithinTheScanBound() throws {
        var python = try FakePython(minor: 12)
        for index in 0..<UInt64(PY_MAX_THREADS_SCAN) + 1 {
            python.addThread(pointer: 0x7f00_0000_0000 + index * 0x1000, nativeID: 100 + index, frames: [])
        }
        let walk = python.walk
        XCTAssertEqual(walk.threadState(threadPointer: 0x7f00_0000_1000), 0x9000)
        XCTAssertNil(walk.threadState(threadPointer: 0x7f00_0000_0000 + UInt64(PY_MAX_THREADS_SCAN) * 0x1000),
                     "past PY_MAX_THREADS_SCAN states, as in BPF")
        XCTAssertNil(walk.threadState(threadPointer: 0x1234))
        let listed = walk.listedThreadStates(nativeThreadIDOffset: python.offsets.tstateNativeThreadId)
        XCTAssertEqual(listed.count, Int(PY_MAX_THREADS_SCAN))
        XCTAssertEqual(listed[1], .init(address: 0x9000, threadPointer: 0x7f00_0000_1000, nativeThreadID: 101))
    }

    func testAFrameThatCannotBeReadEndsTheWalkAsAReadError() throws {
        var python = try FakePython(minor: 10)
        let tstate = python.addThread(pointer: 0x7f00_0000_0100, nativeID: 0, frames: [.code(0x20_0000, instruction: 8)])
        let leaf = python.walk.currentFrame(of: tstate)
        python.memory.write(UInt64(0xdead_0000), at: leaf + UInt64(python.offsets.frameBack))
        let (walked, flags) = python.walk.frames(from: leaf)
        XCTAssertEqual(fields(walked), [sampled(0x20_0000, 8)])
        XCTAssertEqual(flags, SAMPLE_READ_ERROR.rawValue)
    }

    func testAChainLongerThanTheBoundIsTruncated() throws {
        var python = try FakePython(minor: 9)
        let tstate = python.addThread(pointer: 0x7f00_0000_0100, nativeID: 0, frames: [.code(0x20_0000, instruction: 2)])
        let leaf = python.walk.currentFrame(of: tstate)
        python.memory.write(leaf, at: leaf + UInt64(python.offsets.frameBack))  // a frame that is its own caller
        let (walked, flags) = python.walk.frames(from: leaf)
        XCTAssertEqual(walked.count, Int(PY_MAX_FRAMES))
        XCTAssertEqual(flags, SAMPLE_TRUNCATED.rawValue)
    }

    func testNoInterpreterNoThreadStates() throws {
        var python = try FakePython(minor: 13)
        python.memory.write(UInt64(0), at: python.interpreter.interpretersHeadAddress)
        XCTAssertEqual(python.walk.listedThreadStates(nativeThreadIDOffset: 160), [])
        XCTAssertNil(python.walk.threadState(threadPointer: 0x7f00_0000_0100))
    }

    // MARK: - Which thread runs which state

    private func state(_ pointer: UInt64, native: UInt64? = nil) -> PythonFrameWalk.ListedThreadState {
        .init(address: pointer &+ 0x100_0000, threadPointer: pointer, nativeThreadID: native)
    }

    func testNativeThreadIDsPairDirectly() {
        let identities = ThreadIdentities.match(
            threads: [10, 11, 12], listed: [state(0x7000, native: 12), state(0x5000, native: 10)], ownRobustListOffset: nil,
            robustListHead: { _ in XCTFail("no robust list needed"); return nil })
        XCTAssertEqual(identities, ThreadIdentities(threadPointers: [12: 0x7000, 10: 0x5000], unmatchedStates: 0))
    }

    /// glibc's robust list head lies 0x2e0 into every struct pthread: the offset that pairs the most threads wins, and a
    /// thread whose head pairs with no state (not a Python thread) is left alone.
    func testRobustListHeadsPairAtTheirCommonOffset() {
        let heads: [Int32: UInt64] = [10: 0x7f10_02e0, 11: 0x7f20_02e0, 12: 0x7f30_02e0, 13: 0x7f40_0000]
        let identities = ThreadIdentities.match(
            threads: [10, 11, 12, 13], listed: [state(0x7f30_0000), state(0x7f10_0000), state(0x7f20_0000)],
            ownRobustListOffset: nil, robustListHead: { heads[$0] })
        XCTAssertEqual(identities.threadPointers, [10: 0x7f10_0000, 11: 0x7f20_0000, 12: 0x7f30_0000])
        XCTAssertEqual(identities.unmatchedStates, 0)
    }

    func testEquallyGoodOffsetsGoToOurOwnLibcs() {
        // One thread, two states: 0x2e0 and 0xae0 pair as well; our libc says 0x2e0.
        let listed = [state(0x7f10_0000), state(0x7f0f_f800)]
        let ours = ThreadIdentities.match(threads: [10], listed: listed, ownRobustListOffset: 0x2e0, robustListHead: { _ in 0x7f10_02e0 })
        XCTAssertEqual(ours.threadPointers, [10: 0x7f10_0000])
        let unknown = ThreadIdentities.match(threads: [10], listed: listed, ownRobustListOffset: nil, robustListHead: { _ in 0x7f10_02e0 })
        XCTAssertEqual(unknown, ThreadIdentities(threadPointers: [:], unmatchedStates: 2))
    }

    func testOneThreadAndOneStateLeftBelongTogether() {
        let paired = ThreadIdentities.match(
            threads: [10, 11], listed: [state(0x5000, native: 11), state(0x7000)], ownRobustListOffset: nil,
            robustListHead: { _ in 0 })
        XCTAssertEqual(paired.threadPointers, [11: 0x5000, 10: 0x7000])
        let ambiguous = ThreadIdentities.match(
            threads: [10, 11], listed: [state(0x5000), state(0x7000)], ownRobustListOffset: nil, robustListHead: { _ in nil })
        XCTAssertEqual(ambiguous, ThreadIdentities(threadPointers: [:], unmatchedStates: 2))
    }

    /// Our own threads: glibc registers a robust list in every thread, at one offset from pthread_self().
    func testOwnRobustListOffsetIsInsideStructPthread() throws {
        let offset = try XCTUnwrap(ThreadIdentities.ownRobustListOffset, "this libc registers no robust list")
        XCTAssertLessThan(offset, ThreadIdentities.robustListOffsetLimit)
        XCTAssertEqual(offset % 8, 0)
    }

    // MARK: - Native frames

    /// One file mapped at 0x40_0000 with a row per rule kind (its table's addresses start at the mapping).
    private let mappings: [exec_mapping] = [
        exec_mapping(start: 0x40_0000, end: 0x41_0000, table_base: 0x40_0000, first_row: 0, row_count: 7),
        exec_mapping(start: 0x50_0000, end: 0x51_0000, table_base: 0, first_row: 0, row_count: 0),
    ]
    private let rows: [unwind_row] = [
        unwind_row(address: 0x000, cfa_offset: 8, cfa_kind: UInt8(UNWIND_CFA_RSP.rawValue), rbp_offset: 0),
        unwind_row(address: 0x100, cfa_offset: 16, cfa_kind: UInt8(UNWIND_CFA_RSP.rawValue), rbp_offset: -2),
        unwind_row(address: 0x200, cfa_offset: 16, cfa_kind: UInt8(UNWIND_CFA_RBP.rawValue), rbp_offset: -2),
        unwind_row(address: 0x300, cfa_offset: 0, cfa_kind: UInt8(UNWIND_END_OF_STACK.rawValue), rbp_offset: 0),
        unwind_row(address: 0x400, cfa_offset: 0, cfa_kind: UInt8(UNWIND_NO_RULE.rawValue), rbp_offset: 0),
        unwind_row(address: 0x500, cfa_offset: 11, cfa_kind: UInt8(UNWIND_CFA_PLT.rawValue), rbp_offset: 0),
        unwind_row(address: 0x600, cfa_offset: 0, cfa_kind: UInt8(UNWIND_UNSUPPORTED.rawValue), rbp_offset: 0),
    ]

    private func unwinder(_ memory: FakeMemory) -> NativeUnwind {
        let rows = self.rows
        return NativeUnwind(mappings: mappings, row: { Int($0) < rows.count ? rows[Int($0)] : nil }, memory: memory)
    }

    /// A stack at 0x7000_0000 and up, from 8-byte words.
    private func stack(_ words: [UInt64]) -> FakeMemory {
        var memory = FakeMemory()
        for (index, word) in words.enumerated() { memory.write(word, at: 0x7000_0000 + UInt64(index) * 8) }
        return memory
    }

    /// A leaf without a frame (CFA = rsp + 8), its caller saving rbp, whose caller uses rbp as its frame pointer (known
    /// by then, restored from the slot), whose caller is the thread's entry.
    func testRulesUnwindAsTheBPFUnwinderWithRBPRestoredFromItsSlot() {
        let memory = stack([
            0x40_0110,      // sp + 0: the leaf's return address
            0x7000_0020,    // sp + 8: the caller's saved rbp (CFA - 16)
            0x40_0210,      // sp + 16: its return address (CFA - 8)
            0,              // sp + 24
            0x7000_0040,    // sp + 32 = rbp: the frame-pointer function's caller's rbp
            0x40_0310,      // sp + 40: its return address
        ])
        let outcome = unwinder(memory).unwind(pc: 0x40_0010, sp: 0x7000_0000)
        XCTAssertEqual(outcome.addresses, [0x40_0010, 0x40_0110, 0x40_0210, 0x40_0310])
        XCTAssertEqual(outcome.flags, SAMPLE_NATIVE_COMPLETE.rawValue)
        XCTAssertNil(outcome.neededUnknownRBP)
    }

    func testARuleNeedingRBPBeforeItIsKnownEndsTheUnwind() {
        for pc: UInt64 in [0x40_0210, 0x40_0410] {
            let outcome = unwinder(stack([0x40_0010])).unwind(pc: pc, sp: 0x7000_0000)
            XCTAssertEqual(outcome.addresses, [pc])
            XCTAssertEqual(outcome.flags, 0, "not complete: it stopped early")
            XCTAssertEqual(outcome.neededUnknownRBP, pc)
        }
    }

    /// Code without a rule unwinds by the frame pointer once rbp is known, and its caller is marked so.
    func testNoRuleFallsBackToTheFramePointerOnceRBPIsKnown() {
        let memory = stack([
            0x7000_0010,    // the saved rbp (CFA - 16)
            0x40_0410,      // return into code without a rule
            0x7000_0030,    // sp + 16 = rbp: [rbp] the caller's rbp
            0x40_0310,      // [rbp + 8] its return address
        ])
        let outcome = unwinder(memory).unwind(pc: 0x40_0110, sp: 0x7000_0000)
        XCTAssertEqual(outcome.addresses, [0x40_0110, 0x40_0410, 0x40_0310 | UInt64(NATIVE_FRAME_POINTER_BIT)])
        XCTAssertEqual(outcome.flags, SAMPLE_NATIVE_COMPLETE.rawValue)
    }

    func testPLTUnknownMappingZeroReturnAndUnsupportedRules() {
        // A PLT entry past its push (pc & 15 >= 11): CFA = rsp + 16.
        var outcome = unwinder(stack([0, 0x40_0310])).unwind(pc: 0x40_050c, sp: 0x7000_0000)
        XCTAssertEqual(outcome.addresses, [0x40_050c, 0x40_0310])
        XCTAssertEqual(outcome.flags, SAMPLE_NATIVE_COMPLETE.rawValue)
        // Before it: CFA = rsp + 8; the return address is in no mapping.
        outcome = unwinder(stack([0x90_0000])).unwind(pc: 0x40_0504, sp: 0x7000_0000)
        XCTAssertEqual(outcome.addresses, [0x40_0504, 0x90_0000])
        XCTAssertEqual(outcome.flags, SAMPLE_NATIVE_UNKNOWN_MAPPING.rawValue)
        // A zero return address ends the chain.
        outcome = unwinder(stack([0])).unwind(pc: 0x40_0010, sp: 0x7000_0000)
        XCTAssertEqual(outcome.flags, SAMPLE_NATIVE_COMPLETE.rawValue)
        // A rule it cannot apply, and a file without rows (and no rbp for its frame pointer), stop it.
        for pc: UInt64 in [0x40_0610, 0x50_0010] {
            outcome = unwinder(stack([0x40_0010])).unwind(pc: pc, sp: 0x7000_0000)
            XCTAssertEqual(outcome.addresses, [pc])
            XCTAssertEqual(outcome.flags, 0)
        }
        // An unreadable stack slot stops it.
        outcome = unwinder(FakeMemory()).unwind(pc: 0x40_0010, sp: 0x7000_0000)
        XCTAssertEqual(outcome.addresses, [0x40_0010])
        XCTAssertEqual(outcome.flags, 0)
    }

    func testAStackDeeperThanTheBoundIsTruncated() {
        // A frame whose CFA is rsp + 8 and whose return address is itself: every frame moves up by 8.
        let memory = stack(Array(repeating: 0x40_0011, count: Int(NATIVE_MAX_FRAMES) + 8))
        let outcome = unwinder(memory).unwind(pc: 0x40_0011, sp: 0x7000_0000)
        XCTAssertEqual(outcome.addresses.count, Int(NATIVE_MAX_FRAMES))
        XCTAssertEqual(outcome.flags, SAMPLE_NATIVE_TRUNCATED.rawValue)
    }

    // MARK: - /proc

    func testStatStateAndCPUAfterAnyCommand() {
        var fields = (4...52).map(String.init)
        fields[35] = "3"  // field 39: processor
        let stat = "1234 (evil) S (name) S " + fields.joined(separator: " ") + "\n"
        XCTAssertEqual(ThreadProcFiles.schedulerState(stat: stat), .init(state: "S", cpu: 3))
        XCTAssertNil(ThreadProcFiles.schedulerState(stat: "1234 (short) R 1 2\n"))
        XCTAssertEqual(ThreadProcFiles.kernelState("D"), 2)
        XCTAssertEqual(Dumper.describeState(ThreadProcFiles.kernelState("I"), onCPU: false), "idle")
        XCTAssertEqual(Dumper.describeState(ThreadProcFiles.kernelState("Z"), onCPU: false), "dead")
    }

    func testSyscallRegisters() {
        XCTAssertEqual(ThreadProcFiles.kernelEntry(syscall: "230 0x1 0x0 0x7ffd5d0e4b40 0x0 0x0 0x0 0x7ffd5d0e4b18 0x7f3c2b6e1e2f\n"),
                       .init(systemCall: 230, sp: 0x7ffd_5d0e_4b18, pc: 0x7f3c_2b6e_1e2f))
        XCTAssertEqual(ThreadProcFiles.kernelEntry(syscall: "-1 0x7ffd5d0e4b18 0x55d0c0ffee00\n"),
                       .init(systemCall: -1, sp: 0x7ffd_5d0e_4b18, pc: 0x55d0_c0ff_ee00))
        XCTAssertNil(ThreadProcFiles.kernelEntry(syscall: "running\n"))
    }

    func testContextSwitches() {
        let status = "Name:\tpython3\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t7\n"
        XCTAssertEqual(ThreadProcFiles.contextSwitches(status: status), 157)
        XCTAssertNil(ThreadProcFiles.contextSwitches(status: "Name:\tpython3\n"))
    }

    func testKernelStackLines() {
        let frames = ThreadProcFiles.kernelFrames(stack: """
            [<0>] hrtimer_nanosleep+0xc7/0x1b0
            [<0>] nfs_wait_bit_killable+0x25/0x90 [nfs]
            [<ffffffff81000010>] shown+0x10/0x40
            [<0>] garbage
            """)
        XCTAssertEqual(frames, [
            .init(shownAddress: 0, function: "hrtimer_nanosleep", offset: 0xc7, size: 0x1b0, module: ""),
            .init(shownAddress: 0, function: "nfs_wait_bit_killable", offset: 0x25, size: 0x90, module: "[nfs]"),
            .init(shownAddress: 0xffff_ffff_8100_0010, function: "shown", offset: 0x10, size: 0x40, module: ""),
        ])
        let names = KernelSymbolNames(KernelSymbols(parsing: "ffffffff81200000 T hrtimer_nanosleep\nffffffff812001b0 T next\n"))
        XCTAssertEqual(frames[0].address(names: names), 0xffff_ffff_8120_00c7)
        XCTAssertNil(frames[1].address(names: names))
        XCTAssertEqual(frames[2].address(names: names), 0xffff_ffff_8100_0010)
    }

    // MARK: - Choosing the reader

    private struct LoadFailure: Error, Equatable {}

    /// Decided by trying: the iterator when the object loads with it, userspace (with the reason) when it does not; a
    /// choice given is kept, and its failure thrown.
    func testTheReaderIsChosenByLoadingTheIterator() throws {
        var tries: [Bool] = []
        let loads = try Dumper.choose(nil) { withIterator in tries.append(withIterator); return withIterator }
        XCTAssertEqual(tries, [true])
        XCTAssertEqual(loads.threadReader, .kernelIterator)
        XCTAssertNil(loads.iteratorFailure)

        tries = []
        let refuses = try Dumper.choose(nil) { withIterator in
            tries.append(withIterator)
            if withIterator { throw LoadFailure() }
            return withIterator
        }
        XCTAssertEqual(tries, [true, false])
        XCTAssertEqual(refuses.threadReader, .userspace)
        XCTAssertFalse(refuses.loaded)
        XCTAssertEqual(refuses.iteratorFailure as? LoadFailure, LoadFailure())
        XCTAssertTrue(Dumper.userspaceLimits(iteratorFailure: LoadFailure(), nativeStacks: true)
            .hasPrefix("this kernel did not load the BPF task iterator ("))

        XCTAssertThrowsError(try Dumper.choose(.kernelIterator) { _ in throw LoadFailure() })
        XCTAssertThrowsError(try Dumper.choose(nil) { _ in throw LoadFailure() }, "nothing loads: the error is thrown")
        XCTAssertEqual(try Dumper.choose(.userspace) { $0 }.loaded, false)
    }

    // MARK: - Records

    /// The reader's record is the iterator's: a dump_thread, then the header and the kernel, native and Python frames.
    func testRecordsHaveTheIteratorsLayout() throws {
        var header = sample_header()
        header.tid = 42
        header.flags = UInt16(SAMPLE_NATIVE_COMPLETE.rawValue)
        var thread = dump_thread()
        thread.state = 1
        let record = Dumper.ThreadRecord(
            thread: thread, header: header, kernel: [0xffff_ffff_8100_0010], native: [0x40_0010, 0x40_0110],
            python: [py_frame(code: 0x20_0000, instr: 6, checksum: 9)], notes: ["a note"])
        XCTAssertEqual(Int(record.thread.record_size), MemoryLayout<sample_header>.size + 3 * 8 + MemoryLayout<py_frame>.size)
        let parsed = try XCTUnwrap(Dumper.parse(withUnsafeBytes(of: record.thread) { Array($0) } + record.sample).first)
        XCTAssertEqual(parsed.sample, record.sample)
        XCTAssertEqual(parsed.tid, 42)
        XCTAssertEqual([parsed.header.kernel_frame_count, parsed.header.native_frame_count, parsed.header.py_frame_count], [1, 2, 1])
        let body = MemoryLayout<sample_header>.size
        XCTAssertEqual(record.sample.uint64(at: body), 0xffff_ffff_8100_0010)
        XCTAssertEqual(record.sample.uint64(at: body + 16), 0x40_0110)
        XCTAssertEqual(record.sample.uint64(at: body + 24), 0x20_0000)
        XCTAssertEqual(record.notes, ["a note"])
        XCTAssertFalse(record.isTorn)
    }
}
