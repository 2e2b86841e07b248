import FoundationEssentials
import Glibc
import Native

/// A directory of entries kept between runs (unwind tables, the kernel's symbols), each named by the hexadecimal of its
/// key: a SHA-256 of everything the entry is made from, salted with this binary's identity, so that a target's crafted
/// input cannot make its entry another's, and another build never reads this one's.
///
/// An entry is trusted only in a directory only this user can write (made 0700), only if it is a regular file of this
/// user not writable by others (opened with O_NOFOLLOW), and only if it is whole: magic, key, length and checksum are
/// checked on every read, then the caller's decoder checks the payload; an entry that fails is deleted and counted.
/// Entries are written to a temporary file and renamed, so that a concurrent run reads a whole entry or none. The
/// directory is kept under `maxBytes`, least recently used entries first.
///
/// Thread-safe.
final class CacheDirectory {
    let path: String
    let maxBytes: Int
    /// Mixed into every key: entries written by another build of pybpfprof (whose compiler may differ) are not read.
    let salt: [UInt8]
    /// Guards the counts and the trimming: entries are read on every core (`UnwindTableStore.loadNew`).
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
    /// trusted or made.
    init(path: String, maxBytes: Int, salt: [UInt8] = CacheDirectory.binaryIdentity) throws {
        self.path = path
        self.maxBytes = maxBytes
        self.salt = salt
        try Self.makeDirectory(path)
        var status = stat()
        guard lstat(path, &status) == 0 else { throw CacheUnusable("\(path): \(String(cString: strerror(errno)))") }
        guard status.st_mode & S_IFMT == S_IFDIR else { throw CacheUnusable("\(path) is not a directory") }
        guard status.st_uid == geteuid() else { throw CacheUnusable("\(path) belongs to uid \(status.st_uid), not to uid \(geteuid())") }
        guard status.st_mode & 0o022 == 0 else {
            throw CacheUnusable("\(path) is writable by others (mode \(String(status.st_mode & 0o777, radix: 8))): chmod go-w it")
        }
    }

    struct CacheUnusable: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Magic, key; the payload; a checksum.
    static let headerSize = 8 + 32
    static let trailerSize = 8

    /// A key's hash begun with the directory's salt and the boot's ID (/proc/sys/kernel/random/boot_id, its newline
    /// dropped), for entries that hold until the next boot (the kernel's symbols and types); the caller adds the rest.
    static func bootHash(salt: [UInt8], bootID: String) -> SHA256 {
        var hash = SHA256()
        hash.update(UInt64(salt.count))
        hash.update(salt)
        let boot = Array(bootID.utf8.filter { $0 != UInt8(ascii: "\n") })
        hash.update(UInt64(boot.count))
        hash.update(boot)
        return hash
    }

    /// The entry under `key` (of `magic`'s kind, at most `maxEntryBytes` long), as `decode` makes it from the payload;
    /// nil when there is none. An entry that is not whole, or that `decode` refuses (nil), is deleted.
    func read<Value>(_ key: [UInt8], magic: [UInt8], maxEntryBytes: Int, decode: (UnsafeRawBufferPointer) -> Value?) -> Value? {
        let path = self.path(key)
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return nil }
        guard status.st_mode & S_IFMT == S_IFREG, status.st_uid == geteuid(), status.st_mode & 0o022 == 0,
              let value = Self.withMapping(descriptor, size: Int(status.st_size), maxBytes: maxEntryBytes, { bytes in
                  Self.payload(of: bytes, key: key, magic: magic).flatMap(decode)
              })
        else {
            lock.withLock { counts.rejected += 1 }
            unlink(path)
            return nil
        }
        // Recently used: eviction goes by modification time.
        _ = futimens(descriptor, nil)
        lock.withLock { counts.hits += 1 }
        return value
    }

    /// Keeps `payload` under `key`, then trims the directory to `maxBytes`. Failing to write loses only the time saved.
    func write(_ payload: [UInt8], key: [UInt8], magic: [UInt8]) {
        let bytes = Self.entry(payload, key: key, magic: magic)
        guard bytes.count <= maxBytes else { return }
        let temporary = "\(path)/.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return noteWriteFailure("\(temporary): \(String(cString: strerror(errno)))") }
        let whole = bytes.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let count = Glibc.write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return false }
                offset += count
            }
            return true
        }
        let failure = whole ? nil : String(cString: strerror(errno))
        close(descriptor)
        guard whole, rename(temporary, self.path(key)) == 0 else {
            let reason = failure ?? String(cString: strerror(errno))
            unlink(temporary)
            return noteWriteFailure("\(path): \(reason)")
        }
        lock.withLock {
            counts.written += 1
            trim()
        }
    }

    /// The bytes of an entry as `write` stores it.
    static func entry(_ payload: [UInt8], key: [UInt8], magic: [UInt8]) -> [UInt8] {
        var bytes = magic + key + payload
        let sum = bytes.withUnsafeBytes { checksum($0) }
        withUnsafeBytes(of: sum.littleEndian) { bytes += $0 }
        return bytes
    }

    /// The payload of a whole entry of `magic`'s kind for `key`.
    private static func payload(of bytes: UnsafeRawBufferPointer, key: [UInt8], magic: [UInt8]) -> UnsafeRawBufferPointer? {
        guard magic.count == 8, key.count == 32, bytes.count >= headerSize + trailerSize,
              bytes[0..<8].elementsEqual(magic), bytes[8..<40].elementsEqual(key)
        else { return nil }
        let stored = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: bytes.count - 8, as: UInt64.self))
        guard stored == checksum(UnsafeRawBufferPointer(rebasing: bytes[..<(bytes.count - 8)])) else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[headerSize..<(bytes.count - trailerSize)])
    }

    private func noteWriteFailure(_ reason: String) {
        lock.withLock { if firstWriteFailure == nil { firstWriteFailure = reason } }
    }

    private func path(_ key: [UInt8]) -> String {
        path + "/" + key.hexadecimalDigits
    }

    /// Deletes the least recently used entries until the directory holds at most `maxBytes`, and temporary files an
    /// interrupted write left more than an hour ago.
    private func trim() {
        guard let directoryStream = opendir(path) else { return }
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

    /// Catches a torn or damaged entry (FNV-1a over 8-byte words); trust comes from the directory's owner.
    static func checksum(_ raw: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var offset = 0
        while offset + 8 <= raw.count {
            hash = (hash ^ raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0x100_0000_01b3
            offset += 8
        }
        while offset < raw.count {
            hash = (hash ^ UInt64(raw[offset])) &* 0x100_0000_01b3
            offset += 1
        }
        return hash ^ UInt64(raw.count)
    }

    /// `body` over the file's bytes, mapped (read from the page cache without a copy: the kernel's symbols are 4.6 MB,
    /// 15 ms to read into memory and copy out of it). Entries are replaced by rename, never rewritten in place, so a
    /// mapped file does not shrink under the reader.
    private static func withMapping<Value>(_ descriptor: Int32, size: Int, maxBytes: Int,
                                           _ body: (UnsafeRawBufferPointer) -> Value?) -> Value? {
        guard size > 0, size <= maxBytes else { return nil }
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, descriptor, 0), address != MAP_FAILED
        else { return nil }
        defer { munmap(address, size) }
        return body(UnsafeRawBufferPointer(start: address, count: size))
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
