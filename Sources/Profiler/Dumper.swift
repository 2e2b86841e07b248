import BPFKit
import CBPF
import CPython
import Foundation
import Glibc
import Native

public struct DumpOptions: Sendable {
    /// The process (a thread id stands for its process).
    public var pid: Int32
    /// Only Python frames: no native or kernel frames (and none are collected).
    public var pythonOnly: Bool
    /// Also show the interpreter's own native frames (libpython), which the default view leaves out.
    public var showInterpreterFrames: Bool
    /// Kernel memory for the native unwind rows of every file the process maps.
    public var unwindTableBytes: Int

    public init(pid: Int32, pythonOnly: Bool = false, showInterpreterFrames: Bool = false, unwindTableBytes: Int = 16 << 20) {
        self.pid = pid
        self.pythonOnly = pythonOnly
        self.showInterpreterFrames = showInterpreterFrames
        self.unwindTableBytes = unwindTableBytes
    }
}

/// One thread's stack at the moment it was read.
public struct ThreadDump: Sendable {
    public var tid: Int32
    public var name: String
    /// As the scheduler saw it: `running` (on a CPU), `runnable`, `sleeping`, `disk sleep`, `idle`, `stopped`, ...
    public var state: String
    /// Innermost first: kernel frames, then native and Python frames spliced as in a recording.
    public var frames: [Frame]
    /// Why the stack lacks something, if it does: a running thread's native and kernel frames cannot be read
    /// (see DUMP_THREAD_ON_CPU), a thread that kept running while it was read may mix two moments.
    public var notes: [String]
}

public struct ProcessDump: Sendable {
    public var pid: Int32
    public var commandLine: String
    /// "3.12.1" and the like.
    public var pythonVersion: String
    /// The file holding the interpreter (the python executable or libpython).
    public var interpreterPath: String
    /// The main thread first, then by thread id.
    public var threads: [ThreadDump]
    /// What went wrong on the way without spoiling the dump (files without unwind tables, unreadable code objects).
    public var warnings: [String]
}

public enum DumpError: Error, CustomStringConvertible {
    case kernelTooOld(String)
    case noThreads(pid: Int32)

    public var description: String {
        switch self {
        case .kernelTooOld(let release):
            return "pybpfprof dump needs Linux 5.18 or newer (it reads other threads' memory with bpf_copy_from_user_task); this kernel is \(release)"
        case .noThreads(let pid):
            return "no thread of process \(pid) could be read: it exited meanwhile"
        }
    }
}

/// `pybpfprof dump`: the current stack of every thread of one Python process, read by the BPF task iterator
/// `dump_threads` (see the end of bpf/pybpfprof.bpf.c) without stopping, tracing or writing to the process. The
/// iterator reaches threads that sleep, which a sampler never sees; a thread that is on a CPU at that moment
/// gets its Python frames only.
public enum Dumper {
    /// Readings of the process at most: torn readings and running threads are read again, the best kept.
    static let attempts = 4

    public static func dump(_ options: DumpOptions) throws -> ProcessDump {
        try Preflight.check()
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let version = Preflight.kernelVersion(release), version < (5, 18) { throw DumpError.kernelTooOld(release) }

        let pid = ProcessScanner.threadGroup(of: options.pid)
        let interpreter = try InterpreterLocator.locate(pid: pid)
        let nativeStacks = !options.pythonOnly

        let object = try BPFObject(elf: EmbeddedBPF.object, name: "pybpfprof")
        try object.setAutoload(program: "dump_threads", true)
        // The sampler's entry point is never attached here; its tail-call target stays (the prog array names it).
        try object.setAutoload(program: "on_sample", false)
        // Nothing goes through the ring buffer: the smallest one.
        try object.setMaxEntries(map: "samples", UInt32(sysconf(Int32(_SC_PAGESIZE))))
        let unwindRowCapacity = nativeStacks ? max(1, options.unwindTableBytes / MemoryLayout<unwind_row>.stride) : 1
        try object.setMaxEntries(map: "unwind_rows", UInt32(unwindRowCapacity))
        try object.setConstant("collect_native_stacks", UInt8(nativeStacks ? 1 : 0))
        try object.setConstant("collect_kernel_stacks", UInt8(nativeStacks ? 1 : 0))
        try object.load()

        try BPFMap(fd: try object.mapFD(named: "processes")).update(UInt32(bitPattern: pid), py_process(interpreter))
        var warnings: [String] = []
        var native: NativeProcess?
        var kernelSymbols: KernelSymbols?
        if nativeStacks {
            let rows = try MappedArrayMap(
                fd: try object.mapFD(named: "unwind_rows"), valueSize: MemoryLayout<unwind_row>.stride, entries: unwindRowCapacity)
            let store = UnwindTableStore(rows: rows.base, capacity: unwindRowCapacity)
            do {
                let process = try NativeProcess(pid: pid, interpreterFile: interpreter.binaryPath, store: store)
                try process.bpfValue().withUnsafeBytes {
                    try BPFMap(fd: try object.mapFD(named: "process_mappings")).update(UInt32(bitPattern: pid), bytes: $0)
                }
                native = process
            } catch {
                warnings.append("native frames of process \(pid): \(error)")
            }
            for (path, reason) in store.filesWithoutTable.sorted(by: { $0.key < $1.key }) {
                warnings.append("no unwind table for \(path) (\(reason)): its frames unwind by frame pointer")
            }
            kernelSymbols = try KernelSymbols.read()
        }

        let records = try readThreads(program: try object.program(named: "dump_threads"), pid: pid)
        guard !records.isEmpty else {
            throw kill(pid, 0) != 0 && errno == ESRCH ? InterpreterError.processGone(pid: pid) : DumpError.noThreads(pid: pid)
        }
        let decoder = StackDecoder<Frame>(
            interpreter: interpreter, native: native, kernelSymbols: kernelSymbols,
            showInterpreterFrames: options.showInterpreterFrames) { $0 }
        var threads: [ThreadDump] = []
        for record in records {
            guard let stack = record.sample.withUnsafeBytes({ decoder.decode($0) }) else { continue }
            let onCPU = record.thread.flags & DUMP_THREAD_ON_CPU.rawValue != 0
            var notes: [String] = []
            if onCPU {
                notes.append("running on CPU \(stack.header.cpu): its Python frames were read while they changed (the outermost "
                    + "may be missing)" + (nativeStacks ? "; its native and kernel frames cannot be read without stopping it" : ""))
            }
            if record.thread.flags & DUMP_THREAD_SWITCHED.rawValue != 0 && !onCPU {
                notes.append("it ran while being read: its frames may mix two moments")
            }
            threads.append(ThreadDump(
                tid: Int32(bitPattern: stack.header.tid), name: stack.threadName,
                state: describeState(record.thread.state, onCPU: onCPU), frames: stack.frames.reversed(), notes: notes))
        }
        threads.sort { ($0.tid == pid ? 0 : 1, $0.tid) < ($1.tid == pid ? 0 : 1, $1.tid) }
        for (reason, count) in decoder.unresolvedFrames.sorted(by: { $0.key < $1.key }) {
            warnings.append("\(count) Python frame\(count == 1 ? "" : "s") unresolved: \(reason)")
        }
        return ProcessDump(
            pid: pid, commandLine: ProcessScanner.commandLine(pid: pid), pythonVersion: interpreter.version.description,
            interpreterPath: interpreter.binaryPath, threads: threads, warnings: warnings)
    }

