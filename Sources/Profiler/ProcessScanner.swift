import CPython
import Foundation
import Native

/// Python processes as /proc shows them.
public enum ProcessScanner {
    /// Every running process with a supported CPython interpreter, and a line for each Python-looking
    /// process that could not be used (unsupported version, unreadable).
    ///
    /// Only processes whose executable or mapped files mention "python" are examined: opening every
    /// library of every process on a host to look for _PyRuntime would cost seconds.
    static func pythonProcesses() -> (found: [PythonInterpreter], skipped: [String]) {
        let own = getpid()
        var found: [PythonInterpreter] = []
        var skipped: [String] = []
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for pid in entries.compactMap({ Int32($0) }).sorted() where pid != own {
            guard let maps = try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8),
                  maps.contains("python")
            else { continue }
            do {
                found.append(try InterpreterLocator.locate(pid: pid))
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
        guard let status = try? String(contentsOfFile: "/proc/\(id)/status", encoding: .utf8) else { return id }
        for line in status.split(separator: "\n") where line.hasPrefix("Tgid:") {
            return Int32(line.dropFirst(5).trimmingCharacters(in: .whitespaces)) ?? id
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
        let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "?"
        return comm.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
