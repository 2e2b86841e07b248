import Foundation
import Glibc
import TestSupport
import XCTest

// Shared machinery of the integration tests: running processes with time limits, finding the pybpfprof
// binary, the Python interpreters and the workload fixture, and reading the profiles pybpfprof writes.
//
// Whatever a test needs and cannot find (root, an interpreter, the binary, python3's jsonschema) is a
// thrown IntegrationError, which XCTest reports as a failure: these tests never skip, since a suite that
// quietly stops profiling would pass while proving nothing.

struct IntegrationError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}

// MARK: - Test case base

/// Checks the preconditions every integration test shares, gives each test a scratch directory, and ends
/// the processes a test started if the test stops early.
class IntegrationTestCase: XCTestCase {
    /// Removed after the test. Mode 0755, so that a process run as nobody can reach files made inside it.
    private(set) var scratch: URL!
    private var startedProcesses: [RunningProcess] = []
    /// What stage and makeDirectory made in Debian roots, in order; tearDown removes them in reverse.
    private var staged: [(hostPath: String, isCopy: Bool)] = []

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard geteuid() == 0 else {
            throw IntegrationError("the integration tests load BPF programs and read other processes' memory: "
                + "run them as root (sudo swift test --filter IntegrationTests)")
        }
        var template = Array((FileManager.default.temporaryDirectory.path + "/pybpfprof-it-XXXXXX").utf8CString)
        guard let created = mkdtemp(&template) else {
            throw IntegrationError("cannot create a scratch directory: \(String(cString: strerror(errno)))")
        }
        chmod(created, 0o755)
        scratch = URL(fileURLWithPath: String(cString: created), isDirectory: true)
    }

    override func tearDownWithError() throws {
        for process in startedProcesses { process.killIfRunning() }
        startedProcesses = []
        if let scratch { try? FileManager.default.removeItem(at: scratch) }
        removeStaged()
        try super.tearDownWithError()
    }

    /// Starts a process that tearDown kills if it is still running then.
    func start(_ executable: String, _ arguments: [String]) throws -> RunningProcess {
        let process = try RunningProcess(executable, arguments, outputDirectory: scratch)
        startedProcesses.append(process)
        return process
    }

    /// Starts `command` (an argv: PythonInterpreter.command) as start(executable, arguments) does.
    func start(_ command: [String]) throws -> RunningProcess {
        try start(command[0], Array(command.dropFirst()))
    }

    /// Runs a process to its end, killing it and failing past `timeout` seconds.
    func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 60) throws -> ProcessResult {
        try start(executable, arguments).wait(timeout: timeout)
    }

    func run(_ command: [String], timeout: TimeInterval = 60) throws -> ProcessResult {
        try run(command[0], Array(command.dropFirst()), timeout: timeout)
    }

    /// The path of a program a test needs (its PATH, then /usr/bin, /bin, /usr/sbin); fails naming the package to install
    /// (Scripts/setup --tests installs them all).
    func tool(_ name: String, package: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin", "/usr/sbin"] {
            let candidate = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw IntegrationError("this test needs `\(name)`: install \(package) (Scripts/setup --tests does)")
    }

    /// Runs `pybpfprof ARGUMENTS...` to its end.
    func runPyBPFProf(_ arguments: [String], timeout: TimeInterval = 60) throws -> ProcessResult {
        try run(try PyBPFProfBinary.path(), arguments, timeout: timeout)
    }

    /// Runs `pybpfprof ARGUMENTS` (a recording of the running process `pid`) to its end, and reads the CPU time `pid`
    /// used from the line that says sampling has started to pybpfprof's exit: what a recording of a busy process holds
    /// follows from that (about rate x CPU seconds samples), which a loaded machine shrinks, not from the duration asked.
    func recordMeasuringCPU(of pid: Int32, _ arguments: [String], timeout: TimeInterval = 120) throws
        -> (result: ProcessResult, cpuSeconds: Double)
    {
        let recorder = try start(try PyBPFProfBinary.path(), arguments)
        try recorder.waitForLine("pybpfprof: sampling", timeout: timeout, onStandardError: true)
        let before = processCPUSeconds(pid)
        let result = try recorder.wait(timeout: timeout)
        return (result, processCPUSeconds(pid) - before)
    }

    func scratchFile(_ name: String) -> String {
        scratch.appendingPathComponent(name).path
    }

    // MARK: Files in Debian roots

    /// Makes host files and directories (absolute paths) visible to `interpreter` at the same paths, so that its Python
    /// frames name the same files as the host's interpreters do: for an interpreter in a Debian root, copies each to
    /// ROOT + path (a directory whole), making the directories above it that the root lacks; tearDown removes the
    /// copies and those directories. Nothing to do for the host's interpreters. A path already staged in this test (or
    /// under a directory that was) is not copied again; a leftover copy of an earlier run that was killed is replaced.
    func stage(_ paths: [String], for interpreter: PythonInterpreter) throws {
        guard let root = interpreter.root else { return }
        for path in paths {
            let destination = try DebianRoots.hostPath(of: path, in: root)
            if staged.contains(where: { $0.isCopy && (destination == $0.hostPath || destination.hasPrefix($0.hostPath + "/")) }) {
                continue
            }
            try makeParents(of: path, in: root)
            try removeLeftover(destination)
            do {
                try FileManager.default.copyItem(atPath: path, toPath: destination)
            } catch {
                throw IntegrationError("cannot copy \(path) into \(interpreter)'s root at \(destination): \(error)")
            }
            staged.append((destination, true))
        }
    }

    /// An empty directory (mode 0755) that `interpreter` sees at `path`, for files made for it (a C extension built in its
    /// root): `path` itself on the host; ROOT + path for an interpreter in a Debian root, removed by tearDown. Returns
    /// `path`.
    func makeDirectory(_ path: String, for interpreter: PythonInterpreter) throws -> String {
        guard let root = interpreter.root else {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            return path
        }
        let destination = try DebianRoots.hostPath(of: path, in: root)
        try makeParents(of: path, in: root)
        try removeLeftover(destination)
        guard mkdir(destination, 0o755) == 0 else {
            throw IntegrationError("cannot make \(destination): \(String(cString: strerror(errno)))")
        }
        staged.append((destination, true))
        return path
    }

    /// Makes the directories above `path` in `root` that do not exist (0755), recording them for tearDown. Refuses a
    /// symbolic link on the way: one could lead out of the root.
    private func makeParents(of path: String, in root: String) throws {
        let hostPath = try DebianRoots.hostPath(of: path, in: root)
        var directory = try DebianRoots.hostPath(of: "/", in: root, allowingRootItself: true)
        for component in path.split(separator: "/").dropLast() {
            directory += "/" + component
            var status = stat()
            if lstat(directory, &status) == 0 {
                guard status.st_mode & S_IFMT == S_IFDIR else {
                    throw IntegrationError("cannot stage \(hostPath): \(directory) is not a directory (a symbolic link could "
                        + "lead out of the root)")
                }
                continue
            }
            guard errno == ENOENT, mkdir(directory, 0o755) == 0 else {
                throw IntegrationError("cannot make \(directory): \(String(cString: strerror(errno)))")
            }
            // mkdir's mode is masked by the umask.
            chmod(directory, 0o755)
            staged.append((directory, false))
        }
    }

    /// Removes what a run killed before its tearDown left at `hostPath` (inside a root).
    private func removeLeftover(_ hostPath: String) throws {
        var status = stat()
        guard lstat(hostPath, &status) == 0 else { return }
        do {
            try FileManager.default.removeItem(atPath: hostPath)
        } catch {
            throw IntegrationError("cannot remove the leftover \(hostPath): \(error)")
        }
    }

    /// Removes the copies stage and makeDirectory made, and the directories made to hold them while they are empty (an
    /// earlier test's or another run's may share them).
    private func removeStaged() {
        for entry in staged.reversed() {
            if entry.isCopy {
                try? FileManager.default.removeItem(atPath: entry.hostPath)
            } else {
                rmdir(entry.hostPath)
            }
        }
        staged = []
    }

    /// Builds Fixtures/native/callback_ext.c for `interpreter` (NativeFixtures.buildCallbackExtension) into a new
    /// directory `name` of the scratch directory as the interpreter sees it: for an interpreter in a Debian root, with the
    /// root's own gcc and headers, from the source staged at its path in the root, into that path in the root. Returns
    /// the directory, which is the interpreter's path to it.
    func buildCallbackExtension(for interpreter: PythonInterpreter, into name: String) throws -> String {
        let source = Checkout.fixtures.appendingPathComponent("native/callback_ext.c").path
        try stage([source], for: interpreter)
        let directory = try makeDirectory(scratchFile(name), for: interpreter)
        _ = try NativeFixtures.buildCallbackExtension(
            python: interpreter.command(), compiler: interpreter.compilerCommand, root: interpreter.root, source: source,
            into: directory)
        return directory
    }
}

