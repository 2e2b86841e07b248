#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Finds the separate debug file of a stripped ELF file, the way gdb does:
///
/// 1. by build ID: `<root>/usr/lib/debug/.build-id/ab/cdef….debug`, then the same path under each of the user's
///    directories of debug files on this machine (`--debug-dir`), accepted if its build ID is the file's;
/// 2. by `.gnu_debuglink` name, in `<dir>`, `<dir>/.debug` and `<root>/usr/lib/debug/<dir>`, where `<dir>` is the
///    file's directory, accepted if the CRC-32 of its contents is the one the link records.
///
/// `root` is `/` or the root directory of the process that maps the file, e.g. `/proc/PID/root` for a process in a
/// container; `path` is the file's path as that process sees it. Every path is resolved inside `root` by the kernel:
/// symbolic links, absolute ones included, and `..` cannot leave it (see `openInRoot`).
public enum DebugFileLocator {
    /// The path (including `root`) of `elf`'s debug file, or nil if none is found or none matches.
    public static func debugFile(for elf: ELFFile, path: String, root: String, debugDirectories: [String] = []) -> String? {
        locate(for: elf, path: path, root: root, debugDirectories: debugDirectories)?.path
    }

    struct Found {
        /// Where the debug file was found, including `root` (symbolic links on the way not resolved).
        let path: String
        let file: ELFFile
    }

    /// Like `debugFile(for:path:root:debugDirectories:)`, also returning the debug file (opened anyway, to check it).
    /// `debugDirectories`: directories laid out as /usr/lib/debug is by build ID, on this machine (not in `root`).
    static func locate(for elf: ELFFile, path: String, root: String, debugDirectories: [String] = []) -> Found? {
        if let buildID = elf.buildID {
            if let found = locate(buildID: buildID, in: debugDirectory, root: root) { return found }
            for directory in debugDirectories {
                if let found = locate(buildID: buildID, in: directory, root: "/") { return found }
            }
        }
        if let link = elf.debugLink { return locate(link: link, besides: path, root: root) }
        return nil
    }

    /// The debug file of build ID `buildID` in one of `directories` (on this machine, laid out as /usr/lib/debug is:
    /// `DIR/.build-id/ab/cdef….debug`), the first whose build ID matches; nil if none has it.
    public static func debugFile(buildID: [UInt8], in directories: [String]) -> (path: String, file: ELFFile)? {
        for directory in directories {
            if let found = locate(buildID: buildID, in: directory, root: "/") { return (found.path, found.file) }
        }
        return nil
    }

    static let debugDirectory = "/usr/lib/debug"

    private static func locate(buildID: [UInt8], in directory: String, root: String) -> Found? {
        // The first byte names a directory, so a shorter ID (none is shorter than 8 bytes in practice) has no path.
        guard buildID.count >= 2 else { return nil }
        let candidate = "\(join(directory, ".build-id"))/\(buildID.prefix(1).hexadecimalDigits)/\(buildID.dropFirst().hexadecimalDigits).debug"
        guard let file = try? ELFFile(path: candidate, inRoot: root), file.buildID == buildID else { return nil }
        return Found(path: pathInRoot(candidate, root: root), file: file)
    }

    private static func locate(link: (name: String, crc: UInt32), besides path: String, root: String) -> Found? {
        // The name comes from the file: it must be a plain file name, not a path.
        guard !link.name.isEmpty, link.name != ".", link.name != "..", !link.name.contains("/"),
              link.name.utf8.count <= Int(NAME_MAX)
        else { return nil }
        let directory = directory(of: path)
        let candidates = [
            join(directory, link.name),
            join(join(directory, ".debug"), link.name),
            join(debugDirectory + (directory.hasPrefix("/") ? "" : "/") + directory, link.name),
        ]
        for candidate in candidates where candidate != path {
            // The file whose CRC is checked is the one read: a file replaced in between is never taken for it.
            guard let opened = try? FileReading.openFile(
                      candidate, inRoot: root, regularFileOnly: true, maximumSize: ELFFile.maximumFileSize),
                  (try? CRC32.checksum(of: opened)) == link.crc,
                  let file = try? ELFFile(file: opened)
            else { continue }
            return Found(path: opened.path, file: file)
        }
        return nil
    }

    /// The directory part of a path: `/a/b` for `/a/b/c`, `/` for `/c`, `.` for `c`.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}

/// The CRC-32 of `.gnu_debuglink` (the zlib/IEEE 802.3 one, reflected polynomial 0xEDB88320).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        (0..<8).reduce(UInt32(index)) { crc, _ in crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
    }

    /// The CRC of `bytes`; with `previous`, the CRC of the bytes that gave `previous` followed by `bytes`.
    static func checksum(_ bytes: [UInt8], continuing previous: UInt32 = 0) -> UInt32 {
        table.withUnsafeBufferPointer { table in
            bytes.withUnsafeBufferPointer { bytes in
                var crc = ~previous
                for byte in bytes {
                    crc = table[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8)
                }
                return ~crc
            }
        }
    }

    /// The CRC of a whole file, read a chunk at a time.
    static func checksum(of file: OpenFile) throws -> UInt32 {
        let chunkSize = 1 << 20
        var crc: UInt32 = 0
        for offset in stride(from: 0, to: file.size, by: chunkSize) {
            crc = checksum(try file.bytes(count: min(chunkSize, file.size - offset), at: offset), continuing: crc)
        }
        return crc
    }
}
