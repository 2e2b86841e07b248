import ArgumentParser
import Exporters
import Foundation
import Glibc

func printToStandardError(_ text: String) {
    FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
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
        let directory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            return "cannot write \(path): directory \(directory) does not exist"
        }
        guard isDirectory.boolValue else { return "cannot write \(path): \(directory) is not a directory" }
        // Create and remove a file, as the final write will: access(2) says yes to root even where the
        // file system refuses (sysfs, read-only mounts).
        var probe = Array("\(directory)/.pybpfprof-probe-XXXXXX".utf8CString)
        let fd = mkstemp(&probe)
        guard fd >= 0 else {
            return "cannot write \(path): directory \(directory) is not writable (\(String(cString: strerror(errno))))"
        }
        close(fd)
        unlink(probe)
        var targetIsDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &targetIsDirectory), targetIsDirectory.boolValue {
            return "cannot write \(path): it is a directory"
        }
        return nil
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
        FileHandle.standardError.write(Data(("\r" + text + "\u{1B}[K").utf8))
    }
}