// MARK: - Processes

struct ProcessResult {
    var commandLine: String
    /// The exit status, or the signal number when `killedBySignal`.
    var status: Int32
    var killedBySignal: Bool
    var standardOutput: String
    var standardError: String
    var seconds: Double

    var exitedNormally: Bool { !killedBySignal }

    /// Everything a failure message needs to tell what ran and how it ended.
    var report: String {
        let ending = killedBySignal ? "killed by signal \(status)" : "exit status \(status)"
        return "`\(commandLine)` ended with \(ending) after \(String(format: "%.1f", seconds)) s\n"
            + "--- stderr ---\n\(standardError.suffix(4000))\n--- stdout ---\n\(standardOutput.suffix(2000))"
    }

    /// Throws unless the process exited with status 0.
    @discardableResult
    func requireSuccess() throws -> ProcessResult {
        guard exitedNormally, status == 0 else { throw IntegrationError("expected success: \(report)") }
        return self
    }

    /// The first two lines of the summary `record` prints: `N samples from ... records lost` and `errors: ...`.
    var recordingSummary: String {
        let lines = standardErrorLines
        guard let start = lines.firstIndex(where: { $0.contains(" samples from ") }) else { return "no summary on stderr" }
        return lines[start..<min(start + 2, lines.count)].joined(separator: "; ")
    }

