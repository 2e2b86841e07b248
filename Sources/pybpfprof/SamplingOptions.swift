import ArgumentParser
import Native
import Profiler
import ProfileModel
import FoundationEssentials
import Glibc

/// What `record` and `top` sample: exactly one target, the rate, and which frames are kept.
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, help: "Profile this process (repeatable).")
    var pid: [Int32] = []

    @Flag(name: .long, help: "Profile every Python process: those running now and those that start later.")
    var all = false

    @Option(name: .long, help: ArgumentHelp(
        "Profile every Python process in this cgroup v2 directory and below it, also those that start later.",
        discussion: "A path under the cgroup v2 mount, or as /proc/PID/cgroup's 0:: line shows it (/system.slice/myapp.service).",
        valueName: "path"))
    var cgroup: String?

    @Option(name: .long, help: ArgumentHelp(
        "Profile every Python process of this container (Docker, containerd, CRI-O, Podman), also those that start later.",
        discussion: "Its ID or the start of it, at least 4 hexadecimal digits (docker ps prints 12).",
        valueName: "id"))
    var container: String?

    @Option(name: .long, help: "Samples per second of CPU time, per CPU.")
    var rate = 100

    @Option(name: .long, help: ArgumentHelp(
        "What to measure: cpu (on-CPU samples), wall (on-CPU samples and the time off a CPU), offcpu (only the time off a CPU), gil (on-CPU samples of the thread that holds the GIL).",
        discussion: "wall and offcpu record each interval a thread spends off a CPU with the stack it blocked in (Python, native "
            + "and kernel frames), weighed by its length and marked [off-CPU: sleeping], [off-CPU: uninterruptible] (disk, "
            + "kernel locks) or [off-CPU: waiting for a CPU]. Intervals shorter than one sampling period (1/rate) are sampled "
            + "with a chance proportional to their length, so a thread that switches very often costs at most one record per "
            + "period of off-CPU time.",
        valueName: "mode"))
    var mode: RecordingMode = .cpu

    @Flag(name: .long, help: "Python frames only: no native or kernel frames.")
    var pythonOnly = false

    @Flag(name: .long, help: "Also show the interpreter's own native frames (libpython), which the default view replaces with the Python frames they run.")
    var interpreterFrames = false

    @Flag(name: .long, help: ArgumentHelp(
        "Load the BPF program as on the oldest supported kernel (5.10), whatever this one offers.",
        discussion: "Bounded loops chained by tail calls instead of bpf_loop, user registers from the kernel stack, preallocated "
            + "mappings. For a kernel whose verifier rejects the default program, and for testing that path."))
    var oldestKernelMode = false

    @OptionGroup var debugFiles: DebugFileOptions

    @OptionGroup var tableCache: TableCacheOptions

    @Argument(parsing: .postTerminator, help: "A command to launch and profile until it exits: -- CMD ARGS...")
    var command: [String] = []

    func validate() throws {
        let targets = (pid.isEmpty ? 0 : 1) + (all ? 1 : 0) + (command.isEmpty ? 0 : 1) + (cgroup == nil ? 0 : 1)
            + (container == nil ? 0 : 1)
        guard targets == 1 else {
            throw ValidationError("give exactly one target: --pid PID, --all, --cgroup PATH, --container ID, or -- CMD ARGS...")
        }
        guard (1...20_000).contains(rate) else { throw ValidationError("--rate must be between 1 and 20000 Hz") }
        if pythonOnly && interpreterFrames {
            throw ValidationError("--python-only records no native frames: drop --interpreter-frames")
        }
    }

    /// The modes `--mode` takes.
    enum RecordingMode: String, ExpressibleByArgument, CaseIterable {
        case cpu, wall, offcpu, gil

        var profileMode: ProfileMode {
            switch self {
            case .cpu: return .cpu
            case .wall: return .wall
            case .offcpu: return .offcpu
            case .gil: return .gil
            }
        }
    }

    /// Whether the target takes every process of a scope (the host, a cgroup) rather than given ones.
    var targetsEveryProcess: Bool { all || cgroup != nil || container != nil }

    /// The target; a `--cgroup` or `--container` that names no cgroup is a one-line error.
    func target() throws -> Target {
        if let cgroup { return .cgroup(try failing { try Containers.cgroup(cgroup) }) }
        if let container { return .cgroup(try failing { try Containers.container(container) }) }
        return all ? .all : command.isEmpty ? .pids(pid) : .command(command)
    }
}

