import Glibc

/// A command pybpfprof started (`record -- CMD ARGS...`), with the default signal dispositions restored
/// (the recorder ignores SIGINT/SIGTERM, and ignored signals survive exec).
final class LaunchedCommand {
    let pid: Int32
    let arguments: [String]
    private var exitStatus: Int32?

    init(arguments: [String]) throws {
        precondition(!arguments.isEmpty)
        self.arguments = arguments
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGTERM)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF))

        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, arguments[0], nil, &attributes, &argv, environ)
        guard result == 0 else {
            throw RecordError.launchFailed("cannot run '\(arguments[0])': \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// The exit status once the command has exited (128 + signal when killed by one), else nil.
    func poll() -> Int32? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        let signal = status & 0x7f
        exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
        return exitStatus
    }
}