    /// How many times the summary's `errors:` line counts `name` ("interpreter state unreadable"); 0 when absent.
    func errorCount(_ name: String) -> Int {
        guard let line = standardErrorLines.first(where: { $0.hasPrefix("errors: ") }),
              let range = line.range(of: name + " ") else { return 0 }
        return Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    /// The lines of stderr that are not empty.
    var standardErrorLines: [String] {
        standardError.split(separator: "\n").map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    }
}

/// CPU time the threads of process `pid` have used so far, in seconds: utime + stime of /proc/PID/stat (fields 14
/// and 15, counted after the parenthesised command name, which may hold spaces). 0 once it is gone.
func processCPUSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let nameEnd = stat.lastIndex(of: ")") else { return 0 }
    let fields = stat[stat.index(after: nameEnd)...].split(separator: " ")
    // fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A child process whose stdout and stderr go to files, so that the test can read what it printed so far
/// while it runs, and no pipe can fill up and stall it.
final class RunningProcess {
    let commandLine: String
    private let process = Process()
    private let standardOutputURL: URL
    private let standardErrorURL: URL
    private let startTime = Date()

    init(_ executable: String, _ arguments: [String], outputDirectory: URL) throws {
        commandLine = ([executable] + arguments).joined(separator: " ")
        let stem = "process-\(UUID().uuidString.prefix(8))"
        standardOutputURL = outputDirectory.appendingPathComponent("\(stem).stdout")
        standardErrorURL = outputDirectory.appendingPathComponent("\(stem).stderr")
        _ = FileManager.default.createFile(atPath: standardOutputURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: standardErrorURL.path, contents: nil)
        let outputHandle = try FileHandle(forWritingTo: standardOutputURL)
        let errorHandle = try FileHandle(forWritingTo: standardErrorURL)
        // The child holds its own copies of the descriptors once it runs.
        defer {
            try? outputHandle.close()
            try? errorHandle.close()
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = outputHandle
        process.standardError = errorHandle
        do {
            try process.run()
        } catch {
            throw IntegrationError("cannot start `\(commandLine)`: \(error)")
        }
    }

    var pid: Int32 { process.processIdentifier }

    var isRunning: Bool { process.isRunning }

    /// What the process printed on stdout so far.
    var standardOutput: String {
        (try? String(contentsOf: standardOutputURL, encoding: .utf8)) ?? ""
    }

    var standardError: String {
        (try? String(contentsOf: standardErrorURL, encoding: .utf8)) ?? ""
    }

    /// Waits until the process prints `line` as a whole line on stdout; throws if it exits first or takes
    /// longer than `timeout` seconds (times PYBPFPROF_TEST_SLOWDOWN).
    /// Waits for a line of standard output equal to `line`, or with `onStandardError`, a line of standard error
    /// starting with it.
    func waitForLine(_ line: String, timeout unscaledTimeout: TimeInterval, onStandardError: Bool = false) throws {
        let timeout = unscaledTimeout * Slowdown.factor
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if onStandardError {
                if standardError.split(separator: "\n").contains(where: { $0.hasPrefix(line) }) { return }
            } else if standardOutput.split(separator: "\n").contains(where: { $0 == line }) {
                return
            }
            if !process.isRunning {
                throw IntegrationError("`\(commandLine)` exited (status \(process.terminationStatus)) before printing "
                    + "'\(line)'\n--- stderr ---\n\(standardError)\n--- stdout ---\n\(standardOutput)")
            }
            if Date() > deadline {
                throw IntegrationError("`\(commandLine)` did not print '\(line)' within \(timeout) s\n--- stderr ---\n"
                    + "\(standardError)\n--- stdout ---\n\(standardOutput)")
            }
            usleep(10_000)
        }
    }

    /// CPU time its threads have used so far, in seconds (`processCPUSeconds`).
    var cpuSeconds: Double { processCPUSeconds(pid) }

