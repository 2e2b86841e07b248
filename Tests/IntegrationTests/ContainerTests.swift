import Exporters
import Foundation
import Glibc
import TestSupport
import XCTest

/// Processes in containers, profiled from the host: a Python in its own pid and mount namespaces with a private root
/// (built here with `unshare` and `pivot_root`, no container engine), and `--cgroup` / `--container` restricting
/// sampling to one cgroup.
final class ContainerTests: IntegrationTestCase {
    /// Where the container's Python lives, inside its root; nothing is at this path on the host.
    private static let pythonHome = "/opt/container-python"
    private static let workloadInRoot = "/app/container_workload.py"
    /// The build ID both builds of the native fixture carry (ld --build-id=0x...), so that the decoy's debug file
    /// is, by its build ID, a valid debug file of the library the container maps.
    private static let buildID = "5e1f0c0ffee0ddba11c0ffee0ddba11c0ffee0d5"

    private func isKernel(_ frame: ProfileFrame) -> Bool { frame.name.hasSuffix("_[k]") }

    // MARK: - A private root

    /// A root directory holding pyenv's CPython 3.12 (shared libpython) at `pythonHome`, the part of its standard
    /// library the workload uses, the libraries `ldd` lists and the dynamic loader, `umount` (to detach the host's
    /// root after pivot_root) and the workload at `workloadInRoot`.
    private func buildRoot() throws -> (root: String, python: PythonInterpreter) {
        let python = try PythonInterpreters.pyenv("3.12")
        guard !FileManager.default.fileExists(atPath: Self.pythonHome) else {
            throw IntegrationError("\(Self.pythonHome) exists on the host: the container test needs a path only the container has")
        }
        let root = scratchFile("root")
        let installation = URL(fileURLWithPath: python.path).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent().path
        let executable = URL(fileURLWithPath: python.path).resolvingSymlinksInPath().path
        let library = installation + "/lib/libpython3.12.so.1.0"
        guard FileManager.default.fileExists(atPath: library) else {
            throw IntegrationError("\(python.label) has no shared \(library): the container test needs a shared libpython")
        }
        try copy(executable, to: root + Self.pythonHome + "/bin/python3.12")
        try copy(library, to: root + Self.pythonHome + "/lib/libpython3.12.so.1.0")
        // 3.12 freezes the modules of its startup but encodings; os.py is the landmark sys.prefix is found by.
        let standardLibrary = installation + "/lib/python3.12"
        try copy(standardLibrary + "/os.py", to: root + Self.pythonHome + "/lib/python3.12/os.py")
        try FileManager.default.copyItem(atPath: standardLibrary + "/encodings", toPath: root + Self.pythonHome + "/lib/python3.12/encodings")
        try FileManager.default.createDirectory(atPath: root + Self.pythonHome + "/lib/python3.12/lib-dynload", withIntermediateDirectories: true)
        for binary in [executable, "/usr/bin/umount"] {
            for dependency in try sharedLibraries(of: binary) where !dependency.hasPrefix(installation) {
                try copy(dependency, to: root + dependency)
            }
        }
        try copy("/usr/bin/umount", to: root + "/usr/bin/umount")
        for directory in ["/proc", "/.oldroot", "/tmp"] {
            try FileManager.default.createDirectory(atPath: root + directory, withIntermediateDirectories: true)
        }
        try copy(Checkout.fixtures.appendingPathComponent("container/container_workload.py").path, to: root + Self.workloadInRoot)
        return (root, python)
    }

