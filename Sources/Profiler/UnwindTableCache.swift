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
/// build IDs say. The directory's trust, the entries' integrity and the size bound are `CacheDirectory`'s; here the
/// rows are checked on every read (sorted, known rule kinds, within the unwinder's bounds).
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

    let directory: CacheDirectory
    var salt: [UInt8] { directory.salt }
    var rejected: Int { directory.rejected }
    var hits: Int { directory.hits }
    var written: Int { directory.written }
    var writeFailure: String? { directory.writeFailure }

    /// Opens (and first makes) the directory. Throws `CacheDirectory.CacheUnusable` with the reason when it cannot be
    /// trusted or made: the recording then compiles every table, and its summary says why.
    init(directory: String = defaultDirectory, maxBytes: Int = defaultMaxBytes, salt: [UInt8] = CacheDirectory.binaryIdentity) throws {
        self.directory = try CacheDirectory(path: directory, maxBytes: maxBytes, salt: salt)
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

    /// The compiled table whose inputs have digest `key`, if a whole entry holds it; a damaged entry is deleted.
    func entry(_ key: [UInt8]) -> Entry? {
        directory.read(key, magic: Self.magic, maxEntryBytes: Self.maxEntryBytes, decode: Self.decode)
    }

    /// Keeps `entry` under `key`. Failing to write loses only the time saved.
    func store(_ entry: Entry, key: [UInt8]) {
        directory.write(Self.payload(entry), key: key, magic: Self.magic)
    }

    // MARK: - The entry's bytes

    /// "PYBPFUT" and the format's version.
    static let magic: [UInt8] = Array("PYBPFUT".utf8) + [1]
    /// Link-time base, row count, row size; then the rows.
    static let payloadHeaderSize = 8 + 4 + 4
    static let rowSize = MemoryLayout<unwind_row>.stride
    static let maxEntryBytes = CacheDirectory.headerSize + payloadHeaderSize + Int(UNWIND_ROWS_PER_FILE_MAX) * rowSize
        + CacheDirectory.trailerSize

    /// The whole entry as it is stored (for tests that write entries of their own).
    static func encode(_ entry: Entry, key: [UInt8]) -> [UInt8] {
        CacheDirectory.entry(payload(entry), key: key, magic: magic)
    }

    private static func payload(_ entry: Entry) -> [UInt8] {
        var writer = LittleEndianWriter(capacity: payloadHeaderSize + entry.rows.count * rowSize)
        writer.write(entry.linkTimeBase)
        writer.write(UInt32(entry.rows.count))
        writer.write(UInt32(rowSize))
        writer.writeRecords(entry.rows)
        return writer.bytes
    }

    /// The entry a payload holds, if its rows are ones the unwinder can search.
    private static func decode(_ bytes: UnsafeRawBufferPointer) -> Entry? {
        var reader = LittleEndianReader(bytes)
        guard let base = reader.read(UInt64.self), let count = reader.read(UInt32.self).map(Int.init),
              reader.read(UInt32.self).map(Int.init) == rowSize, count >= 1, count <= Int(UNWIND_ROWS_PER_FILE_MAX),
              let rows = reader.readRecords(unwind_row.self, count: count), reader.isAtEnd
        else { return nil }
        // As UnwindTableStore writes them: addresses from 0, strictly increasing; known kinds.
        guard rows[0].address == 0 else { return nil }
        for index in rows.indices {
            let row = rows[index]
            guard row.cfa_kind <= UInt8(UNWIND_UNSUPPORTED.rawValue),
                  index == 0 || row.address > rows[index - 1].address
            else { return nil }
        }
        return Entry(linkTimeBase: base, rows: rows)
    }
}