    /// Waits until the process has used `seconds` more CPU time than `cpuSeconds` said at the call: what a sampling
    /// profiler sees of a busy process depends on the CPU it got, not on wall time, which a busy machine stretches.
    /// Throws if it exits first or takes longer than `timeout` seconds (times PYBPFPROF_TEST_SLOWDOWN).
    func waitForCPU(seconds: Double, timeout unscaledTimeout: TimeInterval) throws {
        let target = cpuSeconds + seconds
        let deadline = Date().addingTimeInterval(unscaledTimeout * Slowdown.factor)
        while cpuSeconds < target {
            guard process.isRunning else { throw IntegrationError("`\(commandLine)` exited while it was to use \(seconds) s of CPU") }
            if Date() > deadline {
                throw IntegrationError("`\(commandLine)` used less than \(seconds) s of CPU in \(unscaledTimeout * Slowdown.factor) s")
            }
            usleep(10_000)
        }
    }

    func send(_ signalNumber: Int32) {
        kill(pid, signalNumber)
    }

    /// Waits for the process to end; past `timeout` seconds (times PYBPFPROF_TEST_SLOWDOWN) kills it and throws.
    func wait(timeout unscaledTimeout: TimeInterval) throws -> ProcessResult {
        let timeout = unscaledTimeout * Slowdown.factor
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                killIfRunning()
                throw IntegrationError("`\(commandLine)` did not finish within \(timeout) s and was killed\n"
                    + "--- stderr ---\n\(standardError)\n--- stdout ---\n\(standardOutput.suffix(2000))")
            }
            usleep(10_000)
        }
        process.waitUntilExit()
        return ProcessResult(
            commandLine: commandLine, status: process.terminationStatus,
            killedBySignal: process.terminationReason == .uncaughtSignal,
            standardOutput: standardOutput, standardError: standardError,
            seconds: Date().timeIntervalSince(startTime))
    }

    func killIfRunning() {
        guard process.isRunning else { return }
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }
}

/// PYBPFPROF_TEST_SLOWDOWN: how many times slower than the machines the tests' times were chosen on this one is
/// (default 1). Scripts/test-kernels runs the tests under qemu's emulation, where loading the BPF program and
/// compiling a binary's unwind table take many seconds. It multiplies every time limit a test sets on a process it
/// waits for, the lifetime of targets a test must find still running after such a wait (DumpTests), the run of a
/// launched workload whose native frames must be unwound (MixedStackTests), which has to outlast the tables'
/// compiling, short children that must outlast their interpreter's locating, and a recording that processes started
/// after it must fall into (ProcessFollowingTests, ContainerTests), and the CPU time of the GIL workload (GILModeTests:
/// in 2 s under emulation the Python thread, started second, got 12% of the CPU beside the compressing one).
enum Slowdown {
    static let factor: Double = {
        guard let text = ProcessInfo.processInfo.environment["PYBPFPROF_TEST_SLOWDOWN"], !text.isEmpty else { return 1 }
        guard let factor = Double(text), factor >= 1 else {
            fatalError("PYBPFPROF_TEST_SLOWDOWN=\(text): expected a number, 1 or more")
        }
        return factor
    }()
}

// MARK: - Locations

enum Checkout {
    /// The checkout's root: this file is Tests/IntegrationTests/<file>, symbolic links resolved.
    static var root: URL {
        let file: String
        if let resolved = realpath(#filePath, nil) {
            file = String(cString: resolved)
            free(resolved)
        } else {
            file = #filePath
        }
        return URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    static var fixtures: URL {
        root.appendingPathComponent("Tests/IntegrationTests/Fixtures", isDirectory: true)
    }
}

enum PyBPFProfBinary {
    /// The pybpfprof executable built beside the test bundle. `swift test` does not build it: `swift build` does.
    /// PYBPFPROF_BINARY names another one (Scripts/test-kernels runs the release build under emulation, where the
    /// debug build is too slow to compile unwind tables while a test's workload runs).
    static func path() throws -> String {
        if let binary = ProcessInfo.processInfo.environment["PYBPFPROF_BINARY"], !binary.isEmpty {
            guard FileManager.default.isExecutableFile(atPath: binary) else {
                throw IntegrationError("PYBPFPROF_BINARY=\(binary) is not an executable file")
            }
            return binary
        }
        let bundle = Bundle(for: IntegrationTestCase.self).bundleURL
        // On Linux the bundle is .build/<config>/<package>PackageTests.xctest, the executable its sibling.
        let candidates = [
            bundle.deletingLastPathComponent().appendingPathComponent("pybpfprof").path,
            bundle.appendingPathComponent("pybpfprof").path,
        ]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw IntegrationError("the pybpfprof executable is not at \(candidates[0]): run swift build first "
                + "(swift test builds the tests but not the executable they run)")
        }
        return found
    }
}

// MARK: - Python interpreters

struct PythonInterpreter: CustomStringConvertible {
    /// Its name in PYBPFPROF_TEST_INTERPRETERS (`3.8`, `debian`, `sid-3.14`): unique, so fit for file names too.
    var name: String
    /// e.g. "pyenv 3.8.18", "Debian /usr/bin/python3.11" or "Debian sid /usr/bin/python3.14".
    var label: String
    /// The executable, as the interpreter's own filesystem names it: the host's, or its Debian root's.
    var path: String
    /// "3.8": the minor version the tests expect pybpfprof to see.
    var minorVersion: String
    /// The Debian root (Scripts/setup --tests) it runs in with chroot, since its libc is newer than the host's; nil
    /// for the host's interpreters.
    var root: String?

