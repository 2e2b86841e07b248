import CBPF
import FoundationEssentials
import Glibc
import Native

/// Compiled unwind tables kept on disk, so that attaching to a process whose files were seen before (the same
/// libpython, numpy's and onnxruntime's libraries) skips compiling their tables: most of the time to complete native
/// stacks.
///
/// An entry is keyed by the SHA-256 of everything its table is compiled from (`CallFrameSections.digest`, salted with
/// this binary's identity): two files share an entry only if the compiled tables are equal, whatever their names or
/// build IDs say, and a target's crafted file cannot collide with another's. An entry is trusted only in a directory
/// only this user can write (root's, by default /var/cache/pybpfprof/unwind-tables), and only if it is whole: its
/// length, its checksum and its rows (sorted, known rule kinds, within the unwinder's bounds) are checked on every read,
/// and an entry that fails is deleted and compiled again. Entries are written to a temporary file and renamed, so that
/// a concurrent recording reads a whole entry or none. The directory is kept under `maxBytes`, least recently used
/// entries first.
///
/// Thread-safe.
final class UnwindTableCache {
    static let defaultDirectory = "/var/cache/pybpfprof/unwind-tables"
    static let defaultMaxBytes = 256 << 20

    struct Entry: Equatable {
        var linkTimeBase: UInt64
        var rows: [unwind_row]

        static func == (lhs: Entry, rhs: Entry) -> Bool {
            lhs.linkTimeBase == rhs.linkTimeBase && lhs.rows.count == rhs.rows.count
                && zip(lhs.rows, rhs.rows).allSatisfy {
                    $0.address == $1.address && $0.cfa_offset == $1.cfa_offset && $0.cfa_kind == $1.cfa_kind
                        && $0.rbp_offset == $1.rbp_offset
                }
        }
    }

    let directory: String
    let maxBytes: Int
    /// Mixed into every key: entries written by another build of pybpfprof (whose compiler may differ) are not read.
    let salt: [UInt8]
    /// Guards the counts and the trimming: files are read on every core (`UnwindTableStore.loadNew`).
    private let lock = Lock()
    private var counts = (rejected: 0, hits: 0, written: 0)
    private var firstWriteFailure: String?
    /// Entries found damaged and deleted; entries read; entries written.
    var rejected: Int { lock.withLock { counts.rejected } }
    var hits: Int { lock.withLock { counts.hits } }
    var written: Int { lock.withLock { counts.written } }
    /// Why writing failed, the first time (reading goes on).
    var writeFailure: String? { lock.withLock { firstWriteFailure } }

    /// Opens (and first makes, mode 0700) the directory. Throws `CacheUnusable` with the reason when it cannot be
    /// trusted or made: the recording then compiles every table, and its summary says why.
    init(directory: String = defaultDirectory, maxBytes: Int = defaultMaxBytes, salt: [UInt8] = UnwindTableCache.binaryIdentity) throws {
        self.directory = directory
        self.maxBytes = maxBytes
        self.salt = salt
        try Self.makeDirectory(directory)
        var status = stat()
        guard lstat(directory, &status) == 0 else { throw CacheUnusable("\(directory): \(String(cString: strerror(errno)))") }
        guard status.st_mode & S_IFMT == S_IFDIR else { throw CacheUnusable("\(directory) is not a directory") }
        guard status.st_uid == geteuid() else { throw CacheUnusable("\(directory) belongs to uid \(status.st_uid), not to uid \(geteuid())") }
        guard status.st_mode & 0o022 == 0 else {
            throw CacheUnusable("\(directory) is writable by others (mode \(String(status.st_mode & 0o777, radix: 8))): chmod go-w it")
        }
    }

    /// The cache in `directory`, or why it cannot be used; neither for nil (none asked for).
    static func inDirectory(_ directory: String?) -> (cache: UnwindTableCache?, problem: String?) {
        guard let directory else { return (nil, nil) }
        do {
            return (try UnwindTableCache(directory: directory), nil)
        } catch {
            return (nil, "\(error)")
        }
    }