    /// One thread's record as the iterator wrote it.
    struct ThreadRecord {
        var thread: dump_thread
        /// A `struct sample`: header and the used part of the body.
        var sample: [UInt8]

        var header: sample_header { sample.withUnsafeBytes { $0.loadUnaligned(as: sample_header.self) } }
        var tid: UInt32 { header.tid }
        var isOnCPU: Bool { thread.flags & DUMP_THREAD_ON_CPU.rawValue != 0 }
        /// Not on a CPU, yet it ran while being read, or its Python walk hit memory that changed under it (a frame
        /// popped while read): worth reading again.
        var isTorn: Bool {
            (thread.flags & DUMP_THREAD_SWITCHED.rawValue != 0 && !isOnCPU) || UInt32(header.flags) & SAMPLE_READ_ERROR.rawValue != 0
        }

        /// Of two readings of one thread: the clean one, and for a running thread the deeper Python stack (a thread
        /// that returns from frames while its chain is read ends its walk early, never late).
        func isBetter(than other: ThreadRecord) -> Bool {
            if other.isTorn != isTorn { return !isTorn }
            return isOnCPU && header.py_frame_count > other.header.py_frame_count
        }
    }

    /// Runs the iterator up to `attempts` times while some reading is torn or some thread is running (whose
    /// chain can change while it is read), and keeps each thread's best reading. Threads in the order first read.
    static func readThreads(program: OpaquePointer, pid: Int32) throws -> [ThreadRecord] {
        var records: [ThreadRecord] = []
        var index: [UInt32: Int] = [:]
        for attempt in 0..<attempts {
            for record in try parse(try TaskIterator.run(program: program, process: pid)) {
                if let known = index[record.tid] {
                    if record.isBetter(than: records[known]) { records[known] = record }
                } else if attempt == 0 {
                    // Threads started after the first reading are not part of this dump.
                    index[record.tid] = records.count
                    records.append(record)
                }
            }
            if !records.contains(where: { $0.isTorn || $0.isOnCPU }) { break }
        }
        return records
    }

    /// Splits the iterator's output into records: a struct dump_thread, then record_size bytes of struct sample.
    static func parse(_ bytes: [UInt8]) throws -> [ThreadRecord] {
        let prefixSize = MemoryLayout<dump_thread>.size
        var records: [ThreadRecord] = []
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= prefixSize else { throw DumpFormatError(offset: offset, total: bytes.count) }
            let thread = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: dump_thread.self) }
            let start = offset + prefixSize
            let size = Int(thread.record_size)
            guard size >= MemoryLayout<sample_header>.size, size <= MemoryLayout<sample>.size, bytes.count - start >= size else {
                throw DumpFormatError(offset: offset, total: bytes.count)
            }
            records.append(ThreadRecord(thread: thread, sample: Array(bytes[start..<start + size])))
            offset = start + size
        }
        return records
    }

    /// `task->__state` (include/linux/sched.h) in words.
    static func describeState(_ state: UInt32, onCPU: Bool) -> String {
        if onCPU { return "running" }
        if state == 0 { return "runnable" }
        if state & 0x8000 != 0 { return "frozen" }
        if state & 0x8 != 0 { return "traced" }
        if state & 0x4 != 0 { return "stopped" }
        if state & 0x80 != 0 { return "dead" }
        if state & 0x1 != 0 { return "sleeping" }
        if state & 0x2 != 0 { return state & 0x400 != 0 ? "idle" : "disk sleep" }
        return "state 0x\(String(state, radix: 16))"
    }
}

/// The iterator's output does not split into whole records: the BPF program and this decoder disagree.
struct DumpFormatError: Error, CustomStringConvertible {
    var offset: Int
    var total: Int

    var description: String {
        "the BPF dump output is malformed at byte \(offset) of \(total): the BPF program and pybpfprof disagree on its layout"
    }
}
