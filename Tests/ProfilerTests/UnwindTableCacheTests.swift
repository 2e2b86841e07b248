import CBPF
import Glibc
import Native
@testable import Profiler
import XCTest

/// The on-disk cache of compiled unwind tables: what it gives back is what was compiled, and nothing damaged, foreign
/// or in an untrusted directory is used.
final class UnwindTableCacheTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("table-cache-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    private let libz = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"

    private func entryPath(_ key: [UInt8]) -> String {
        directory + "/" + key.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// Loads `path` into a fresh store over `cache`; returns the rows written and the placement.
    private func load(_ path: String, cache: UnwindTableCache?) throws -> (rows: [unwind_row], placement: UnwindTableStore.Placement) {
        let capacity = 200_000
        let memory = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<unwind_row>.stride, alignment: 8)
        defer { memory.deallocate() }
        let store = UnwindTableStore(rows: memory, capacity: capacity, cache: (cache, nil))
        let key = UnwindTableStore.FileKey(device: "fd:01", inode: 7)
        XCTAssertNotNil(store.layout(key, path: path, root: "/") { try ELFFile(path: path) })
        let placement = try XCTUnwrap(store.placement(for: key), "\(path): \(store.filesWithoutTable)")
        let rows = Array(UnsafeBufferPointer(start: memory.bindMemory(to: unwind_row.self, capacity: capacity), count: Int(placement.rowCount)))
        return (rows, placement)
    }

    private func same(_ a: [unwind_row], _ b: [unwind_row]) -> Bool {
        UnwindTableCache.Entry(linkTimeBase: 0, rows: a) == UnwindTableCache.Entry(linkTimeBase: 0, rows: b)
    }

    func testACachedTableIsTheCompiledOne() throws {
        let compiled = try load(libc, cache: nil)
        let cache = try UnwindTableCache(directory: directory)
        let first = try load(libc, cache: cache)
        XCTAssertEqual([cache.hits, cache.written], [0, 1])
        let second = try load(libc, cache: cache)
        XCTAssertEqual([cache.hits, cache.written, cache.rejected], [1, 1, 0])
        XCTAssertEqual(first.placement, compiled.placement)
        XCTAssertEqual(second.placement, compiled.placement)
        XCTAssertTrue(same(first.rows, compiled.rows))
        XCTAssertTrue(same(second.rows, compiled.rows))
        // The directory is this user's alone, and so is the entry.
        var status = stat()
        XCTAssertEqual(stat(directory, &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o700)
    }

    /// Another build of pybpfprof (another salt) does not read this one's entries.
    func testAnotherBuildDoesNotShareEntries() throws {
        _ = try load(libz, cache: try UnwindTableCache(directory: directory, salt: Array("build A".utf8)))
        let other = try UnwindTableCache(directory: directory, salt: Array("build B".utf8))
        _ = try load(libz, cache: other)
        XCTAssertEqual([other.hits, other.written], [0, 1])
    }

    /// A flipped byte, a cut, an entry under another key, rows out of order with a valid checksum: each is found,
    /// deleted and compiled again, and the result is still the compiled table.
    func testDamagedAndForgedEntriesAreRebuilt() throws {
        let compiled = try load(libz, cache: nil)
        let sections = try CallFrameSections(elf: try ELFFile(path: libz))
        let writer = try UnwindTableCache(directory: directory)
        let key = sections.digest(salt: writer.salt)
        _ = try load(libz, cache: writer)
        let good = try XCTUnwrap(FileManager.default.contents(atPath: entryPath(key)))
        var outOfOrder = UnwindTableCache.Entry(linkTimeBase: compiled.placement.linkTimeBase, rows: compiled.rows)
        outOfOrder.rows.swapAt(1, 2)
        var unknownKind = UnwindTableCache.Entry(linkTimeBase: compiled.placement.linkTimeBase, rows: compiled.rows)
        unknownKind.rows[3].cfa_kind = 200
        let otherKey = [UInt8](repeating: 0xab, count: 32)
        let damaged: [(String, Data)] = [
            ("a flipped byte", { var bytes = good; bytes[bytes.count / 2] ^= 0x40; return bytes }()),
            ("cut short", good.prefix(good.count - 9)),
            ("empty", Data()),
            ("another key's entry", Data(UnwindTableCache.encode(UnwindTableCache.Entry(linkTimeBase: 0, rows: compiled.rows), key: otherKey))),
            ("rows out of order", Data(UnwindTableCache.encode(outOfOrder, key: key))),
            ("an unknown rule kind", Data(UnwindTableCache.encode(unknownKind, key: key))),
        ]
        for (what, bytes) in damaged {
            XCTAssertTrue(FileManager.default.createFile(atPath: entryPath(key), contents: bytes, attributes: [.posixPermissions: 0o600]))
            let cache = try UnwindTableCache(directory: directory)
            let loaded = try load(libz, cache: cache)
            XCTAssertEqual([cache.rejected, cache.hits, cache.written], [1, 0, 1], what)
            XCTAssertTrue(same(loaded.rows, compiled.rows), what)
            XCTAssertEqual(loaded.placement, compiled.placement, what)
            XCTAssertEqual(FileManager.default.contents(atPath: entryPath(key)), good, "\(what): written again whole")
        }
    }

    /// A directory others can write to is not trusted, nor is an entry others can write to or a link.
    func testUntrustedDirectoryAndEntriesAreNotRead() throws {
        XCTAssertEqual(mkdir(directory, 0o700), 0)
        XCTAssertEqual(chmod(directory, 0o777), 0)
        XCTAssertThrowsError(try UnwindTableCache(directory: directory)) { error in
            XCTAssertTrue("\(error)".contains("writable by others"), "\(error)")
        }
        XCTAssertEqual(chmod(directory, 0o700), 0)
        let cache = try UnwindTableCache(directory: directory)
        _ = try load(libz, cache: cache)
        let key = try CallFrameSections(elf: try ELFFile(path: libz)).digest(salt: cache.salt)
        XCTAssertEqual(chmod(entryPath(key), 0o666), 0)
        _ = try load(libz, cache: cache)
        XCTAssertEqual(cache.rejected, 1, "a world-writable entry")
        let elsewhere = directory + "-elsewhere"
        defer { unlink(elsewhere) }
        XCTAssertTrue(FileManager.default.createFile(atPath: elsewhere, contents: FileManager.default.contents(atPath: entryPath(key))))
        unlink(entryPath(key))
        XCTAssertEqual(symlink(elsewhere, entryPath(key)), 0)
        _ = try load(libz, cache: cache)
        XCTAssertEqual(cache.hits, 0, "an entry that is a symbolic link is never read")
    }

    /// The directory stays under its bound: the least recently used entries go first.
    func testTheDirectoryIsKeptUnderItsBound() throws {
        let rows = (0..<1000).map { unwind_row(address: UInt32($0 * 4), cfa_offset: 8, cfa_kind: UInt8(UNWIND_CFA_RSP.rawValue), rbp_offset: 0) }
        let entryBytes = UnwindTableCache.encode(UnwindTableCache.Entry(linkTimeBase: 0, rows: rows), key: [UInt8](repeating: 0, count: 32)).count
        let cache = try UnwindTableCache(directory: directory, maxBytes: 3 * entryBytes)
        let keys = (0..<5).map { [UInt8](repeating: UInt8($0), count: 32) }
        for (index, key) in keys.enumerated() {
            cache.store(UnwindTableCache.Entry(linkTimeBase: UInt64(index), rows: rows), key: key)
            // Modification times a second apart, oldest first (the filesystem's times may be coarse).
            var times = [timespec(tv_sec: 1_000_000 + index, tv_nsec: 0), timespec(tv_sec: 1_000_000 + index, tv_nsec: 0)]
            XCTAssertEqual(utimensat(AT_FDCWD, entryPath(key), &times, 0), 0)
        }
        let kept = keys.filter { FileManager.default.fileExists(atPath: entryPath($0)) }
        XCTAssertEqual(kept, Array(keys.suffix(3)))
        XCTAssertEqual(cache.entry(keys[4])?.linkTimeBase, 4)
    }
}