    var description: String { label }

    /// The argv that runs it with `arguments`: `PATH ARGUMENTS...` on the host, `chroot ROOT PATH ARGUMENTS...` in a
    /// root, where chroot execs the interpreter (so the process started is the interpreter, with the same pid).
    /// A file the arguments name must be visible at that path in the root: IntegrationTestCase.stage.
    func command(_ arguments: [String] = []) -> [String] {
        guard let root else { return [path] + arguments }
        return [DebianRoots.chroot, root, path] + arguments
    }

    /// Debian sid's 3.15 is built with frame pointers (PEP 831 made them upstream's default in 3.15), and the code under
    /// its time.sleep finds its caller's frame through rbp. A thread asleep there unwinds from the registers of
    /// /proc/PID/task/TID/syscall, which show sp and pc but not rbp, as far as libc and no further: the userspace thread
    /// reader (kernels before 5.18) stops there and says why, its Python frames whole. The BPF task iterator reads rbp.
    var sleepUnwindNeedsRBP: Bool { name == "sid-3.15" }

    /// The C compiler that builds extensions for it: the host's cc, or its root's own gcc (with the root's headers).
    var compilerCommand: [String] {
        guard let root else { return ["cc"] }
        return [DebianRoots.chroot, root, "/usr/bin/gcc"]
    }
}

enum PythonInterpreters {
    /// The CPythons pybpfprof supports, by their names in PYBPFPROF_TEST_INTERPRETERS, in the order the tests run
    /// them: pyenv's 2.7 and 3.6 to 3.13, Debian's /usr/bin/python3.11, and Debian's own builds in the roots
    /// Scripts/setup --tests makes (trixie's 3.13, sid's 3.13 to 3.15): 14. Adding an interpreter is adding its line.
    static let catalog: [(name: String, find: () throws -> PythonInterpreter)] = [
        ("2.7", { try pyenv("2.7", program: "python2.7") }),
        ("3.6", { try pyenv("3.6") }),
        ("3.7", { try pyenv("3.7") }),
        ("3.8", { try pyenv("3.8") }),
        ("3.9", { try pyenv("3.9") }),
        ("3.10", { try pyenv("3.10") }),
        ("3.11", { try pyenv("3.11") }),
        ("3.12", { try pyenv("3.12") }),
        ("3.13", { try pyenv("3.13") }),
        ("debian", { try debian311() }),
        ("trixie-3.13", { try debianRoot("trixie", "3.13") }),
        ("sid-3.13", { try debianRoot("sid", "3.13") }),
        ("sid-3.14", { try debianRoot("sid", "3.14") }),
        ("sid-3.15", { try debianRoot("sid", "3.15") }),
    ]

    /// Every interpreter of the catalog, each found or thrown for (a missing one fails the test, never skips it).
    ///
    /// PYBPFPROF_TEST_INTERPRETERS (comma-separated names from the catalog: `2.7`, `3.6` ... `3.13` for pyenv's, `debian` for
    /// Debian's 3.11, `trixie-3.13`, `sid-3.13`, `sid-3.14`, `sid-3.15` for the roots' builds) restricts the tests that
    /// loop over every interpreter to those listed, for runs where each interpreter costs minutes (Scripts/test-kernels,
    /// under emulation, whose guests see the host's files read-only and so are given no root's interpreter). Unset or
    /// empty: all of them.
    static func supported() throws -> [PythonInterpreter] {
        let names = catalog.map(\.name)
        let selection = (ProcessInfo.processInfo.environment["PYBPFPROF_TEST_INTERPRETERS"] ?? "")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if let unknown = selection.first(where: { !names.contains($0) }) {
            throw IntegrationError("PYBPFPROF_TEST_INTERPRETERS names '\(unknown)': expected a comma-separated list of "
                + names.joined(separator: ", "))
        }
        return try catalog.filter { selection.isEmpty || selection.contains($0.name) }.map { try $0.find() }
    }

