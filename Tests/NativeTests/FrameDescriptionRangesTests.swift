import Foundation
import XCTest

@testable import Native

/// Addresses no symbol names stand for their function by the start of the FDE covering them. On a library compiled
/// for the test and stripped, whose functions `nm` of the unstripped build and whose FDEs `readelf --debug-dump=frames`
/// list independently; and on hand-made and corrupted `.eh_frame`s, which must be refused or skipped, never crash.
final class FrameDescriptionRangesTests: XCTestCase {
    private static let built = Result { try StrippedLibrary() }

    private func built() throws -> StrippedLibrary {
        try Self.built.get()
    }

    override class func tearDown() {
        if case .success(let built) = Self.built { try? FileManager.default.removeItem(atPath: built.directory) }
        super.tearDown()
    }

    // MARK: A real stripped library

    func testRangesAreReadelfsFDEs() throws {
        let built = try built()
        let ranges = try FrameDescriptionRanges(elf: try ELFFile(path: built.stripped))
        let oracle = try readelfFDERanges(built.stripped)
        XCTAssertGreaterThanOrEqual(oracle.count, StrippedLibrary.functions.count)
        XCTAssertEqual(ranges.ranges.map { $0.start..<$0.end }, oracle)
    }

    func testAddressesInsideAStrippedFunctionMapToItsFDEStart() throws {
        let built = try built()
        XCTAssertNil(try ELFFile(path: built.stripped).section(named: ".symtab"), "the fixture is stripped")
        let symbolizer = try NativeFileSymbolizer(path: built.stripped)
        for name in StrippedLibrary.functions {
            let function = try XCTUnwrap(built.symbols[name], "nm of the unstripped build does not list \(name)")
            XCTAssertGreaterThan(function.size, 2)
            for address in [function.value, function.value + 1, function.value + function.size / 2, function.value + function.size - 1] {
                XCTAssertNil(symbolizer.symbol(at: address), "\(name) is static: no symbol of the stripped file names it")
                XCTAssertEqual(symbolizer.unnamedFunctionStart(containing: address), function.value, "\(name) at \(hex(address))")
            }
        }
    }

    /// The functions are 256-aligned and much shorter: the padding after each belongs to no FDE, and keeps its own
    /// address as its name.
    func testAddressInPaddingBetweenFDEsHasNoFunctionStart() throws {
        let built = try built()
        let symbolizer = try NativeFileSymbolizer(path: built.stripped)
        let oracle = try readelfFDERanges(built.stripped)
        for name in StrippedLibrary.functions {
            let function = try XCTUnwrap(built.symbols[name])
            let padding = function.value + function.size
            XCTAssertFalse(oracle.contains { $0.contains(padding) }, "the fixture expects no FDE at \(hex(padding)), after \(name)")
            XCTAssertNil(symbolizer.unnamedFunctionStart(containing: padding), "after \(name)")
        }
        XCTAssertNil(symbolizer.unnamedFunctionStart(containing: 0))
        XCTAssertNil(symbolizer.unnamedFunctionStart(containing: UInt64.max))
    }

    func testConcurrentFirstLookupsAgree() throws {
        let built = try built()
        let symbolizer = try NativeFileSymbolizer(path: built.stripped)
        let function = try XCTUnwrap(built.symbols[StrippedLibrary.functions[0]])
        nonisolated(unsafe) let starts = UnsafeMutableBufferPointer<UInt64?>.allocate(capacity: 32)
        starts.initialize(repeating: nil)
        defer { starts.deallocate() }
        DispatchQueue.concurrentPerform(iterations: starts.count) { iteration in
            starts[iteration] = symbolizer.unnamedFunctionStart(containing: function.value + UInt64(iteration % 4))
        }
        XCTAssertEqual(Set(starts), [function.value])
    }

    // MARK: Opening the file again

