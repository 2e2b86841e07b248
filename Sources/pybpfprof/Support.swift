import ArgumentParser
import Exporters
import FoundationEssentials
import Glibc

func printToStandardError(_ text: String) {
    writeAll(text.hasSuffix("\n") ? text : text + "\n", to: STDERR_FILENO)
}

/// Writes `text` to `descriptor` unbuffered, so that what goes to standard output and standard error interleaves as
/// written. Never traps: a closed terminal or pipe loses the text, not the process.
func writeAll(_ text: String, to descriptor: Int32) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        bytes = bytes.dropFirst(written)
    }
}

/// Runs a step whose errors are the user's to fix: prints the error as one line and exits 1, instead of
/// ArgumentParser's usage dump or a Swift backtrace.
func failing<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        printToStandardError("pybpfprof: error: \(error)")
        throw ExitCode.failure
    }
}

enum OutputPath {
    /// Why a profile could not be written at `path`, checked before recording so that a long recording
    /// is not lost to a typo; the final write reports anything that changed meanwhile.
    static func problem(_ path: String) -> String? {
        let directory = directory(of: path)
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            return "cannot write \(path): directory \(directory) does not exist"
        }
        guard isDirectory else { return "cannot write \(path): \(directory) is not a directory" }
        // Create and remove a file, as the final write will: access(2) says yes to root even where the
        // file system refuses (sysfs, read-only mounts).
        var probe = Array("\(directory)/.pybpfprof-probe-XXXXXX".utf8CString)
        let fd = mkstemp(&probe)
        guard fd >= 0 else {
            return "cannot write \(path): directory \(directory) is not writable (\(String(cString: strerror(errno))))"
        }
        close(fd)
        unlink(probe)
        var targetIsDirectory = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &targetIsDirectory), targetIsDirectory {
            return "cannot write \(path): it is a directory"
        }
        return nil
    }

    /// The directory `path` names a file in, as NSString's deletingLastPathComponent gave it, "." for a bare name:
    /// "/tmp" for "/tmp/profile.html" and "/tmp//profile.html", "/" for "/profile.html", "out" for "out/profile.html/".
    static func directory(of path: String) -> String {
        guard let lastNonSlash = path.lastIndex(where: { $0 != "/" }) else { return path.isEmpty ? "." : "/" }
        guard let slash = path[...lastNonSlash].lastIndex(of: "/") else { return "." }
        guard let directoryEnd = path[..<slash].lastIndex(where: { $0 != "/" }) else { return "/" }
        return String(path[...directoryEnd])
    }

    /// Now, local time, as `yyyyMMdd-HHmmss`: the format of `record --rotate`'s file names too.
    static func timestamp() -> String {
        RotatedFileName.timestamp(of: Date().timeIntervalSince1970)
    }
}

/// Standard error when it is a terminal: where the progress line and the screen-sized summary go.
enum Terminal {
    /// Columns and rows of the terminal on standard error; nil when it is not one (a file, a pipe, CI).
    static var standardError: (columns: Int, rows: Int)? {
        guard isatty(STDERR_FILENO) == 1 else { return nil }
        var size = winsize()
        guard ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0, size.ws_row > 0 else { return (80, 24) }
        return (Int(size.ws_col), Int(size.ws_row))
    }

    /// Rewrites the current line: carriage return, the text, erase to the end of the line.
    static func replaceLine(_ text: String) {
        writeAll("\r" + text + "\u{1B}[K", to: STDERR_FILENO)
    }
}
