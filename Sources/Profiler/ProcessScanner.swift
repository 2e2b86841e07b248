import CPython
import FoundationEssentials
import Glibc
import Native

/// Python processes as /proc shows them.
public enum ProcessScanner {
    /// Every running process with a supported CPython interpreter, and a line for each process with an
    /// interpreter that could not be used (unsupported version, unreadable).
    ///
    /// A process is taken when one of its executable mappings defines `_PyRuntime` (or `Py_Initialize`, for the
    /// versions too old to profile), whatever the file is called (a static interpreter renamed to the service's name
    /// included). What each file holds is learned once, by device and inode, in `cache`: libc and friends are shared
    /// by every process, and a recording that follows new processes keeps using the same cache.
    ///
    /// `include` chooses the processes examined (e.g. those of a cgroup), before any of their files is read.
    public static func pythonProcesses(
        cache: InterpreterLocator.FileCache = InterpreterLocator.FileCache(),
        where include: (Int32) -> Bool = { _ in true }
    ) -> (found: [PythonInterpreter], skipped: [String]) {
        let own = getpid()
        var found: [PythonInterpreter] = []
        var skipped: [String] = []
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for pid in entries.compactMap({ Int32($0) }).sorted() where pid != own && include(pid) {
            do {
                found.append(try InterpreterLocator.locate(pid: pid, cache: cache))
            } catch InterpreterError.notPython, InterpreterError.processGone {
                continue
            } catch {
                skipped.append("\(error)")
            }
        }
        return (found, skipped)
    }

    /// The process a thread id belongs to (`Tgid:` in /proc/ID/status); the id itself for a process or
    /// when /proc does not say.
    public static func threadGroup(of id: Int32) -> Int32 {
        guard let status = try? KernelFile.text("/proc/\(id)/status") else { return id }
        for line in status.split(separator: "\n") where line.hasPrefix("Tgid:") {
            return Int32(line.dropFirst(5).trimming(while: \.isWhitespace)) ?? id
        }
        return id
    }

    /// /proc/PID/cmdline with arguments joined by spaces; the comm when that is empty (kernel threads,
    /// zombies) or unreadable.
    public static func commandLine(pid: Int32) -> String {
        if let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty {
            let bounded = data.prefix(4096)
            return bounded.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
        }
        let comm = (try? KernelFile.text("/proc/\(pid)/comm")) ?? "?"
        return String(comm.trimming(while: \.isWhitespace))
    }
}
