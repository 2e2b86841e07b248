/// What `pybpfprof dump` reads of a process (Profiler's `Dumper`), as plain data for its renderings (Exporters'
/// `DumpRendering`).

/// How `dump` reads the threads that are not running.
public enum ThreadReader: String, Sendable, CaseIterable {
    /// The BPF task iterator `dump_threads`: a sleepable program (bpf_copy_from_user_task, Linux 5.18+) that reads
    /// each thread's registers, memory and kernel stack in the kernel.
    case kernelIterator = "kernel-iterator"
    /// `UserspaceThreadReader`: /proc and process_vm_readv, for kernels without the iterator.
    case userspace
}

/// One thread's stack at the moment it was read.
public struct ThreadDump: Sendable {
    public var tid: Int32
    public var name: String
    /// As the scheduler saw it: `running` (on a CPU), `runnable`, `sleeping`, `disk sleep`, `idle`, `stopped`, ...
    public var state: String
    /// Innermost first: kernel frames, then native and Python frames spliced as in a recording.
    public var frames: [Frame]
    /// The CPU of the sample its stacks come from, for a thread that was running when the dump read it (the
    /// iterator cannot read a running thread's registers, see DUMP_THREAD_ON_CPU); nil when the iterator read them.
    public var sampledOnCPU: UInt32?
    /// Why the stack lacks something, if it does: a running thread that could not be sampled has its Python frames
    /// only, a thread that kept running while it was read may mix two moments.
    public var notes: [String]

    public init(tid: Int32, name: String, state: String, frames: [Frame], sampledOnCPU: UInt32?, notes: [String]) {
        self.tid = tid
        self.name = name
        self.state = state
        self.frames = frames
        self.sampledOnCPU = sampledOnCPU
        self.notes = notes
    }
}

/// What `dump` read of one process: every thread's stack at one moment.
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
    /// How the threads were read.
    public var threadReader: ThreadReader
    /// What this dump cannot show because of how its threads were read; empty for the kernel iterator.
    public var limits: [String]

    public init(pid: Int32, commandLine: String, pythonVersion: String, interpreterPath: String, threads: [ThreadDump],
                warnings: [String], threadReader: ThreadReader, limits: [String]) {
        self.pid = pid
        self.commandLine = commandLine
        self.pythonVersion = pythonVersion
        self.interpreterPath = interpreterPath
        self.threads = threads
        self.warnings = warnings
        self.threadReader = threadReader
        self.limits = limits
    }
}
