#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One line of `/proc/PID/maps`: a range of a process's address space and what backs it.
public struct MemoryMapping: Sendable, Equatable {
    public let start: UInt64
    /// Exclusive.
    public let end: UInt64
    public let readable: Bool
    public let writable: Bool
    public let executable: Bool
    /// `s` (shared) rather than `p` (private, copy-on-write) in the permissions.
    public let shared: Bool
    /// Offset in the backing file of the byte at `start`.
    public let offset: UInt64
    /// Backing device as `major:minor` in hex, e.g. `fd:01`; `00:00` for anonymous mappings.
    public let device: String
    public let inode: UInt64
    /// The backing file's path as the kernel prints it: empty for anonymous memory, a pseudo-path such as
    /// `[heap]`, `[stack]` or `[vdso]`, and ending in ` (deleted)` if the file was removed or replaced since it
    /// was mapped. The path is in the process's mount namespace, which may differ from ours (containers).
    public let path: String

    /// Parses the text of a maps file. Lines that do not have the expected shape are skipped, so one odd line
    /// (or a format extension) does not lose the rest of the process.
    public static func parse(_ mapsText: String) -> [MemoryMapping] {
        mapsText.split(separator: "\n", omittingEmptySubsequences: true).compactMap(parseLine)
    }

    /// Reads and parses `/proc/PID/maps`. Throws `MemoryMapsError` if the process does not exist (any more) or
    /// its maps cannot be read (e.g. no permission to inspect it).
    public static func read(pid: Int32) throws -> [MemoryMapping] {
        let path = "/proc/\(pid)/maps"
        do {
            let bytes = try FileReading.contents(of: path, regularFileOnly: false)
            return parse(String(decoding: bytes, as: UTF8.self))
        } catch let error as FileReadError {
            // ESRCH: the process exited between opening and reading the file.
            let processIsGone = error.errorNumber == ENOENT || error.errorNumber == ESRCH
            throw MemoryMapsError(
                description: processIsGone
                    ? "process \(pid) does not exist (it may have exited): \(error)"
                    : "cannot read the memory maps of process \(pid): \(error)"
            )
        }
    }

    /// `start-end perms offset major:minor inode [path]`, fields separated by single spaces except for the
    /// padding before the path. The path is everything after that padding, so it may contain spaces.
    private static func parseLine(_ line: Substring) -> MemoryMapping? {
        var rest = line[...]
        func nextField() -> Substring? {
            guard let space = rest.firstIndex(of: " ") else {
                defer { rest = rest[rest.endIndex...] }
                return rest.isEmpty ? nil : rest
            }
            defer { rest = rest[rest.index(after: space)...] }
            return rest[..<space]
        }
        guard let addresses = nextField(), let permissions = nextField(), let offsetField = nextField(),
              let device = nextField(), let inodeField = nextField()
        else { return nil }

        let bounds = addresses.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2, let start = UInt64(bounds[0], radix: 16), let end = UInt64(bounds[1], radix: 16),
              start <= end,
              let offset = UInt64(offsetField, radix: 16),
              let inode = UInt64(inodeField),
              isDevice(device),
              permissions.count == 4
        else { return nil }
        let flags = Array(permissions)
        guard "r-".contains(flags[0]), "w-".contains(flags[1]), "x-".contains(flags[2]), "ps".contains(flags[3]) else {
            return nil
        }

        return MemoryMapping(
            start: start, end: end,
            readable: flags[0] == "r", writable: flags[1] == "w", executable: flags[2] == "x", shared: flags[3] == "s",
            offset: offset, device: String(device), inode: inode,
            path: String(rest.drop { $0 == " " })
        )
    }

    private static func isDevice(_ field: Substring) -> Bool {
        let parts = field.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { UInt32($0, radix: 16) != nil }
    }
}

/// Why a process's memory maps could not be read.
public struct MemoryMapsError: Error, CustomStringConvertible {
    public let description: String
}
