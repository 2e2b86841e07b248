import ArgumentParser
import Exporters
import Glibc
import ProfileModel
import Profiler

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the current stack of every thread of a Python process, without pausing it.",
        discussion: """
            Each thread's Python, native and kernel frames, innermost first, read by a BPF program while the process \
            keeps running. A thread that is running on a CPU at that moment has no saved registers to read: it is \
            sampled instead (for up to 100 ms), and its stack is its first sample's, marked `(on CPU N, sampled)`.

            Examples:
              sudo pybpfprof dump --pid 1234
              sudo pybpfprof dump --pid 1234 --json | jq '.threads[].frames[0]'
            """
    )

    @Option(name: .long, help: "The process to dump (a thread id stands for its process).")
    var pid: Int32

    @Flag(name: .long, help: "Print JSON: {pid, command, python, interpreter, reader, limits, threads: [{tid, name, state, sampled, notes, frames: [...]}]}, frames innermost first; sampled: the stack is a sample of the running thread; limits: what the way the threads were read (reader) cannot show.")
    var json = false

    @Flag(name: .long, help: "Python frames only: no native or kernel frames.")
    var pythonOnly = false

    @Flag(name: .long, help: "Also show the interpreter's own native frames (libpython), which the default view replaces with the Python frames they run.")
    var interpreterFrames = false

    /// For the tests: the userspace reader is what kernels before 5.18 get, and is tested on newer ones by forcing it.
    @Option(name: .long, help: ArgumentHelp(
        "How threads are read: kernel-iterator (the BPF task iterator, Linux 5.18+) or userspace (/proc and "
            + "process_vm_readv). Default: the kernel iterator when the kernel loads it, else userspace.",
        visibility: .hidden))
    var threadReader: ThreadReader?

    @OptionGroup var debugFiles: DebugFileOptions

    @OptionGroup var tableCache: TableCacheOptions

    func validate() throws {
        guard pid > 0 else { throw ValidationError("--pid must be a process id") }
        if pythonOnly && interpreterFrames {
            throw ValidationError("--python-only reads no native frames: drop --interpreter-frames")
        }
    }

    func run() throws {
        var options = DumpOptions(pid: pid, pythonOnly: pythonOnly, showInterpreterFrames: interpreterFrames, threadReader: threadReader)
        options.debugDirectories = debugFiles.absolutePaths
        options.tableCacheDirectory = tableCache.resolvedDirectory
        if !pythonOnly { options.debuginfod = debugFiles.debuginfodClient(perFileLimit: 10) }
        let dump = try failing { try Dumper.dump(options) }
        for warning in dump.warnings { printToStandardError("pybpfprof: warning: \(warning)") }
        let text = json ? DumpRendering.json(dump) : DumpRendering.text(dump)
        writeAll(text, to: STDOUT_FILENO)
    }
}

extension ThreadReader: ExpressibleByArgument {}