    func testWithoutAWayToReopenTheFileThereIsNoFunctionStart() throws {
        let built = try built()
        let function = try XCTUnwrap(built.symbols[StrippedLibrary.functions[0]])
        let file = try ELFFile(path: built.stripped)
        XCTAssertNil(NativeFileSymbolizer(file: file, path: built.stripped).unnamedFunctionStart(containing: function.value))
        let failing = NativeFileSymbolizer(file: file, path: built.stripped, reopen: { throw ELFError("gone") })
        XCTAssertNil(failing.unnamedFunctionStart(containing: function.value))
        // The process whose map_files it opened has exited; another process mapping the file offers its own way.
        failing.offerReopening { try ELFFile(path: built.stripped) }
        XCTAssertEqual(failing.unnamedFunctionStart(containing: function.value), function.value)
        failing.offerReopening { throw ELFError("not asked once the ranges are read") }
        XCTAssertEqual(failing.unnamedFunctionStart(containing: function.value + 1), function.value)
        let reopened = NativeFileSymbolizer(file: file, path: built.stripped, reopen: { try ELFFile(path: built.stripped) })
        XCTAssertEqual(reopened.unnamedFunctionStart(containing: function.value), function.value)
    }

    /// A file replaced at its path since it was read (another build ID) is not taken for it.
    func testAnotherFileAtThePathIsNotUsed() throws {
        let built = try built()
        let function = try XCTUnwrap(built.symbols[StrippedLibrary.functions[0]])
        let file = try ELFFile(path: built.stripped)
        let replaced = NativeFileSymbolizer(file: file, path: built.stripped, reopen: { try ELFFile(path: built.otherBuild) })
        XCTAssertNil(replaced.unnamedFunctionStart(containing: function.value))
        XCTAssertNotEqual(try ELFFile(path: built.otherBuild).buildID, file.buildID)
    }

    /// A stripped file whose `.eh_frame` was corrupted after it was read: the symbolizer reads nothing wrong, and names
    /// nothing by FDE.
    func testCorruptEHFrameInTheFileGivesNoFunctionStart() throws {
        let built = try built()
        let function = try XCTUnwrap(built.symbols[StrippedLibrary.functions[0]])
        let file = try ELFFile(path: built.stripped)
        let section = try XCTUnwrap(file.section(named: ".eh_frame"))
        var bytes = Array(try XCTUnwrap(FileManager.default.contents(atPath: built.stripped)))
        bytes.patch(0xffff_fff0, at: Int(section.offset), width: 4)  // the first entry's length runs past the section
        let corrupt = try ELFFile(bytes: bytes)
        XCTAssertThrowsError(try FrameDescriptionRanges(elf: corrupt))
        let symbolizer = NativeFileSymbolizer(file: file, path: built.stripped, reopen: { corrupt })
        XCTAssertNil(symbolizer.unnamedFunctionStart(containing: function.value))
        symbolizer.offerReopening { try ELFFile(path: built.stripped) }
        XCTAssertNil(symbolizer.unnamedFunctionStart(containing: function.value), "an unusable .eh_frame is not read again")
    }

    // MARK: Hand-made and hostile .eh_frame

    func testRangesAreSortedAndOverlapsKeepTheEarlierFDE() throws {
        var builder = EHFrameBuilder()
        let cie = builder.appendCIE()
        builder.appendFDE(cieOffset: cie, begin: 0x3000, length: 0x40, instructions: [])
        builder.appendFDE(cieOffset: cie, begin: 0x1000, length: 0x100, instructions: [])
        builder.appendFDE(cieOffset: cie, begin: 0x1080, length: 0x100, instructions: [])  // overlaps the one before
        builder.appendFDE(cieOffset: cie, begin: 0x2000, length: 0, instructions: [])  // covers nothing
        builder.appendFDE(cieOffset: cie, begin: 0x1100, length: 0x10, instructions: [])
        let ranges = try FrameDescriptionRanges(callFrameSection: builder.bytes[...], kind: .ehFrame, bases: EHFrameBuilder.bases)
        XCTAssertEqual(ranges.ranges.map { $0.start..<$0.end }, [0x1000..<0x1100, 0x1100..<0x1110, 0x3000..<0x3040])
        XCTAssertEqual(ranges.range(containing: 0x10ff)?.start, 0x1000)
        XCTAssertEqual(ranges.range(containing: 0x1100)?.start, 0x1100)
        XCTAssertNil(ranges.range(containing: 0x1180), "only the dropped FDE covered it")
        XCTAssertNil(ranges.range(containing: 0x2000))
        XCTAssertNil(ranges.range(containing: 0x3040))
    }

