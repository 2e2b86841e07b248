@testable import Profiler
import XCTest

/// The kernel symbols' cache entry belongs to one boot and one set of loaded modules.
final class KernelSymbolsCacheTests: XCTestCase {
    private let modules = """
        nfs 516096 2 - Live 0xffffffffc0a2d000
        9p 61440 1 - Live 0xffffffffc0100000
        """

    func testKeyFollowsTheBootAndTheModulesCode() throws {
        let key = try XCTUnwrap(KernelSymbolsCache.key(salt: [1], bootID: "boot-a\n", modules: modules))
        // Reference counts and states change without moving code.
        XCTAssertEqual(KernelSymbolsCache.key(salt: [1], bootID: "boot-a", modules: modules.replacingOccurrences(of: " 2 - Live", with: " 5 - Loading")), key)
        XCTAssertNotEqual(KernelSymbolsCache.key(salt: [1], bootID: "boot-b", modules: modules), key, "another boot")
        XCTAssertNotEqual(KernelSymbolsCache.key(salt: [2], bootID: "boot-a", modules: modules), key, "another build")
        XCTAssertNotEqual(KernelSymbolsCache.key(salt: [1], bootID: "boot-a", modules: modules.replacingOccurrences(of: "0xffffffffc0a2d000", with: "0xffffffffc0b00000")),
                          key, "nfs reloaded elsewhere")
        XCTAssertNotEqual(KernelSymbolsCache.key(salt: [1], bootID: "boot-a", modules: String(modules.prefix { $0 != "\n" })), key, "9p unloaded")
        // Addresses hidden (no CAP_SYSLOG): nothing to key by.
        XCTAssertNil(KernelSymbolsCache.key(salt: [1], bootID: "boot-a", modules: "nfs 516096 2 - Live 0x0000000000000000"))
    }

    /// Read once, then from the cache; a damaged entry is read from /proc/kallsyms again and rewritten.
    func testSecondReadComesFromTheCache() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kernel-symbols-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let directory = try CacheDirectory(path: path, maxBytes: 1 << 30)
        let (first, firstCached) = try KernelSymbolsCache.read(in: directory)
        XCTAssertFalse(firstCached)
        let (second, secondCached) = try KernelSymbolsCache.read(in: directory)
        XCTAssertTrue(secondCached)
        XCTAssertEqual(Array(second.symbols), Array(first.symbols))

        let entry = try XCTUnwrap(FileManager.default.contentsOfDirectory(atPath: path).first { !$0.hasPrefix(".") })
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: path + "/" + entry))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path + "/" + entry))
        let (third, thirdCached) = try KernelSymbolsCache.read(in: directory)
        XCTAssertFalse(thirdCached)
        XCTAssertEqual(directory.rejected, 1)
        XCTAssertEqual(Array(third.symbols), Array(first.symbols))
        XCTAssertTrue(try KernelSymbolsCache.read(in: directory).cached, "rewritten whole")
    }
}
