import CBPF
import CPython
import Foundation
import Native
import ProfileModel
@testable import Profiler
import TestSupport
import XCTest

/// `dump`'s userspace thread reader on its own, with no BPF loaded: what a kernel without the BPF task iterator gets
/// (DumpTests run it through `pybpfprof dump --thread-reader userspace`). Since it needs neither BPF nor a recent
/// kernel, it also runs where pybpfprof's BPF object does not load, such as Debian 11's 5.10 under Scripts/kernel-vm:
///
///     Scripts/kernel-vm linux-image-5.10...deb OUT -- .build/debug/pybpfprofPackageTests.xctest \
///         UserspaceReaderWithoutBPFTests
final class UserspaceReaderWithoutBPFTests: IntegrationTestCase {
    /// A thread asleep in time.sleep read whole: kernel frames from /proc/PID/task/TID/stack, native frames unwound from
    /// the registers of /proc/PID/task/TID/syscall to the thread's start, its Python frames (its thread state found by
    /// native_thread_id on 3.11+, by its robust futex list before); the busy main thread marked for sampling.
    func testSleepingThreadOnEveryInterpreter() throws {
        let fixture = try Workload.load("sleeper.py")
        let sleepLine = try fixture.line("sleeper-sleep")
        let kernelSymbols = try KernelSymbols.read()
        let capacity = 4 << 20
        let rows = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<unwind_row>.stride, alignment: 8)
        defer { rows.deallocate() }
        for interpreter in try PythonInterpreters.supported() {
            let label = "\(interpreter) sleeper.py"
            try stage([fixture.path], for: interpreter)
            let target = try start(interpreter.command([fixture.path, "--seconds", "600"]))
            try target.waitForLine("ready", timeout: 120)
            let mainTID = try printedThreadID("main-tid", in: target.standardOutput)
            let sleeperTID = try printedThreadID("sleeper-tid", in: target.standardOutput)

            let python = try InterpreterLocator.locate(pid: target.pid)
            let store = UnwindTableStore(rows: rows, capacity: capacity)
            let native = try NativeProcess(pid: target.pid, interpreterFile: python.binaryPath, store: store)
            let memory = ProcessMemory(pid: target.pid)
            let reader = UserspaceThreadReader(
                pid: target.pid, interpreter: python, memory: memory,
                native: NativeUnwind(mappings: native.execMappings(), row: store.row(at:), memory: memory),
                collectNativeStacks: true, kernelSymbols: kernelSymbols)
            XCTAssertEqual(reader.limits, [], "\(label): this kernel shows kernel stacks")
            let records = try Dumper.readThreads { reader.read() }

            XCTAssertEqual(Set(records.map { Int32(bitPattern: $0.tid) }), [mainTID, sleeperTID], label)
            let main = try XCTUnwrap(records.first { $0.tid == UInt32(mainTID) }, label)
            XCTAssertTrue(main.isOnCPU, "\(label): the busy main thread is runnable, to be sampled")
            let sleeper = try XCTUnwrap(records.first { $0.tid == UInt32(sleeperTID) }, label)
            XCTAssertFalse(sleeper.isOnCPU || sleeper.isTorn, "\(label): \(sleeper.thread)")
            // Where the unwind needs rbp, which /proc/PID/task/TID/syscall does not show, it stops after libc's frames and
            // says so (PythonInterpreter.sleepUnwindNeedsRBP); else it reaches the thread's start.
            let stopsAtRBP = interpreter.sleepUnwindNeedsRBP
            if stopsAtRBP {
                XCTAssertEqual(sleeper.notes.count, 1, "\(label): \(sleeper.notes)")
                XCTAssertTrue(sleeper.notes.first?.contains("needs rbp") ?? false, "\(label): \(sleeper.notes)")
            } else {
                XCTAssertEqual(sleeper.notes, [], label)
            }
            let flags = UInt32(sleeper.header.flags)
            XCTAssertEqual(flags, stopsAtRBP ? 0 : SAMPLE_NATIVE_COMPLETE.rawValue,
                           "\(label): unwound to the thread's start (or to the frame needing rbp), Python frames whole")

            let decoder = StackDecoder<Frame>(
                interpreter: python, native: native, kernelSymbols: KernelSymbolsSource(kernelSymbols), showInterpreterFrames: false) { $0 }
            let stack = try XCTUnwrap(sleeper.sample.withUnsafeBytes { decoder.decode($0) }, label)
            let frames = Array(stack.frames.reversed())  // innermost first
            let rendered = frames.map { "\($0.kind):\($0.name)" }.joined(separator: " > ")
            XCTAssertEqual(frames.first?.kind, .kernel, "\(label): \(rendered)")
            XCTAssertTrue(frames.contains { $0.kind == .kernel && $0.name.contains("sys_") }, "\(label): a system call: \(rendered)")
            let user = try XCTUnwrap(frames.firstIndex { $0.kind != .kernel }, rendered)
            XCTAssertEqual(frames[user].kind, .native, rendered)
            XCTAssertTrue(frames[user].file.hasPrefix("libc"), "\(label): libc's sleep innermost: \(rendered)")
            XCTAssertTrue(frames.contains { $0.kind == .python && $0.name == "sleeping_function" && $0.line == sleepLine },
                          "\(label): \(rendered)")
            if stopsAtRBP {
                XCTAssertTrue(frames.last?.name.hasSuffix("_bootstrap") ?? false, "\(label): Python frames whole: \(rendered)")
                XCTAssertEqual(frames.filter { $0.kind == .marker }.map(\.name), ["[native unwind incomplete]"], "\(label): \(rendered)")
            } else {
                XCTAssertTrue(threadEntryNames.contains(frames.last?.name ?? ""), "\(label): whole to the thread's start"
                    + threadEntryHint(frames.last?.name, interpreter) + ": \(rendered)")
                XCTAssertFalse(frames.contains { $0.kind == .marker }, "\(label): \(rendered)")
            }
            print("  \(label): \(rendered)")
            target.killIfRunning()
        }
    }
}