    func testTruncatedAndOverlongSectionsAreRefused() throws {
        var builder = EHFrameBuilder()
        let cie = builder.appendCIE()
        builder.appendFDE(cieOffset: cie, begin: 0x1000, length: 0x100, instructions: [])
        for end in 1..<builder.bytes.count {
            // Cut inside an entry: its length runs past the end. Cut at the boundary: one CIE, no FDE.
            if let ranges = try? FrameDescriptionRanges(callFrameSection: builder.bytes[..<end], kind: .ehFrame, bases: EHFrameBuilder.bases) {
                XCTAssertEqual(ranges.ranges, [], "cut at \(end)")
            }
        }
        // A 64-bit length of nearly 2^64: refused, not allocated or added up.
        var overlong = builder.bytes
        overlong.replaceSubrange(0..<4, with: [0xff, 0xff, 0xff, 0xff] + le32(0xffff_fff0) + le32(0xffff_ffff))
        XCTAssertThrowsError(try FrameDescriptionRanges(callFrameSection: overlong[...], kind: .ehFrame, bases: EHFrameBuilder.bases))
    }

    /// An FDE whose range wraps past 2^64, or whose CIE pointer points outside the section, is skipped; the others stay.
    func testMalformedFDEsAreSkipped() throws {
        var builder = EHFrameBuilder()
        let cie = builder.appendCIE()
        builder.appendFDE(cieOffset: cie, begin: 0xffff_ffff_ffff_ff00, length: 0x1000, instructions: [])
        builder.appendFDE(cieOffset: cie + 0x10000, begin: 0x5000, length: 0x10, instructions: [])
        builder.appendFDE(cieOffset: cie, begin: 0x1000, length: 0x20, instructions: [])
        let ranges = try FrameDescriptionRanges(callFrameSection: builder.bytes[...], kind: .ehFrame, bases: EHFrameBuilder.bases)
        XCTAssertEqual(ranges.ranges.map { $0.start..<$0.end }, [0x1000..<0x1020])
    }

    /// More entries than any real section (`CallFrameSection.maximumEntryCount`): refused rather than walked on.
    func testTooManyEntriesAreRefused() throws {
        // Each entry is 8 bytes, length 4 and CIE id 0: a CIE, whose body is parsed only when an FDE points at it.
        var bytes = [UInt8](repeating: 0, count: 8 * (CallFrameSection.maximumEntryCount + 1))
        bytes.withUnsafeMutableBufferPointer { buffer in
            for offset in stride(from: 0, to: buffer.count, by: 8) { buffer[offset] = 4 }
        }
        XCTAssertThrowsError(try FrameDescriptionRanges(callFrameSection: bytes[...], kind: .ehFrame, bases: EHFrameBuilder.bases))
    }

    /// libc's `.eh_frame` with random bytes overwritten: every result is sorted, non-empty and non-overlapping.
    func testFuzzedLibcEHFrame() throws {
        try TestBinaries.require(libc)
        let file = try ELFFile(path: libc)
        let section = try XCTUnwrap(file.section(named: ".eh_frame"))
        let original = Array(try XCTUnwrap(file.data(of: section)))
        let bases = PointerEncoding.Bases(callFrameSection: section, of: file)
        XCTAssertGreaterThan(try FrameDescriptionRanges(elf: file).ranges.count, 1000)
        var random = SplitMix64(seed: 0xfde_9a0c)
        var parsed = 0, refused = 0
        for _ in 0..<300 {
            var bytes = original
            for _ in 0..<(1 + random.next(below: 16)) {
                bytes[random.next(below: bytes.count)] = UInt8(truncatingIfNeeded: random.next())
            }
            do {
                let ranges = try FrameDescriptionRanges(callFrameSection: bytes[...], kind: .ehFrame, bases: bases).ranges
                XCTAssert(ranges.allSatisfy { $0.start < $0.end })
                XCTAssert(zip(ranges, ranges.dropFirst()).allSatisfy { $0.end <= $1.start })
                parsed += 1
            } catch is ELFError {
                refused += 1
            }
        }
        XCTAssertGreaterThan(parsed, 0)
    }