    struct CacheUnusable: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// The compiled table whose inputs have digest `key`, if a whole entry holds it; a damaged entry is deleted.
    func entry(_ key: [UInt8]) -> Entry? {
        let path = self.path(key)
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return nil }
        guard status.st_mode & S_IFMT == S_IFREG, status.st_uid == geteuid(), status.st_mode & 0o022 == 0,
              let bytes = Self.readWhole(descriptor, size: Int(status.st_size)),
              let entry = Self.decode(bytes, key: key)
        else {
            lock.withLock { counts.rejected += 1 }
            unlink(path)
            return nil
        }
        // Recently used: eviction goes by modification time.
        _ = futimens(descriptor, nil)
        lock.withLock { counts.hits += 1 }
        return entry
    }

    /// Keeps `entry` under `key`, then trims the directory to `maxBytes`. Failing to write loses only the time saved.
    func store(_ entry: Entry, key: [UInt8]) {
        let bytes = Self.encode(entry, key: key)
        guard bytes.count <= maxBytes else { return }
        let temporary = "\(directory)/.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return noteWriteFailure("\(temporary): \(String(cString: strerror(errno)))") }
        let whole = bytes.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let count = write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return false }
                offset += count
            }
            return true
        }
        let failure = whole ? nil : String(cString: strerror(errno))
        close(descriptor)
        guard whole, rename(temporary, path(key)) == 0 else {
            let reason = failure ?? String(cString: strerror(errno))
            unlink(temporary)
            return noteWriteFailure("\(directory): \(reason)")
        }
        lock.withLock {
            counts.written += 1
            trim()
        }
    }

    private func noteWriteFailure(_ reason: String) {
        lock.withLock { if firstWriteFailure == nil { firstWriteFailure = reason } }
    }

    private func path(_ key: [UInt8]) -> String {
        directory + "/" + key.hexadecimalDigits
    }

    /// Deletes the least recently used entries until the directory holds at most `maxBytes`, and temporary files an
    /// interrupted write left more than an hour ago.
    private func trim() {
        guard let directoryStream = opendir(directory) else { return }
        defer { closedir(directoryStream) }
        var files: [(name: String, size: Int, modified: Int)] = []
        var total = 0
        let hourAgo = time(nil) - 3600
        while let item = readdir(directoryStream) {
            let name = withUnsafeBytes(of: item.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name != ".", name != ".." else { continue }
            var status = stat()
            guard fstatat(dirfd(directoryStream), name, &status, AT_SYMLINK_NOFOLLOW) == 0, status.st_mode & S_IFMT == S_IFREG else { continue }
            if name.hasPrefix(".tmp-") {
                if status.st_mtim.tv_sec < hourAgo { unlinkat(dirfd(directoryStream), name, 0) }
                continue
            }
            files.append((name, Int(status.st_size), Int(status.st_mtim.tv_sec)))
            total += Int(status.st_size)
        }
        guard total > maxBytes else { return }
        for file in files.sorted(by: { $0.modified < $1.modified }) where total > maxBytes {
            if unlinkat(dirfd(directoryStream), file.name, 0) == 0 { total -= file.size }
        }
    }

    // MARK: - The entry's bytes

    /// "PYBPFUT" and the format's version.
    static let magic: [UInt8] = Array("PYBPFUT".utf8) + [1]
    /// Magic, key, link-time base, row count, row size.
    static let headerSize = 8 + 32 + 8 + 4 + 4
    static let rowSize = MemoryLayout<unwind_row>.stride
    static let maxEntryBytes = headerSize + Int(UNWIND_ROWS_PER_FILE_MAX) * rowSize + 8

    static func encode(_ entry: Entry, key: [UInt8]) -> [UInt8] {
        var bytes = magic + key
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        append(entry.linkTimeBase)
        append(UInt32(entry.rows.count))
        append(UInt32(rowSize))
        entry.rows.withUnsafeBytes { bytes += $0 }
        append(checksum(bytes[...]))
        return bytes
    }

    /// The entry `bytes` hold, if they are a whole entry for `key` whose rows the unwinder can search.
    static func decode(_ bytes: [UInt8], key: [UInt8]) -> Entry? {
        guard bytes.count >= headerSize + 8, bytes.count <= maxEntryBytes, key.count == 32,
              Array(bytes[0..<8]) == magic, Array(bytes[8..<40]) == key
        else { return nil }
        func load<T: FixedWidthInteger>(_ offset: Int, as type: T.Type) -> T {
            bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }
        let base = load(40, as: UInt64.self)
        let count = Int(load(48, as: UInt32.self))
        guard Int(load(52, as: UInt32.self)) == rowSize, count >= 1, count <= Int(UNWIND_ROWS_PER_FILE_MAX),
              bytes.count == headerSize + count * rowSize + 8,
              load(bytes.count - 8, as: UInt64.self) == checksum(bytes[..<(bytes.count - 8)])
        else { return nil }
        let rows = bytes.withUnsafeBytes { raw in
            (0..<count).map { raw.loadUnaligned(fromByteOffset: headerSize + $0 * rowSize, as: unwind_row.self) }
        }
        // As UnwindTableStore writes them: addresses from 0, strictly increasing; known kinds; rbp saved below the CFA
        // in whole slots or not at all.
        guard rows[0].address == 0 else { return nil }
        for index in rows.indices {
            let row = rows[index]
            guard row.cfa_kind <= UInt8(UNWIND_UNSUPPORTED.rawValue),
                  index == 0 || row.address > rows[index - 1].address
            else { return nil }
        }
        return Entry(linkTimeBase: base, rows: rows)
    }

    /// Catches a torn or damaged entry (FNV-1a over 8-byte words); trust comes from the directory's owner.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset + 8 <= raw.count {
                hash = (hash ^ raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0x100_0000_01b3
                offset += 8
            }
            while offset < raw.count {
                hash = (hash ^ UInt64(raw[offset])) &* 0x100_0000_01b3
                offset += 1
            }
        }
        return hash ^ UInt64(bytes.count)
    }

    private static func readWhole(_ descriptor: Int32, size: Int) -> [UInt8]? {
        guard size > 0, size <= maxEntryBytes else { return nil }
        var bytes = [UInt8](repeating: 0, count: size)
        let whole = bytes.withUnsafeMutableBytes { raw -> Bool in
            var offset = 0
            while offset < size {
                let count = pread(descriptor, raw.baseAddress! + offset, size - offset, off_t(offset))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return false }
                offset += count
            }
            return true
        }
        return whole ? bytes : nil
    }

    private static func makeDirectory(_ directory: String) throws {
        var prefix = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw CacheUnusable("cannot make \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// This binary's build ID, else its size and modification time: what tells one build's compiler from another's.
    static let binaryIdentity: [UInt8] = {
        let executable = "/proc/self/exe"
        if let buildID = (try? ELFFile(path: executable))?.buildID { return Array("build-id".utf8) + buildID }
        var status = stat()
        guard stat(executable, &status) == 0 else { return [] }
        return Array("size-mtime \(status.st_size) \(status.st_mtim.tv_sec).\(status.st_mtim.tv_nsec)".utf8)
    }()
}
