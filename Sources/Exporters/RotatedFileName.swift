#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The files of a recording written a period at a time (`record --rotate`): each period's file is the name asked for
/// with the period's start inserted before its extension, so that `-o /var/lib/pybpfprof/host.folded` gives
/// `host-20261206-170000.folded`, `host-20261206-170100.folded` and so on. The extension is the whole one that names a
/// format (`.speedscope.json`, `.pb.gz`) or a saved recording (`.pybpfprof`), else the file name's last (`.data`),
/// else none.
public struct RotatedFileName: Sendable, Equatable {
    /// Up to and including the last `/`; empty for a name in the current directory.
    public let directory: String
    /// The file name before the extension.
    public let stem: String
    /// With its dot; empty for a name without one.
    public let fileExtension: String

    /// The extension of a saved recording (`record --save`).
    public static let recordingExtension = ".pybpfprof"

    public init(_ path: String) {
        let nameStart = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        directory = String(path[..<nameStart])
        let name = path[nameStart...]
        let fileExtension: Substring
        if let known = OutputFormat.knownExtension(of: path) {
            fileExtension = name.suffix(known.count)
        } else if name.lowercased().hasSuffix(Self.recordingExtension) {
            fileExtension = name.suffix(Self.recordingExtension.count)
        } else if let dot = name.lastIndex(of: "."), dot != name.startIndex {
            fileExtension = name[dot...]
        } else {
            fileExtension = ""
        }
        stem = String(name.dropLast(fileExtension.count))
        self.fileExtension = String(fileExtension)
    }

    /// The file of the period that started at `timestamp` (`RotatedFileName.timestamp(of:)`).
    public func path(timestamp: String) -> String {
        directory + stem + "-" + timestamp + fileExtension
    }

    /// Whether `fileName` (in `directory`) is one of these files: the stem, `-`, a timestamp as `timestamp(of:)` makes
    /// them, and the extension, exactly.
    public func isRotation(_ fileName: String) -> Bool {
        let prefix = stem + "-"
        guard fileName.hasPrefix(prefix), fileName.hasSuffix(fileExtension),
              fileName.utf8.count == prefix.utf8.count + Self.timestampLength + fileExtension.utf8.count else { return false }
        let timestamp = fileName.utf8.dropFirst(prefix.utf8.count).prefix(Self.timestampLength)
        return timestamp.enumerated().allSatisfy { offset, byte in
            offset == 8 ? byte == UInt8(ascii: "-") : (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
    }

    /// `yyyyMMdd-HHmmss`.
    private static let timestampLength = 15

    /// The local time of `secondsSince1970` as file names carry it: `yyyyMMdd-HHmmss`, so that names sort as their
    /// times do (within a year of 4 digits, and apart from the hour that repeats when daylight saving time ends).
    public static func timestamp(of secondsSince1970: Double) -> String {
        var seconds = time_t(secondsSince1970.rounded(.down))
        var local = tm()
        localtime_r(&seconds, &local)
        var buffer = [CChar](repeating: 0, count: 32)
        let length = strftime(&buffer, buffer.count, "%Y%m%d-%H%M%S", &local)
        return String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Deletes the oldest of these files beyond the newest `count`, by the times in their names. `spared`, the file just
    /// written, counts as one of the `count` and is never deleted, even should a clock set back have named older files
    /// after it. Only regular files whose names `isRotation` accepts are counted or deleted. Returns the paths deleted
    /// and, for each file that could not be (or the directory, if it could not be listed), a line saying why.
    public func removeOldest(keeping count: Int, sparing spared: String) -> (removed: [String], failures: [String]) {
        let listed = directory.isEmpty ? "." : directory == "/" ? "/" : String(directory.dropLast())
        guard let stream = opendir(listed) else {
            return ([], ["cannot list \(listed) to delete old rotated files: \(String(cString: strerror(errno)))"])
        }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard isRotation(name), directory + name != spared else { continue }
            var status = stat()
            guard lstat(directory + name, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { continue }
            names.append(name)
        }
        closedir(stream)
        // The spared file is the newest, or counts as one of the newest `count` whatever its name says.
        let older = names.sorted(by: >).dropFirst(max(count - 1, 0))
        var removed: [String] = [], failures: [String] = []
        for name in older.reversed() {
            if unlink(directory + name) == 0 {
                removed.append(directory + name)
            } else if errno != ENOENT {
                failures.append("cannot delete \(directory + name): \(String(cString: strerror(errno)))")
            }
        }
        return (removed, failures)
    }
}