    static func debian311() throws -> PythonInterpreter {
        let path = "/usr/bin/python3.11"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw IntegrationError("Debian's Python 3.11 is missing at \(path): apt-get install python3.11")
        }
        return PythonInterpreter(name: "debian", label: "Debian \(path)", path: path, minorVersion: "3.11")
    }

    /// Debian's own `/usr/bin/pythonM.m` in the root of `suite` (`trixie`, `sid`) that Scripts/setup --tests makes.
    static func debianRoot(_ suite: String, _ minorVersion: String) throws -> PythonInterpreter {
        let root = DebianRoots.path(suite)
        let path = "/usr/bin/python\(minorVersion)"
        guard FileManager.default.isExecutableFile(atPath: root + path) else {
            throw IntegrationError("Debian \(suite)'s python\(minorVersion) is missing at \(root + path) (Scripts/setup "
                + "--tests makes the \(suite) root in $PYBPFPROF_ROOTS_DIR, default \(DebianRoots.defaultDirectory)): "
                + "run sudo Scripts/setup --tests")
        }
        guard FileManager.default.isExecutableFile(atPath: DebianRoots.chroot) else {
            throw IntegrationError("\(DebianRoots.chroot) is missing: the tests run Debian \(suite)'s python\(minorVersion) "
                + "with it (apt-get install coreutils)")
        }
        return PythonInterpreter(name: "\(suite)-\(minorVersion)", label: "Debian \(suite) \(path)", path: path,
                                 minorVersion: minorVersion, root: root)
    }

    /// The newest pyenv build of `minorVersion` (`versions/3.8.18/bin/python3`); free-threaded and other
    /// variant builds (`3.13.0t`) are left out.
    static func pyenv(_ minorVersion: String, program: String = "python3") throws -> PythonInterpreter {
        let root = try Pyenv.root()
        let versionsDirectory = root + "/versions"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: versionsDirectory)) ?? []
        let micros = names.compactMap { name -> (name: String, micro: Int)? in
            guard name.hasPrefix(minorVersion + "."), let micro = Int(name.dropFirst(minorVersion.count + 1)) else { return nil }
            return (name, micro)
        }
        guard let newest = micros.max(by: { $0.micro < $1.micro }) else {
            throw IntegrationError("no pyenv CPython \(minorVersion) in \(versionsDirectory) (found: "
                + "\(names.sorted().joined(separator: ", "))): pyenv install \(minorVersion)")
        }
        let path = "\(versionsDirectory)/\(newest.name)/bin/\(program)"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw IntegrationError("pyenv's CPython \(newest.name) has no \(path)")
        }
        return PythonInterpreter(name: minorVersion, label: "pyenv \(newest.name)", path: path, minorVersion: minorVersion)
    }
}

/// The Debian roots Scripts/setup --tests makes with debootstrap (`trixie` and `sid`, each with its pythonM.m, their -dev
/// packages and gcc), where TestSupport's DebianRoots says.
extension DebianRoots {
    /// `path` (absolute) as the host sees it in `root`: ROOT + path. Throws for a path that is not absolute or has `.` or
    /// `..` components, and for a root that is not an absolute path other than /, so that it never names a place
    /// outside the root.
    static func hostPath(of path: String, in root: String, allowingRootItself: Bool = false) throws -> String {
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        guard path.hasPrefix("/"), allowingRootItself || !components.isEmpty,
              !components.contains(where: { $0 == "." || $0 == ".." }) else {
            throw IntegrationError("cannot stage \(path) in a root: not an absolute path without . and ..")
        }
        let rootComponents = root.split(separator: "/", omittingEmptySubsequences: true)
        guard root.hasPrefix("/"), !rootComponents.isEmpty, !rootComponents.contains(where: { $0 == "." || $0 == ".." }) else {
            throw IntegrationError("not a root to stage files in: \(root)")
        }
        return "/" + (rootComponents + components).joined(separator: "/")
    }
}

// MARK: - Thread entries

/// The names of libc's outermost frame on a thread other than the main one: `clone` (glibc before 2.34), `clone3` (the
/// host's 2.36), `__clone3` (2.41 and later, as the debug files of Debian trixie's and sid's libc name it).
let threadEntryNames: Set<String> = ["clone", "clone3", "__clone3"]

/// For a failure message about a thread's outermost frame `name`: when it is libc's but has no name (`libc.so.6+0x…`),
/// why. libc names clone3 and start_thread only in its debug file (the libc6-dbg package): the host has it
/// (Scripts/setup), a Debian root may not.
func threadEntryHint(_ name: String?, _ interpreter: PythonInterpreter) -> String {
    guard let name, name.hasPrefix("libc.so.6+0x") else { return "" }
    let place = interpreter.root.map { "the root \($0)" } ?? "this machine"
    return " (libc's thread entry has no name: its symbols are in libc6-dbg's debug file, which \(place) lacks)"
}

// MARK: - The workload fixture

/// Fixtures/workload.py and what the tests read from its text: lines marked `# LINE:name`, the lines each
/// function spans, and its constants.
struct Workload {
    let path: String
    private let lines: [String]