    /// Copies a file (a symbolic link's target), creating the directories on the way.
    private func copy(_ source: String, to destination: String) throws {
        try FileManager.default.createDirectory(atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: destination)
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: source).resolvingSymlinksInPath().path, toPath: destination)
    }

    /// The absolute paths `ldd` prints for a binary: its libraries and the dynamic loader.
    private func sharedLibraries(of binary: String) throws -> [String] {
        let result = try run("/usr/bin/ldd", [binary]).requireSuccess()
        return result.standardOutput.split(separator: "\n").compactMap { line in
            line.split(whereSeparator: { $0 == " " || $0 == "\t" }).first { $0.hasPrefix("/") }.map(String.init)
        }
    }

    /// Runs `python container_workload.py ARGUMENTS` in its own pid and mount namespaces with `root` as its root
    /// (pivot_root, the host's root detached), waits for "ready" and returns the process's pid on the host.
    private func startContainer(root: String, arguments: [String]) throws -> (host: RunningProcess, pid: Int32) {
        for tool in ["/usr/bin/unshare", "/usr/bin/mount", "/usr/sbin/pivot_root"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw IntegrationError("the container tests need \(tool) (util-linux): apt-get install util-linux mount")
        }
        let command = "/usr/bin/mount --make-rprivate / && /usr/bin/mount --bind \(root) \(root) && /usr/bin/mount -t proc proc \(root)/proc "
            + "&& cd \(root) && /usr/sbin/pivot_root . .oldroot && /usr/bin/umount -l /.oldroot && unset PYTHONHOME PYTHONPATH "
            + "&& export LD_LIBRARY_PATH=\(Self.pythonHome)/lib && exec \(Self.pythonHome)/bin/python3.12 \(Self.workloadInRoot) "
            + arguments.joined(separator: " ")
        let unshare = try start("/usr/bin/unshare", ["--mount", "--pid", "--fork", "--kill-child", "/bin/sh", "-c", command])
        try unshare.waitForLine("ready", timeout: 60)
        // The forked child of unshare is pid 1 of the new namespace, and became the Python.
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for pid in entries.compactMap({ Int32($0) }) {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  status.split(separator: "\n").contains(where: { $0.hasPrefix("PPid:") && $0.split(separator: "\t").last.map(String.init) == String(unshare.pid) })
            else { continue }
            let namespacePids = status.split(separator: "\n").first { $0.hasPrefix("NSpid:") }?.split(separator: "\t").dropFirst() ?? []
            guard namespacePids.count == 2, namespacePids.last == "1" else {
                throw IntegrationError("process \(pid) should be pid 1 of a new pid namespace, its NSpid is \(namespacePids)")
            }
            let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
            guard executable == Self.pythonHome + "/bin/python3.12" else {
                throw IntegrationError("process \(pid) runs \(executable), not the container's Python")
            }
            return (unshare, pid)
        }
        throw IntegrationError("found no child of unshare (pid \(unshare.pid)): \(unshare.standardError)")
    }

    // MARK: - Tests

    /// A Python at a path the host does not have, in its own namespaces: its stacks, with the file names the
    /// container sees, the lines of the hot function, and libpython's native frames named.
    func testPythonInItsOwnNamespacesAndRootIsProfiledFromTheHost() throws {
        let workload = try Workload.load("container/container_workload.py")
        let hotLines = try workload.lines(ofFunction: "hot_in_container")
        let (root, _) = try buildRoot()
        let (container, pid) = try startContainer(root: root, arguments: ["python", "600"])

        let output = scratchFile("container.folded")
        let (recording, cpuSeconds) = try recordMeasuringCPU(of: pid, [
            "record", "--pid", String(pid), "--duration", "2", "--rate", "499", "--interpreter-frames", "-o", output, "--format", "folded",
        ])
        let result = try recording.requireSuccess()
        container.killIfRunning()

        let stacks = try FoldedFile.stacks(at: output)
        let total = stacks.reduce(0) { $0 + $1.count }
        var hot = 0, hotWithNativeFrames = 0, hotNotLoaded = 0
        var elsewhere: [String: Int] = [:]
        for stack in stacks {
            let python = stack.pythonFrames
            guard let leaf = python.last, leaf.name == "hot_in_container" else {
                elsewhere[python.map(\.description).joined(separator: ";"), default: 0] += stack.count
                continue
            }
            XCTAssertEqual(leaf.file, Self.workloadInRoot, "the file as the container sees it")
            XCTAssertTrue(hotLines.contains(leaf.line), "line \(leaf.line) is not in hot_in_container (\(hotLines))")
            XCTAssertEqual(python.map(\.name), ["<module>", "main", "hot_in_container"])
            hot += stack.count
            // Sampled from the start, its native frames once its tables were loaded.
            if stack.nativeFramesNotLoaded {
                hotNotLoaded += stack.count
                continue
            }
            // The interpreter's native frames, named from the container's libpython: the eval loop right below the
            // first Python frame, and the way down to main.
            let user = stack.frames.filter { !isKernel($0) }
            if let first = user.firstIndex(where: \.isPython), first > 0,
               user[first - 1].name.hasPrefix("_PyEval_EvalFrameDefault"), user[first - 1].file == "libpython3.12.so.1.0",
               user.contains(where: { $0.name == "Py_RunMain" && $0.file == "libpython3.12.so.1.0" }) {
                hotWithNativeFrames += stack.count
            }
        }
        print("  container pid \(pid) on the host: \(total) samples, \(hot) in hot_in_container, \(hotNotLoaded) of them before its "
              + "native tables were loaded, \(hotWithNativeFrames) with libpython's named frames below; elsewhere: "
              + "\(elsewhere.sorted { $0.value > $1.value }.prefix(3))")
        print("    \(result.recordingSummary)")
        // About 499 a second of the CPU it got while sampled (2 s on an idle machine, less on a loaded one).
        XCTAssertGreaterThan(Double(total), 0.5 * 499 * cpuSeconds, "\(cpuSeconds) s of CPU\n\(result.report)")
        XCTAssertGreaterThan(total, 50, result.report)
        XCTAssertGreaterThanOrEqual(Double(hot) / Double(max(total, 1)), 0.8, "elsewhere: \(elsewhere)")
        XCTAssertGreaterThan(hot - hotNotLoaded, 20, "samples with native frames: \(result.report)")
        XCTAssertGreaterThanOrEqual(Double(hotWithNativeFrames) / Double(max(hot - hotNotLoaded, 1)), 0.95)
    }

    /// In the container, the build-ID path of a stripped extension's debug file is a symbolic link to an absolute path
    /// that, on the host, holds a decoy debug file (same build ID, the hot function renamed) and, inside the
    /// container's root, the real one. The profiler must name the hot function from the container's file: read as
    /// /proc/PID/root + path, the kernel would follow the link out to the host's decoy.
    func testLinkToAHostFileIsNotFollowedOutOfTheContainer() throws {
        let (root, python) = try buildRoot()
        let builds = try buildNativeFixture(python: python)
        try copy(builds.stripped, to: root + "/app/hotext.so")
        let debugPath = "/usr/lib/debug/.build-id/\(Self.buildID.prefix(2))/\(Self.buildID.dropFirst(2)).debug"
        let hostDecoy = scratchFile("host/hotext.debug")
        try copy(builds.decoyDebug, to: hostDecoy)
        try copy(builds.debug, to: root + hostDecoy)
        try FileManager.default.createDirectory(atPath: root + (debugPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + debugPath, withDestinationPath: hostDecoy)

        let (container, pid) = try startContainer(root: root, arguments: ["native", "600"])
        // The trap is set: through the kernel's view of the process's root the link reaches the host's decoy.
        let throughProc = FileManager.default.contents(atPath: "/proc/\(pid)/root\(debugPath)")
        XCTAssertEqual(throughProc, FileManager.default.contents(atPath: builds.decoyDebug), "/proc/PID/root + path should lead to the decoy")

        let output = scratchFile("link.folded")
        let (recording, cpuSeconds) = try recordMeasuringCPU(of: pid, [
            "record", "--pid", String(pid), "--duration", "2", "--rate", "499", "-o", output, "--format", "folded",
        ])
        let result = try recording.requireSuccess()
        container.killIfRunning()

        let stacks = try FoldedFile.stacks(at: output)
        let total = stacks.reduce(0) { $0 + $1.count }
        // Sampled before the process's native tables were loaded: no native frames to name.
        let loaded = stacks.filter { !$0.nativeFramesNotLoaded }.reduce(0) { $0 + $1.count }
        var leaves: [String: Int] = [:]
        var named = 0, decoy = 0
        for stack in stacks {
            let user = stack.frames.filter { !isKernel($0) }
            if stack.frames.contains(where: { $0.name.contains("hostdecoy") }) { decoy += stack.count }
            guard let leaf = user.last else { continue }
            leaves[leaf.description, default: 0] += stack.count
            if leaf.name == "container_native_burn", leaf.file == "hotext.so",
               user.dropLast().last?.name == "spin", stack.pythonFrames.last?.name == "native_in_container" {
                named += stack.count
            }
        }
        print("  container pid \(pid): \(total) samples, \(loaded) with native frames, \(named) in container_native_burn named from "
              + "the container's debug file; "
              + "leaves: \(leaves.sorted { $0.value > $1.value }.prefix(4))")
        print("    \(result.recordingSummary)")
        XCTAssertEqual(decoy, 0, "samples named from the host's decoy debug file: the link was followed out of the root")
        // About 499 a second of the CPU it got while sampled (2 s on an idle machine, less on a loaded one).
        XCTAssertGreaterThan(Double(total), 0.5 * 499 * cpuSeconds, "\(cpuSeconds) s of CPU\n\(result.report)")
        XCTAssertGreaterThan(total, 50, result.report)
        XCTAssertGreaterThan(loaded, 20, "samples with native frames: \(result.report)")
        XCTAssertGreaterThanOrEqual(Double(named) / Double(max(loaded, 1)), 0.8, "leaves: \(leaves)")
    }

    /// hotext.c built twice with one build ID: the real library (stripped, and its debug file) and the decoy's debug
    /// file, whose hot function is named hostdecoy_native_burn.
    private func buildNativeFixture(python: PythonInterpreter) throws -> (stripped: String, debug: String, decoyDebug: String) {
        let installation = URL(fileURLWithPath: python.path).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent().path
        let include = installation + "/include/python3.12"
        guard FileManager.default.fileExists(atPath: include + "/Python.h") else {
            throw IntegrationError("\(python.label) has no \(include)/Python.h to build the native fixture")
        }
        let source = Checkout.fixtures.appendingPathComponent("container/hotext.c").path
        let directory = scratchFile("native")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var built: [String] = []
        for (name, defines) in [("hotext", [String]()), ("decoy", ["-DBURN_NAME=hostdecoy_native_burn"])] {
            let library = "\(directory)/\(name).so"
            try run("/usr/bin/cc", ["-O2", "-g", "-shared", "-fPIC", "-I" + include, "-Wl,--build-id=0x\(Self.buildID)"] + defines
                + ["-o", library, source]).requireSuccess()
            try run("/usr/bin/objcopy", ["--only-keep-debug", library, library + ".debug"]).requireSuccess()
            built.append(library)
        }
        try run("/usr/bin/strip", ["--strip-all", "-o", directory + "/hotext-stripped.so", built[0]]).requireSuccess()
        let symbols = try run("/usr/bin/nm", [directory + "/hotext-stripped.so"])
        XCTAssertFalse(symbols.standardOutput.contains("container_native_burn"), "the stripped library still names its static function")
        return (directory + "/hotext-stripped.so", built[0] + ".debug", built[1] + ".debug")
    }

    // MARK: - --cgroup and --container

    /// Two identical busy Pythons, one in a cgroup named as Docker names a container's; a third started in it once
    /// recording runs. `--container` with the 12 digits `docker ps` prints, then `--cgroup` with the parent slice as
    /// /proc/PID/cgroup shows it: samples of the cgroup's processes only, the late one included.
    func testContainerAndCgroupRestrictSamplingToTheCgroup() throws {
        let mount = try cgroupV2Mount()
        let id = (0..<64).map { _ in String(Int.random(in: 0..<16), radix: 16) }.joined()
        let slice = mount + "/pybpfprof-test.slice"
        let scope = slice + "/docker-\(id).scope"
        removeCgroup(slice)
        try FileManager.default.createDirectory(atPath: scope, withIntermediateDirectories: true)
        defer { removeCgroup(slice) }

        let python = try PythonInterpreters.pyenv("3.12").path
        let workload = Checkout.fixtures.appendingPathComponent("container/container_workload.py").path
        func startInside() throws -> RunningProcess {
            let process = try start("/bin/sh", ["-c", "echo $$ > \(scope)/cgroup.procs && exec \(python) \(workload) python 600"])
            try process.waitForLine("ready", timeout: 60)
            return process
        }
        let inside = try startInside()
        let outside = try start(python, [workload, "python", "600"])
        try outside.waitForLine("ready", timeout: 60)
        let insideCgroup = try String(contentsOfFile: "/proc/\(inside.pid)/cgroup", encoding: .utf8)
        XCTAssertTrue(insideCgroup.contains("0::/pybpfprof-test.slice/docker-\(id).scope"), insideCgroup)

        // --container: the late process starts once sampling has (4 s of it, longer on a slow machine, where the late
        // process takes longer to start).
        let containerOutput = scratchFile("container.speedscope.json")
        let saved = scratchFile("container.pybpfprof")
        let recording = try start(try PyBPFProfBinary.path(), [
            "record", "--container", String(id.prefix(12)), "--duration", "\(Int(4 * Slowdown.factor))", "--rate", "499",
            "-o", containerOutput, "--save", saved,
        ])
        try recording.waitForLine("pybpfprof: sampling", timeout: 120, onStandardError: true)
        let late = try startInside()
        let containerResult = try recording.wait(timeout: 120).requireSuccess()
        let byPid = try samplesByPid(containerOutput)
        print("  --container \(id.prefix(12)): samples by pid \(byPid) (inside \(inside.pid), late \(late.pid), outside \(outside.pid))")
        print("    \(containerResult.recordingSummary)")
        XCTAssertEqual(Set(byPid.keys).subtracting([inside.pid, late.pid]), [], "samples from outside the cgroup")
        // Two busy processes inside, one outside and the machine's other work share the CPUs: hundreds each, not 2000
        // (fewer in an emulated guest on a loaded host: 199 once, on 6.12, with two more guests beside it).
        XCTAssertGreaterThan(byPid[inside.pid] ?? 0, 100, containerResult.report)
        XCTAssertGreaterThan(byPid[late.pid] ?? 0, 50, "the process started in the container while recording: \(containerResult.report)")
        // Every sample carries the container's ID: its processes have it, and the flame graph's stacks start with it.
        let profile = try RecordingFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: saved))))
        XCTAssertEqual(Set(profile.sampledProcesses.map { profile.processes[Int($0)].containerID }), [id])
        let folded = FoldedExporter().lines(profile)
        XCTAssertFalse(folded.isEmpty)
        XCTAssertEqual(folded.filter { !$0.hasPrefix("container \(id.prefix(12));") }, [], "stacks without the container's frame")

        // --cgroup, the parent of the container's cgroup, as /proc/PID/cgroup shows paths. Once sampling runs, the first
        // process moves out to the root cgroup: still registered in userspace, its samples stop in the kernel.
        let cgroupOutput = scratchFile("cgroup.speedscope.json")
        let cgroupRecording = try start(try PyBPFProfBinary.path(), [
            "record", "--cgroup", "/pybpfprof-test.slice", "--duration", "3", "--rate", "499", "-o", cgroupOutput,
        ])
        try cgroupRecording.waitForLine("pybpfprof: sampling 2 processes", timeout: 120, onStandardError: true)
        try "\(inside.pid)\n".write(toFile: mount + "/cgroup.procs", atomically: false, encoding: .utf8)
        let cgroupResult = try cgroupRecording.wait(timeout: 120).requireSuccess()
        let cgroupByPid = try samplesByPid(cgroupOutput)
        print("  --cgroup /pybpfprof-test.slice: samples by pid \(cgroupByPid) (\(inside.pid) moved out as sampling started)")
        print("    \(cgroupResult.recordingSummary)")
        XCTAssertEqual(Set(cgroupByPid.keys).subtracting([inside.pid, late.pid]), [], "samples from outside the cgroup")
        XCTAssertGreaterThan(cgroupByPid[late.pid] ?? 0, 100, cgroupResult.report)
        XCTAssertLessThan(cgroupByPid[inside.pid] ?? 0, (cgroupByPid[late.pid] ?? 0) / 4,
                          "the process moved out of the cgroup is still sampled: the kernel does not restrict")
    }

    /// Every wrong `--cgroup` / `--container` is one line saying what to give instead, before anything is loaded.
    func testBadCgroupAndContainerArgumentsAreOneLineErrors() throws {
        let mount = try cgroupV2Mount()
        let slice = mount + "/pybpfprof-test.slice"
        removeCgroup(slice)
        let twins = ["cafe0" + String(repeating: "1", count: 59), "cafe0" + String(repeating: "2", count: 59)]
        for id in twins { try FileManager.default.createDirectory(atPath: slice + "/docker-\(id).scope", withIntermediateDirectories: true) }
        defer { removeCgroup(slice) }

        assertCleanError(try runPyBPFProf(["record", "--container", "xyz", "--duration", "1"]), keywords: ["--container xyz", "hexadecimal"])
        assertCleanError(try runPyBPFProf(["record", "--container", "0123abcd9876", "--duration", "1"]),
                         keywords: ["no container", "--cgroup PATH"])
        assertCleanError(try runPyBPFProf(["record", "--container", "cafe0", "--duration", "1"]),
                         keywords: ["matches 2 containers", "more of its digits", "/pybpfprof-test.slice/docker-\(twins[0]).scope"])
        assertCleanError(try runPyBPFProf(["record", "--cgroup", "/pybpfprof-test.slice/missing.scope", "--duration", "1"]),
                         keywords: ["cannot open", mount])
        assertCleanError(try runPyBPFProf(["record", "--cgroup", "/proc", "--duration", "1"]), keywords: ["not in the cgroup v2 hierarchy"])
        assertCleanError(try runPyBPFProf(["record", "--cgroup", "/a/../b", "--duration", "1"]), keywords: ["'..'"])
        assertCleanError(try runPyBPFProf(["record", "--cgroup", "/pybpfprof-test.slice", "--all"]), keywords: ["exactly one target"])
        assertCleanError(try runPyBPFProf(["record", "--container", "cafe01", "--subprocesses"]), keywords: ["--subprocesses"])
    }

    /// Samples per process in a speedscope file.
    private func samplesByPid(_ path: String) throws -> [Int32: Int] {
        var counts: [Int32: Int] = [:]
        for thread in try SpeedscopeFile.threads(at: path) { counts[thread.pid, default: 0] += thread.stacks.count }
        return counts
    }

    /// The cgroup v2 mount point, read here from mountinfo independently of pybpfprof's own reading.
    private func cgroupV2Mount() throws -> String {
        let mountInfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        for line in mountInfo.split(separator: "\n") where line.contains(" - cgroup2 ") {
            let fields = line.split(separator: " ")
            if fields.count > 4, fields[3] == "/" { return String(fields[4]) }
        }
        throw IntegrationError("no cgroup v2 hierarchy is mounted (/proc/self/mountinfo has no cgroup2 line): the --cgroup "
            + "tests need one, e.g. mount -t cgroup2 none /sys/fs/cgroup/unified")
    }

    /// Kills what runs in the cgroup tree and removes it, innermost first; nothing if it does not exist.
    private func removeCgroup(_ path: String) {
        guard FileManager.default.fileExists(atPath: path) else { return }
        try? "1".write(toFile: path + "/cgroup.kill", atomically: false, encoding: .utf8)
        let children = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        for child in children { removeCgroup(path + "/" + child) }
        for _ in 0..<200 where rmdir(path) != 0 && errno == EBUSY { usleep(10_000) }
    }
}