    // MARK: Helpers

    private let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"

    private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
}

/// The `pc=BEGIN..END` of every FDE `readelf --debug-dump=frames` prints for `path`'s `.eh_frame`, empty ones left
/// out, sorted.
func readelfFDERanges(_ path: String) throws -> [Range<UInt64>] {
    let output = try runCommand("/usr/bin/readelf", ["--debug-dump=no-follow-links,frames", path])
    var ranges: [Range<UInt64>] = []
    var inEHFrame = false
    for line in output.split(separator: "\n") {
        if line.hasPrefix("Contents of the ") {
            inEHFrame = line.contains(".eh_frame")
            continue
        }
        let fields = line.split(separator: " ")
        guard inEHFrame, fields.count >= 4, fields[3] == "FDE", let pc = fields.first(where: { $0.hasPrefix("pc=") }) else { continue }
        let bounds = pc.dropFirst(3).split(separator: ".", omittingEmptySubsequences: true)
        guard bounds.count == 2, let begin = UInt64(bounds[0], radix: 16), let end = UInt64(bounds[1], radix: 16) else {
            throw TestFailure("unparsable FDE line: \(line)")
        }
        if begin < end { ranges.append(begin..<end) }
    }
    return ranges.sorted { $0.lowerBound < $1.lowerBound }
}

/// A C library of static functions reached through one exported entry, compiled with `cc -O2 -shared` and stripped
/// (`strip --strip-all`: only `.dynsym` is left, which names the entry alone), plus the same source built with another
/// build ID.
final class StrippedLibrary: @unchecked Sendable {
    /// Static: in the stripped file no symbol names them.
    static let functions = ["fdetest_mix", "fdetest_sum"]

    let directory: String
    let stripped: String
    /// The same library linked with another build ID.
    let otherBuild: String
    /// From `nm` of the unstripped build: where each function starts, and its size.
    let symbols: [String: NMSymbol]

    // Aligned far beyond their size, so that padding no FDE covers follows each function.
    private static let source = """
        __attribute__((noinline, noclone, aligned(256)))
        static unsigned fdetest_mix(unsigned x) {
            for (int i = 0; i < 7; i++) x = (x ^ (x >> 3)) * 2654435761u + (unsigned)i;
            return x;
        }

        __attribute__((noinline, noclone, aligned(256)))
        static unsigned fdetest_sum(const unsigned *values, int count) {
            unsigned total = 0;
            for (int i = 0; i < count; i++) total += fdetest_mix(values[i]) ^ (total << 1);
            return total;
        }

        __attribute__((aligned(256)))
        unsigned fdetest_entry(const unsigned *values, int count) { return fdetest_sum(values, count) + 1; }
        """

    init() throws {
        directory = NSTemporaryDirectory() + "fde-ranges-tests-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let sourcePath = directory + "/fdetest.c"
        try Self.source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        let unstripped = directory + "/libfdetest-unstripped.so"
        stripped = directory + "/libfdetest.so"
        otherBuild = directory + "/libfdetest-other.so"
        let flags = ["-O2", "-fPIC", "-shared"]
        _ = try runCommand("/usr/bin/cc", flags + ["-Wl,--build-id=sha1", "-o", unstripped, sourcePath])
        _ = try runCommand("/usr/bin/cc", flags + ["-Wl,--build-id=0x0123456789abcdef", "-o", otherBuild, sourcePath])
        symbols = try nmSymbols(unstripped, dynamic: false)
        _ = try runCommand("/usr/bin/strip", ["--strip-all", "-o", stripped, unstripped])
    }
}