    /// `fixture`: a path under Tests/IntegrationTests/Fixtures.
    static func load(_ fixture: String = "workload.py") throws -> Workload {
        let path = Checkout.fixtures.appendingPathComponent(fixture).path
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw IntegrationError("cannot read the workload fixture at \(path)")
        }
        return Workload(path: path, lines: text.components(separatedBy: "\n"))
    }

    /// The 1-based number of the one line ending in `# LINE:<marker>`.
    func line(_ marker: String) throws -> Int {
        let suffix = "# LINE:\(marker)"
        let matches = lines.indices.filter { lines[$0].trimmingCharacters(in: .whitespaces).hasSuffix(suffix) }
        guard matches.count == 1 else {
            throw IntegrationError("\(path) has \(matches.count) lines marked '\(suffix)', expected exactly one")
        }
        return matches[0] + 1
    }

    /// The 1-based lines of `def name(...)` and its body: a sample may be on any of them (the def line
    /// itself on 3.11+, where entering a function runs an instruction attributed to it).
    func lines(ofFunction name: String) throws -> ClosedRange<Int> {
        guard let start = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("def \(name)(") }) else {
            throw IntegrationError("\(path) defines no function \(name)")
        }
        let indentation = lines[start].prefix { $0 == " " }.count
        var end = start
        for index in (start + 1)..<lines.count {
            let text = lines[index]
            if text.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            if text.prefix(while: { $0 == " " }).count <= indentation { break }
            end = index
        }
        return (start + 1)...(end + 1)
    }

    /// Every function the file defines (`def name(`), with the lines it spans.
    func functionSpans() throws -> [String: ClosedRange<Int>] {
        var spans: [String: ClosedRange<Int>] = [:]
        for text in lines {
            let code = text.trimmingCharacters(in: .whitespaces)
            guard code.hasPrefix("def "), let open = code.firstIndex(of: "(") else { continue }
            let name = String(code[code.index(code.startIndex, offsetBy: 4)..<open])
            spans[name] = try self.lines(ofFunction: name)
        }
        return spans
    }

    /// The value of a module-level `NAME = <integer>` line.
    func integerConstant(_ name: String) throws -> Int {
        for text in lines where text.hasPrefix("\(name) = ") {
            let value = text.dropFirst(name.count + 3).prefix { $0.isNumber }
            if let number = Int(value) { return number }
        }
        throw IntegrationError("\(path) has no integer constant \(name)")
    }
}

/// The native thread ids the workload prints: `main-tid N`, `worker-tid N`, `late-tid N`.
func printedThreadID(_ name: String, in standardOutput: String) throws -> Int32 {
    for line in standardOutput.split(separator: "\n") {
        let words = line.split(separator: " ")
        if words.count == 2, words[0] == name, let id = Int32(words[1]) { return id }
    }
    throw IntegrationError("the workload did not print '\(name) N'; its stdout was:\n\(standardOutput)")
}

// MARK: - Profiles

/// One frame as the profile files show it: a marker like `[truncated]` has no file and line 0.
struct ProfileFrame: Hashable, CustomStringConvertible {
    var name: String
    var file: String
    var line: Int

    /// A Python frame: in a `.py` file. Native frames name their library, kernel frames and markers no file.
    var isPython: Bool { file.hasSuffix(".py") }

    /// As in the folded format: `name (file:line)`.
    var description: String {
        if file.isEmpty { return name }
        return line == 0 ? "\(name) (\(file))" : "\(name) (\(file):\(line))"
    }
}

/// Root first.
typealias ProfileStack = [ProfileFrame]

/// One thread's samples from a speedscope file.
struct ThreadSamples {
    var profileName: String
    var pid: Int32
    var tid: Int32
    /// One stack per sample, in time order.
    var stacks: [ProfileStack]
}

enum SpeedscopeFile {
    /// The per-thread profiles of a speedscope file pybpfprof wrote, read from their names
    /// (`python3 pid 100 tid 101 (threadname)`) and sample lists.
    static func threads(at path: String) throws -> [ThreadSamples] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw IntegrationError("pybpfprof wrote no profile at \(path)")
        }
        guard let document = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let shared = document["shared"] as? [String: Any],
              let frameObjects = shared["frames"] as? [[String: Any]],
              let profiles = document["profiles"] as? [[String: Any]]
        else {
            throw IntegrationError("\(path) is not a speedscope file with shared.frames and profiles")
        }
        let frames = frameObjects.map { object in
            ProfileFrame(name: object["name"] as? String ?? "", file: object["file"] as? String ?? "",
                         line: object["line"] as? Int ?? 0)
        }
        let namePattern = try NSRegularExpression(pattern: #"pid (\d+) tid (\d+)"#)
        return try profiles.map { profile in
            let name = profile["name"] as? String ?? ""
            guard let match = namePattern.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)),
                  let pid = Int32(name[Range(match.range(at: 1), in: name)!]),
                  let tid = Int32(name[Range(match.range(at: 2), in: name)!])
            else {
                throw IntegrationError("speedscope profile name '\(name)' in \(path) does not say 'pid N tid N'")
            }
            guard let samples = profile["samples"] as? [[Int]] else {
                throw IntegrationError("speedscope profile '\(name)' in \(path) has no samples list")
            }
            let stacks = try samples.map { sample in
                try sample.map { index -> ProfileFrame in
                    guard frames.indices.contains(index) else {
                        throw IntegrationError("a sample of '\(name)' in \(path) names frame \(index) of \(frames.count)")
                    }
                    return frames[index]
                }
            }
            return ThreadSamples(profileName: name, pid: pid, tid: tid, stacks: stacks)
        }
    }
}