/// `--debug-dir`: debug files on this machine for the stripped files the profiled processes map, beyond their own
/// /usr/lib/debug (shared by `record`, `top` and `dump`).
struct DebugFileOptions: ParsableArguments {
    @Option(name: .customLong("debug-dir"), help: ArgumentHelp(
        "A directory of debug files laid out by build ID, as /usr/lib/debug is: DIR/.build-id/ab/cdef….debug (repeatable).",
        discussion: "Names the functions of stripped files whose debug files are not installed where the process runs. A "
            + "debug file is used only if its build ID is the stripped file's. With DEBUGINFOD_URLS set (space-separated "
            + "servers), the debug files of the stripped files still unnamed are also asked of those servers, through "
            + "libdebuginfod.so.1 (Debian's libdebuginfod1), and kept in its cache (DEBUGINFOD_CACHE_PATH, else "
            + "~/.cache/debuginfod_client).",
        valueName: "dir"))
    var directories: [String] = []

    func validate() throws {
        for directory in directories {
            var status = stat()
            guard stat(directory, &status) == 0, status.st_mode & S_IFMT == S_IFDIR else {
                throw ValidationError("--debug-dir \(directory): no such directory")
            }
        }
    }

    /// The debuginfod servers of `DEBUGINFOD_URLS`, nil when it names none. Where libdebuginfod.so.1 cannot be loaded,
    /// says so on standard error (names from debuginfod are then missing, the recording is not) and gives nil.
    func debuginfodClient(perFileLimit: Double = 30) -> DebuginfodClient? {
        guard let client = DebuginfodClient(environment: ProcessInfo.processInfo.environment, perFileLimit: perFileLimit) else {
            return nil
        }
        if let reason = DebuginfodClient.unavailableReason {
            printToStandardError("pybpfprof: DEBUGINFOD_URLS is set but libdebuginfod cannot be loaded (\(reason)): install "
                + "libdebuginfod1 (Debian, Ubuntu) or elfutils-debuginfod-client (Fedora, RHEL) for names from debuginfod")
            return nil
        }
        return client
    }

    /// The directories as absolute paths: they are opened from the root directory, whatever the working directory.
    var absolutePaths: [String] {
        let workingDirectory = FileManager.default.currentDirectoryPath
        return directories.map { $0.hasPrefix("/") ? $0 : workingDirectory + "/" + $0 }
    }
}

/// Where compiled unwind tables are kept between runs (shared by `record`, `top` and `dump`).
struct TableCacheOptions: ParsableArguments {
    @Option(name: .customLong("table-cache"), help: ArgumentHelp(
        "Keep the unwind tables compiled from the profiled processes' files, and the kernel's symbols, in this directory.",
        discussion: "A process whose files were seen before then has complete native stacks sooner, and every start after "
            + "the first since boot skips reading /proc/kallsyms. Entries are keyed by the digest of what they are made "
            + "from (the kernel's: the boot and its loaded modules), checked on every read (a damaged one is made again), "
            + "and kept under 256 MiB, least recently used first. The directory must be writable by this user only.",
        valueName: "dir"))
    var directory: String = tableCacheDefaultDirectory

    @Flag(name: .customLong("no-table-cache"), help: "Compile every unwind table and read the kernel's symbols, and keep none.")
    var disabled = false

    /// nil when no cache is to be used.
    var resolvedDirectory: String? {
        guard !disabled else { return nil }
        return directory.hasPrefix("/") ? directory : FileManager.default.currentDirectoryPath + "/" + directory
    }
}
