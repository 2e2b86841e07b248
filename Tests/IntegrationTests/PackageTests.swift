import Foundation
import Glibc
import TestSupport
import XCTest

/// The release artifacts Scripts/package writes into dist/ (PYBPFPROF_DIST names another directory), installed the way
/// users install them, in a clean Debian 13 root that has Python, pip's venv and systemd but no Swift, libbpf or libelf
/// (`trixie-clean`, made by Scripts/setup --tests): the wheel with pip into a venv, the .deb with dpkg. Each test works
/// on an overlay of that root, so the root stays clean, and the profiler inside it sees the host's /proc, /sys and /dev
/// as an installed one would.
final class PackageTests: IntegrationTestCase {
    private var mounts: [String] = []

    override func tearDownWithError() throws {
        // The overlay and what is mounted inside it, innermost first, before the scratch directory holding them goes.
        for mount in mounts.reversed() { _ = try? run("/usr/bin/umount", ["-R", "-l", mount]) }
        mounts = []
        try super.tearDownWithError()
    }

    private static var dist: String {
        let named = ProcessInfo.processInfo.environment["PYBPFPROF_DIST"] ?? ""
        return named.isEmpty ? Checkout.root.appendingPathComponent("dist").path : named
    }

    /// The one file in dist/ whose name starts with `prefix` and ends with `suffix`.
    private func artifact(_ prefix: String, _ suffix: String) throws -> String {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: Self.dist)) ?? []
        let matching = names.filter { $0.hasPrefix(prefix) && $0.hasSuffix(suffix) }
        guard matching.count == 1 else {
            throw IntegrationError("expected one \(prefix)*\(suffix) in \(Self.dist), found \(matching): run Scripts/package first")
        }
        return Self.dist + "/" + matching[0]
    }

    /// A writable copy of the clean root (an overlay), with the host's /proc, /sys and /dev inside it.
    private func cleanRoot() throws -> String {
        let lower = DebianRoots.path("trixie-clean")
        guard FileManager.default.fileExists(atPath: lower + "/usr/bin/python3") else {
            throw IntegrationError("the clean Debian root is not at \(lower): run Scripts/setup --tests")
        }
        let upper = scratchFile("upper"), work = scratchFile("work"), merged = scratchFile("root")
        for directory in [upper, work, merged] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try run("/usr/bin/mount", ["-t", "overlay", "overlay", "-o", "lowerdir=\(lower),upperdir=\(upper),workdir=\(work)", merged])
            .requireSuccess()
        mounts.append(merged)
        try run("/usr/bin/mount", ["-t", "proc", "proc", merged + "/proc"]).requireSuccess()
        try run("/usr/bin/mount", ["--rbind", "/sys", merged + "/sys"]).requireSuccess()
        try run("/usr/bin/mount", ["--rbind", "/dev", merged + "/dev"]).requireSuccess()
        // What "clean" means here: nothing pybpfprof could borrow from the root.
        let libraries = (try? FileManager.default.contentsOfDirectory(atPath: merged + "/usr/lib/x86_64-linux-gnu")) ?? []
        let borrowed = libraries.filter { $0.hasPrefix("libbpf.so") || $0.hasPrefix("libelf.so") || $0.hasPrefix("libswiftCore") }
        XCTAssertEqual(borrowed, [], "the clean root has libraries pybpfprof links")
        for program in ["/usr/bin/swift", "/opt/swift", "/usr/bin/pybpfprof"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: merged + program), "the clean root has \(program)")
        }
        return merged
    }

    private func inRoot(_ root: String, _ command: [String], timeout: TimeInterval = 120) throws -> ProcessResult {
        try run(DebianRoots.chroot, [root] + command, timeout: timeout)
    }

    /// Copies the workload into the root and records `python3 workload.py shape` there with `pybpfprof`, the
    /// command as installed; checks the profile names the workload's functions in the root's file.
    private func checkRecording(in root: String, pybpfprof: String) throws {
        let workload = try Workload.load()
        try FileManager.default.copyItem(atPath: workload.path, toPath: root + "/tmp/workload.py")
        let result = try inRoot(root, [pybpfprof, "record", "--rate", "499", "-o", "/tmp/installed.folded", "--",
                                       "python3", "/tmp/workload.py", "shape", "--seconds", "1"])
        try result.requireSuccess()
        let stacks = try FoldedFile.stacks(at: root + "/tmp/installed.folded")
        let names = Set(stacks.flatMap { $0.frames.filter { $0.file == "/tmp/workload.py" }.map(\.name) })
        XCTAssertTrue(names.isSuperset(of: ["run_shape", "heavy", "light"]), "\(names.sorted())\n\(result.report)")
    }

    /// The binary needs glibc alone, and names its version and commit.
    func testBinaryIsSelfContainedAndNamesItsCommit() throws {
        let path = Self.dist + "/pybpfprof"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw IntegrationError("no executable \(path): run Scripts/package first")
        }
        let ldd = try run("/usr/bin/ldd", [path]).requireSuccess()
        let libraries = ldd.standardOutput.split(separator: "\n").compactMap {
            $0.split(separator: " ").first.map { String($0.trimmingCharacters(in: .whitespaces)).split(separator: "/").last.map(String.init) ?? "" }
        }
        XCTAssertFalse(libraries.isEmpty, ldd.report)
        for library in libraries {
            XCTAssertTrue(["linux-vdso.so.1", "libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"].contains(library),
                          "\(library) is not glibc's\n\(ldd.report)")
        }
        let version = try run(path, ["--version"]).requireSuccess()
        let first = version.standardOutput.split(separator: "\n").first.map(String.init) ?? ""
        let commit = try run("/usr/bin/git", ["-C", Checkout.root.path, "rev-parse", "--short=12", "HEAD"]).requireSuccess()
            .standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(first.hasPrefix("pybpfprof 0.") && first.contains("(commit \(commit)"), "\(first), HEAD \(commit)")

        // Stripped, its debug information in the .debug file beside it, which the build ID matches (what debuginfod
        // serves by) and the binary's debuglink names.
        let debug = try artifact("pybpfprof-", ".debug")
        func buildID(_ file: String) throws -> String {
            let notes = try run("/usr/bin/readelf", ["-n", file]).requireSuccess().standardOutput
            return notes.split(separator: "\n").first { $0.contains("Build ID:") }.map { String($0.split(separator: " ").last!) } ?? ""
        }
        XCTAssertFalse(try buildID(path).isEmpty)
        XCTAssertEqual(try buildID(path), try buildID(debug))
        let sections = try run("/usr/bin/readelf", ["-S", "-W", path]).requireSuccess().standardOutput
        XCTAssertFalse(sections.contains(".debug_info") || sections.contains(".symtab"), "not stripped")
        XCTAssertTrue(sections.contains(".gnu_debuglink"))
        let debugSections = try run("/usr/bin/readelf", ["-S", "-W", debug]).requireSuccess().standardOutput
        XCTAssertTrue(debugSections.contains(".debug_info") && debugSections.contains(".symtab"), debugSections)
    }

    /// `pip install` of the wheel into a venv puts `pybpfprof` on the venv's PATH, and it profiles a process of the root.
    func testWheelInstalledWithPipProfilesAProcessInACleanRoot() throws {
        let wheel = try artifact("pybpfprof-", "_x86_64.whl")
        let name = (wheel as NSString).lastPathComponent
        XCTAssertNotNil(name.range(of: #"^pybpfprof-[0-9.]+-py3-none-manylinux_2_[0-9]+_x86_64\.whl$"#, options: .regularExpression), name)
        let root = try cleanRoot()
        try FileManager.default.copyItem(atPath: wheel, toPath: root + "/tmp/" + name)
        try inRoot(root, ["python3", "-m", "venv", "/opt/venv"]).requireSuccess()
        let install = try inRoot(root, ["/opt/venv/bin/pip", "install", "--no-index", "--no-cache-dir", "/tmp/" + name])
        try install.requireSuccess()
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: root + "/opt/venv/bin/pybpfprof"), install.report)
        // On the venv's PATH, as an activated venv has it.
        let which = try inRoot(root, ["/usr/bin/env", "PATH=/opt/venv/bin:/usr/bin:/bin", "sh", "-c", "command -v pybpfprof"])
        XCTAssertEqual(which.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines), "/opt/venv/bin/pybpfprof", which.report)
        try checkRecording(in: root, pybpfprof: "/opt/venv/bin/pybpfprof")
        let uninstall = try inRoot(root, ["/opt/venv/bin/pip", "uninstall", "--yes", "pybpfprof"])
        try uninstall.requireSuccess()
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/opt/venv/bin/pybpfprof"), uninstall.report)
    }

    /// `dpkg -i` installs the binary, its man page, completions, the default settings as a conffile and the unit, which
    /// systemd-analyze accepts and which is not enabled; the service's default options record as it would.
    func testDebianPackageInstallsWithAVerifiedDisabledUnit() throws {
        let package = try artifact("pybpfprof_", "_amd64.deb")
        let name = (package as NSString).lastPathComponent
        let root = try cleanRoot()
        try FileManager.default.copyItem(atPath: package, toPath: root + "/tmp/" + name)
        try inRoot(root, ["dpkg", "-i", "/tmp/" + name]).requireSuccess()

        let help = try inRoot(root, ["pybpfprof", "--help"]).requireSuccess()
        XCTAssertTrue(help.standardOutput.contains("record (default)"), help.report)
        let manual = try inRoot(root, ["sh", "-c", "gzip -dc /usr/share/man/man1/pybpfprof.1.gz"]).requireSuccess()
        XCTAssertTrue(manual.standardOutput.hasPrefix(".TH PYBPFPROF 1"), manual.report)
        XCTAssertTrue(manual.standardOutput.contains("\\-\\-all"), "the man page lists record's options\n\(manual.report)")
        try inRoot(root, ["bash", "-n", "/usr/share/bash-completion/completions/pybpfprof"]).requireSuccess()
        for file in ["/usr/share/zsh/vendor-completions/_pybpfprof", "/usr/share/fish/vendor_completions.d/pybpfprof.fish"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: root + file), file)
        }
        let conffiles = try inRoot(root, ["dpkg-query", "--showformat=${Conffiles}", "--show", "pybpfprof"]).requireSuccess()
        XCTAssertTrue(conffiles.standardOutput.contains("/etc/default/pybpfprof"), conffiles.report)

        let unit = "/usr/lib/systemd/system/pybpfprof.service"
        let verify = try inRoot(root, ["systemd-analyze", "verify", "--man=no", unit])
        XCTAssertTrue(verify.exitedNormally && verify.status == 0 && verify.standardError.isEmpty, verify.report)
        let enabled = try inRoot(root, ["systemctl", "is-enabled", "pybpfprof.service"])
        XCTAssertEqual(enabled.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines), "disabled", enabled.report)

        try checkRecording(in: root, pybpfprof: "/usr/bin/pybpfprof")

        // What the unit runs once enabled: record --all with the default options, here for 2 seconds, in the state
        // directory systemd would make; its rotated files appear there.
        try FileManager.default.createDirectory(atPath: root + "/var/lib/pybpfprof", withIntermediateDirectories: true)
        let service = try inRoot(root, ["sh", "-c", ". /etc/default/pybpfprof && cd /var/lib/pybpfprof && "
            + "exec pybpfprof record --all $PYBPFPROF_OPTIONS --duration 2"])
        try service.requireSuccess()
        let written = (try? FileManager.default.contentsOfDirectory(atPath: root + "/var/lib/pybpfprof")) ?? []
        XCTAssertTrue(written.contains { $0.hasPrefix("host-") && $0.hasSuffix(".pybpfprof") }, "\(written)\n\(service.report)")
    }

    /// The unit runs under systemd as the package installs it, with all its sandboxing: the clean root with the .deb,
    /// PYBPFPROF_ENABLED=yes and one-second periods, booted with systemd-nspawn. The BPF program loads, a rotated
    /// recording (mode 0600) appears each period in the state directory, and at shutdown SIGTERM writes the last one and
    /// the service ends cleanly. nspawn gives the container its own PID namespace, whose pids the kernel's samples do
    /// not carry, so what the periods hold is not checked here (the tests above profile from the host's namespace).
    func testServiceRecordsUnderSystemdWithItsSandbox() throws {
        let package = try artifact("pybpfprof_", "_amd64.deb")
        let name = (package as NSString).lastPathComponent
        let nspawn = "/usr/bin/systemd-nspawn"
        guard FileManager.default.isExecutableFile(atPath: nspawn) else {
            throw IntegrationError("\(nspawn) is missing (systemd-container): run Scripts/setup --tests")
        }
        let root = try cleanRoot()
        try FileManager.default.copyItem(atPath: package, toPath: root + "/tmp/" + name)
        try inRoot(root, ["dpkg", "-i", "/tmp/" + name]).requireSuccess()
        let settings = root + "/etc/default/pybpfprof"
        let defaults = try String(contentsOfFile: settings, encoding: .utf8)
        XCTAssertTrue(defaults.contains("PYBPFPROF_ENABLED=no\n") && defaults.contains("--rotate 600"), defaults)
        try defaults.replacingOccurrences(of: "PYBPFPROF_ENABLED=no", with: "PYBPFPROF_ENABLED=yes")
            .replacingOccurrences(of: "--rotate 600", with: "--rotate 1")
            .write(toFile: settings, atomically: true, encoding: .utf8)
        try inRoot(root, ["systemctl", "enable", "pybpfprof.service"]).requireSuccess()
        // The overlay's mounts of /proc, /sys and /dev are for chroot; nspawn makes its own.
        for mount in ["/proc", "/sys", "/dev"] { try run("/usr/bin/umount", ["-R", root + mount]).requireSuccess() }
        let machine = "pybpfprof-\(getpid())"
        // nspawn's own system call filter refuses bpf(2) and perf_event_open(2), as a container runtime's default does;
        // a host's systemd has no such filter, so they are allowed here.
        let container = try start(nspawn, ["-D", root, "--boot", "--register=no", "--keep-unit", "--capability=all",
                                           "--system-call-filter=bpf perf_event_open", "--console=pipe", "--machine", machine])
        let state = root + "/var/lib/pybpfprof"
        let deadline = Date().addingTimeInterval(90 * Slowdown.factor)
        func recordings() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: state)) ?? []).filter { $0.hasSuffix(".pybpfprof") }.sorted()
        }
        while recordings().count < 2 {
            guard container.isRunning, Date() < deadline else {
                throw IntegrationError("no two rotated recordings in \(state) (\(recordings())): "
                    + (try journal(root)) + "\n--- nspawn ---\n\(container.standardOutput.suffix(3000))")
            }
            usleep(50_000)
        }
        let before = recordings()
        // nspawn asks the container's systemd to shut down, which stops the service with SIGTERM.
        container.send(SIGTERM)
        _ = try container.wait(timeout: 60)
        let log = try journal(root)
        XCTAssertTrue(log.contains("pybpfprof: sampling "), log)
        XCTAssertTrue(log.contains("pybpfprof.service: Deactivated successfully"), log)
        XCTAssertNotNil(log.range(of: #"wrote [0-9]+ periods of 1 s, the last to /var/lib/pybpfprof/host-"#, options: .regularExpression), log)
        let after = recordings()
        XCTAssertGreaterThan(after.count, before.count, "the period in progress at the stop was written: \(before) then \(after)")
        for file in after {
            var status = stat()
            XCTAssertEqual(stat(state + "/" + file, &status), 0)
            XCTAssertEqual(status.st_mode & 0o777, 0o600, "\(file): UMask=0077")
            XCTAssertNotNil(file.range(of: #"^host-[0-9]{8}-[0-9]{6}\.pybpfprof$"#, options: .regularExpression), file)
        }
        let rendered = try runPyBPFProf(["report", state + "/" + after.last!, "-o", scratchFile("last.folded")])
        try rendered.requireSuccess()
    }

    /// The container's journal: the service's lines and systemd's about it.
    private func journal(_ root: String) throws -> String {
        let result = try run("/usr/bin/journalctl", ["--root", root, "--no-pager", "-o", "cat", "--unit", "pybpfprof.service"])
        return "--- journal ---\n" + result.standardOutput.suffix(4000) + result.standardError.suffix(1000)
    }
}