/// One line of a folded file: a stack and how many samples had it.
struct FoldedStack {
    var frames: ProfileStack
    var count: Int

    /// Only the Python frames: without native ones, the kernel's (folded marks them with the `_[k]` suffix)
    /// and markers.
    var pythonFrames: ProfileStack { frames.filter(\.isPython) }

    /// Sampled before its process's native tables were loaded (a process running when recording started has its Python
    /// stacks sampled at once, its native frames from `nativeStacksReadyLine` on).
    var nativeFramesNotLoaded: Bool { frames.first?.name == nativeFramesNotLoadedMarker }
}

/// The frame a sample taken before its process's native tables were loaded begins with, in place of its native frames.
let nativeFramesNotLoadedMarker = "[native frames not loaded yet]"

/// What `record` prints on standard error once the processes running at its start have their native tables.
let nativeStacksReadyLine = "pybpfprof: native stacks of "

enum FoldedFile {
    static func stacks(at path: String) throws -> [FoldedStack] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw IntegrationError("pybpfprof wrote no profile at \(path)")
        }
        return try String(decoding: data, as: UTF8.self).split(separator: "\n").map { line in
            guard let space = line.lastIndex(of: " "), let count = Int(line[line.index(after: space)...]) else {
                throw IntegrationError("folded line without a count in \(path): \(line.prefix(200))")
            }
            let frames = line[..<space].split(separator: ";", omittingEmptySubsequences: false).map { parseFrame(String($0)) }
            return FoldedStack(frames: frames, count: count)
        }
    }

    /// `name (file:line)`, `name (file)` or a bare name (a marker such as `[truncated]`).
    static func parseFrame(_ text: String) -> ProfileFrame {
        guard text.hasSuffix(")"), let open = text.range(of: " (", options: .backwards) else {
            return ProfileFrame(name: text, file: "", line: 0)
        }
        let name = String(text[..<open.lowerBound])
        let location = text[open.upperBound..<text.index(before: text.endIndex)]
        if let colon = location.lastIndex(of: ":"), let line = Int(location[location.index(after: colon)...]) {
            return ProfileFrame(name: name, file: String(location[..<colon]), line: line)
        }
        return ProfileFrame(name: name, file: String(location), line: 0)
    }
}

// MARK: - Statistics

/// How far an observed fraction may stray from the expected one: `sigmas` standard deviations of the
/// fraction of `trials` binomial draws with success probability `expected`.
func binomialBound(expected: Double, trials: Int, sigmas: Double = 4) -> Double {
    sigmas * (expected * (1 - expected) / Double(max(trials, 1))).squareRoot()
}

// MARK: - Error output

/// Words in stderr that mean the process crashed or trapped instead of reporting an error.
let crashSigns = ["Fatal error", "Stack dump", "backtrace", "Illegal instruction", "Segmentation fault"]

/// Fails unless `result` is the clean failure the CLI promises: a non-zero exit (not a signal), stderr's
/// first line starting with `pybpfprof: error:` or ArgumentParser's `Error:` and containing every one of
/// `keywords`, no sign of a crash, and, for pybpfprof's own errors, no other line.
func assertCleanError(_ result: ProcessResult, keywords: [String], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(result.exitedNormally, "expected an exit, not a signal: \(result.report)", file: file, line: line)
    XCTAssertNotEqual(result.status, 0, "expected a non-zero exit status: \(result.report)", file: file, line: line)
    for sign in crashSigns where result.standardError.range(of: sign, options: .caseInsensitive) != nil {
        XCTFail("stderr shows a crash ('\(sign)'): \(result.report)", file: file, line: line)
    }
    guard let first = result.standardErrorLines.first else {
        XCTFail("expected an error message on stderr: \(result.report)", file: file, line: line)
        return
    }
    let fromPyBPFProf = first.hasPrefix("pybpfprof: error: ")
    XCTAssertTrue(fromPyBPFProf || first.hasPrefix("Error: "),
                  "stderr's first line should start with 'pybpfprof: error:' or 'Error:': \(result.report)", file: file, line: line)
    if fromPyBPFProf {
        XCTAssertEqual(result.standardErrorLines.count, 1, "expected a one-line error: \(result.report)", file: file, line: line)
    }
    for keyword in keywords where !first.contains(keyword) {
        XCTFail("the error should say '\(keyword)': \(first)", file: file, line: line)
    }
    print("    \(result.commandLine.split(separator: " ").dropFirst().joined(separator: " ")) -> exit \(result.status): \(first)")
}
