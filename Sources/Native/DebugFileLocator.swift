#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Finds the separate debug file of a stripped ELF file, the way gdb does:
///
/// 1. by build ID: `<root>/usr/lib/debug/.build-id/ab/cdef….debug`, accepted if its build ID is the file's;
/// 2. by `.gnu_debuglink` name, in `<dir>`, `<dir>/.debug` and `<root>/usr/lib/debug/<dir>`, where `<dir>` is the
///    file's directory, accepted if the CRC-32 of its contents is the one the link records.
///
/// `root` is `/` or the root directory of the process that maps the file, e.g. `/proc/PID/root` for a process in a
/// container; `path` is the file's path as that process sees it. Every path is resolved inside `root`: symbolic
/// links, absolute ones included, and `..` cannot leave it (see `RootedPath`).
public enum DebugFileLocator {
    /// The path (including `root`) of `elf`'s debug file, or nil if none is found or none matches.
    public static func debugFile(for elf: ELFFile, path: String, root: String) -> String? {
        locate(for: elf, path: path, root: root)?.path
    }

    struct Found {
        /// Where the debug file was read, including `root`.
        let path: String
        let file: ELFFile
    }

    /// Like `debugFile(for:path:root:)`, also returning the debug file as read (it was read whole anyway, to check it).
    static func locate(for elf: ELFFile, path: String, root: String) -> Found? {
        if let buildID = elf.buildID, let found = locate(buildID: buildID, root: root) { return found }
        if let link = elf.debugLink { return locate(link: link, besides: path, root: root) }
        return nil
    }

    static let debugDirectory = "/usr/lib/debug"

    private static func locate(buildID: [UInt8], root: String) -> Found? {
        // The first byte names a directory, so a shorter ID (none is shorter than 8 bytes in practice) has no path.
        guard buildID.count >= 2 else { return nil }
        let hex = buildID.map { byte in String(byte, radix: 16).leftPadded(to: 2) }
        let candidate = "\(debugDirectory)/.build-id/\(hex[0])/\(hex.dropFirst().joined()).debug"
        guard let (resolved, bytes) = read(candidate, root: root),
              let file = try? ELFFile(bytes: bytes), file.buildID == buildID
        else { return nil }
        return Found(path: resolved, file: file)
    }

    private static func locate(link: (name: String, crc: UInt32), besides path: String, root: String) -> Found? {
        // The name comes from the file: it must be a plain file name, not a path.
        guard !link.name.isEmpty, link.name != ".", link.name != "..", !link.name.contains("/"),
              link.name.utf8.count <= Int(NAME_MAX)
        else { return nil }
        let directory = RootedPath.directory(of: path)
        let candidates = [
            RootedPath.join(directory, link.name),
            RootedPath.join(RootedPath.join(directory, ".debug"), link.name),
            RootedPath.join(debugDirectory + (directory.hasPrefix("/") ? "" : "/") + directory, link.name),
        ]
        for candidate in candidates where candidate != path {
            guard let (resolved, bytes) = read(candidate, root: root), CRC32.checksum(bytes) == link.crc,
                  let file = try? ELFFile(bytes: bytes)
            else { continue }
            return Found(path: resolved, file: file)
        }
        return nil
    }

    /// The contents of `path` inside `root` and the path they were read from, or nil if it is missing, not a regular
    /// file or too large.
    private static func read(_ path: String, root: String) -> (String, [UInt8])? {
        guard let resolved = RootedPath.resolve(path, inside: root),
              let bytes = try? FileReading.contents(of: resolved, regularFileOnly: true, maximumSize: ELFFile.maximumFileSize)
        else { return nil }
        return (resolved, bytes)
    }
}

/// Paths inside another process's root directory.
///
/// The kernel resolves `/proc/PID/root/usr/lib/x` through that process's root, but an absolute symbolic link met
/// on the way (`/usr/lib/debug/.build-id/ab/cd.debug -> /usr/lib/debug/...`) would be resolved against *our* root
/// and read a file of the host. So below a root other than `/`, links are followed here, one component at a time.
/// (A file replaced between this resolution and the open is not caught; what is read is validated anyway.)
enum RootedPath {
    /// More links than this on one path is a loop, as for the kernel (`ELOOP` after 40).
    static let maximumLinks = 40

    /// `path` resolved inside `root` and prefixed with it: symbolic links are followed with absolute targets
    /// starting again at `root`, and `..` stops at `root`. Nil if a component is missing or is a link that cannot
    /// be read, or there are too many links. With root `/` the path is returned unchanged: the kernel's own
    /// resolution is then the right one.
    static func resolve(_ path: String, inside root: String) -> String? {
        guard !isHostRoot(root) else { return path }
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        var pending = components(of: path).reversed() as [Substring]
        var resolved: [Substring] = []
        var links = 0
        while let component = pending.popLast() {
            if component == "." { continue }
            if component == ".." {
                _ = resolved.popLast()
                continue
            }
            let candidate = base + "/" + (resolved + [component]).joined(separator: "/")
            var status = stat()
            guard lstat(candidate, &status) == 0 else { return nil }
            guard status.st_mode & S_IFMT == S_IFLNK else {
                resolved.append(component)
                continue
            }
            links += 1
            guard links <= maximumLinks, let target = linkTarget(candidate) else { return nil }
            if target.hasPrefix("/") { resolved.removeAll() }
            pending.append(contentsOf: components(of: target).reversed())
        }
        return base + "/" + resolved.joined(separator: "/")
    }

    /// The directory part of a path: `/a/b` for `/a/b/c`, `/` for `/c`, `.` for `c`.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    private static func isHostRoot(_ root: String) -> Bool {
        !root.isEmpty && root.allSatisfy { $0 == "/" }
    }

    private static func components(of path: String) -> [Substring] {
        path.split(separator: "/", omittingEmptySubsequences: true)
    }

    private static func linkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        let length = readlink(path, &buffer, buffer.count)
        guard length > 0, length < buffer.count else { return nil }
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The CRC-32 of `.gnu_debuglink` (the zlib/IEEE 802.3 one, reflected polynomial 0xEDB88320).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        (0..<8).reduce(UInt32(index)) { crc, _ in crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        table.withUnsafeBufferPointer { table in
            bytes.withUnsafeBufferPointer { bytes in
                var crc: UInt32 = 0xFFFF_FFFF
                for byte in bytes {
                    crc = table[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8)
                }
                return ~crc
            }
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
