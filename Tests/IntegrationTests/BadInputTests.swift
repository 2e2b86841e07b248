import Foundation
import Glibc
import XCTest

/// Every mistake a user can make gets a one-line error naming the problem and a non-zero exit, never a
/// crash (see assertCleanError).
final class BadInputTests: IntegrationTestCase {
    /// Sleeps in a loop after printing "ready"; valid Python 2.7 too, which cannot run the workload fixture.
    private static let sleeperScript = "import sys, time\nsys.stdout.write('ready\\n')\nsys.stdout.flush()\nwhile True:\n    time.sleep(1)\n"

    func testNotRoot() throws {
        let python = try startSleepingPython(try PythonInterpreters.debian311())
        let binary = try binaryReachableByNobody()
        // A directory nobody may write, so that the output path is not what fails.
        let outputDirectory = scratch.appendingPathComponent("nobody-output")
        try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o777])
        let switchUser = try asNobody()
        let result = try run(switchUser[0], Array(switchUser.dropFirst()) + [
            binary, "record", "--pid", "\(python.pid)", "--duration", "1",
            "-o", outputDirectory.appendingPathComponent("out.folded").path,
        ])
        assertCleanError(result, keywords: ["must run as root"])
    }

    func testPidThatIsNotPython() throws {
        let sleeper = try start("/bin/sleep", ["30"])
        // sleep exec'd once start returns; give it a moment to be the sleep binary, not the parent's image.
        usleep(100_000)
        let result = try runPyBPFProf(["record", "--pid", "\(sleeper.pid)", "--duration", "1", "-o", scratchFile("out.folded")])
        assertCleanError(result, keywords: ["\(sleeper.pid)", "not running a CPython"])
    }

    func testPidThatIsGone() throws {
        let pid = try pidOfExitedProcess()
        let result = try runPyBPFProf(["record", "--pid", "\(pid)", "--duration", "1", "-o", scratchFile("out.folded")])
        assertCleanError(result, keywords: ["\(pid)", "does not exist"])
    }

    /// Attaching, sampling starts before the kernel's symbols are read: hidden ones still end the recording with the
    /// one-line error naming the fix, as a launched command's recording does before the command starts.
    func testHiddenKernelSymbols() throws {
        let setting = "/proc/sys/kernel/kptr_restrict"
        let before = try String(contentsOfFile: setting, encoding: .utf8)
        try "2".write(toFile: setting, atomically: false, encoding: .utf8)
        defer { try? before.write(toFile: setting, atomically: false, encoding: .utf8) }
        let python = try startSleepingPython(try PythonInterpreters.debian311())
        // An empty cache: one filled earlier would hold the symbols of this boot.
        for target in [["--pid", "\(python.pid)"], ["--", "/bin/true"]] {
            let result = try runPyBPFProf(["record", "--duration", "5", "--table-cache", scratchFile("cache-\(target[0])"),
                                           "-o", scratchFile("out.folded")] + target)
            assertCleanError(result, keywords: ["/proc/kallsyms shows no addresses", "kptr_restrict=2", "sysctl kernel.kptr_restrict=1"])
            XCTAssertFalse(FileManager.default.fileExists(atPath: scratchFile("out.folded")))
        }
    }

    func testUnknownFormat() throws {
        let result = try runPyBPFProf(["record", "--pid", "1", "--format", "xml", "-o", scratchFile("out.folded")])
        assertCleanError(result, keywords: ["xml"])
    }

    func testOutputInMissingDirectory() throws {
        let result = try runPyBPFProf(["record", "--pid", "1", "-o", "/nonexistent-dir/out.folded"])
        assertCleanError(result, keywords: ["cannot write", "/nonexistent-dir", "does not exist"])
    }

    /// sysfs refuses new files even to root, whose access(2) check says the directory is writable. The
    /// check before recording catches it ("is not writable"), so no recording is lost to it.
    func testOutputInUnwritableDirectory() throws {
        let python = try startSleepingPython(try PythonInterpreters.debian311())
        let result = try runPyBPFProf(["record", "--pid", "\(python.pid)", "--duration", "1", "-o", "/sys/out.folded"])
        assertCleanError(result, keywords: ["cannot write", "/sys/out.folded", "is not writable"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/sys/out.folded"))
    }

    func testDebugDirectoryThatDoesNotExist() throws {
        for command in [["record", "--pid", "1", "-o", scratchFile("out.folded")], ["dump", "--pid", "1"]] {
            let result = try runPyBPFProf(command + ["--debug-dir", "/nonexistent-debug-dir"])
            assertCleanError(result, keywords: ["--debug-dir /nonexistent-debug-dir", "no such directory"])
        }
    }

    func testNoTarget() throws {
        let result = try runPyBPFProf(["record", "-o", scratchFile("out.folded")])
        assertCleanError(result, keywords: ["give exactly one target"])
    }

    func testCommandThatDoesNotExist() throws {
        let missing = "pybpfprof-no-such-command"
        let result = try runPyBPFProf(["record", "-o", scratchFile("out.folded"), "--", missing, "--flag"])
        assertCleanError(result, keywords: ["cannot run", missing, "No such file"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratchFile("out.folded")), "no profile for a command that never ran")
    }

    func testCommandThatNeverRunsPython() throws {
        let result = try runPyBPFProf(["record", "-o", scratchFile("out.folded"), "--", "/bin/true"])
        assertCleanError(result, keywords: ["/bin/true", "without ever running a supported CPython"])
    }

    // MARK: - Helpers

    /// A Python process that has initialized its interpreter (it printed "ready") and sleeps.
    private func startSleepingPython(_ interpreter: PythonInterpreter) throws -> RunningProcess {
        let python = try start(interpreter.command(["-c", Self.sleeperScript]))
        try python.waitForLine("ready", timeout: 30)
        return python
    }

    /// The pid of a process that has exited and been reaped, and that no new process has taken since.
    private func pidOfExitedProcess() throws -> Int32 {
        for _ in 0..<5 {
            let exited = try start("/bin/true", [])
            _ = try exited.wait(timeout: 10)
            let pid = exited.pid
            if kill(pid, 0) != 0 && errno == ESRCH { return pid }
        }
        throw IntegrationError("every exited /bin/true's pid was reused at once, five times over")
    }

    /// setpriv or runuser, switching to nobody (65534) with no supplementary groups.
    private func asNobody() throws -> [String] {
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") {
            return ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        }
        for path in ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"] where FileManager.default.isExecutableFile(atPath: path) {
            return [path, "-u", "nobody", "--"]
        }
        throw IntegrationError("neither setpriv nor runuser is installed (apt-get install util-linux): the not-root test runs pybpfprof as nobody")
    }

    /// The pybpfprof binary, copied to the scratch directory (0755) when nobody cannot reach it where it is.
    private func binaryReachableByNobody() throws -> String {
        let binary = try PyBPFProfBinary.path()
        let switchUser = try asNobody()
        let check = try run(switchUser[0], Array(switchUser.dropFirst()) + ["/usr/bin/test", "-x", binary], timeout: 10)
        if check.exitedNormally && check.status == 0 { return binary }
        let copy = scratch.appendingPathComponent("pybpfprof").path
        try FileManager.default.copyItem(atPath: binary, toPath: copy)
        chmod(copy, 0o755)
        return copy
    }
}
