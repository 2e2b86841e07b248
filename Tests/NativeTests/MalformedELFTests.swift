import Foundation
import XCTest

@testable import Native

/// Corrupted copies of a real small binary: every one must be refused with an `ELFError` or yield nil,
/// never crash or read out of bounds.
final class MalformedELFTests: XCTestCase {
    private var original: [UInt8] = []
    private var sectionHeaderTableOffset = 0

    override func setUpWithError() throws {
        try TestBinaries.require(TestBinaries.smallExecutable)
        original = Array(try Data(contentsOf: URL(fileURLWithPath: TestBinaries.smallExecutable)))
        sectionHeaderTableOffset = Int(original.read(at: FileHeaderField.sectionHeaderOffset, width: 8))
    }

    func testOriginalIsWellFormed() throws {
        let file = try ELFFile(bytes: original)
        XCTAssertNil(file.path)
        XCTAssertNotNil(file.buildID)
        XCTAssertNotNil(file.debugLink)
        XCTAssertFalse(file.symbols().isEmpty)
    }

    func testTruncatedFiles() {
        assertRefused(Array(original.prefix(0)), because: "too short")
        assertRefused(Array(original.prefix(63)), because: "too short")
        // The headers survive, but section and program data would run past the end.
        assertRefused(Array(original.prefix(original.count / 2)), because: "past the end")
        assertRefused(Array(original.dropLast()), because: "past the end")
    }

    func testWrongMagicClassByteOrderOrMachine() {
        assertRefused(corrupted { $0[0] = 0x7e }, because: "not an ELF file")
        assertRefused(corrupted { $0[FileHeaderField.fileClass] = 1 }, because: "not ELF64")
        assertRefused(corrupted { $0[FileHeaderField.dataEncoding] = 2 }, because: "not little-endian")
        assertRefused(corrupted { $0.patch(183, at: FileHeaderField.machine, width: 2) }, because: "not x86_64")  // EM_AARCH64
    }

    func testHeaderTablesOutOfBounds() {
        let sectionTable = FileHeaderField.sectionHeaderOffset, programTable = FileHeaderField.programHeaderOffset
        assertRefused(corrupted { $0.patch(UInt64($0.count) + 100, at: sectionTable, width: 8) }, because: "section header table offset")
        assertRefused(corrupted { $0.patch(UInt64.max - 10, at: sectionTable, width: 8) }, because: "section header table offset")
        assertRefused(corrupted { $0.patch(0xfffe, at: FileHeaderField.sectionHeaderCount, width: 2) },
                      because: "section header table (65534 entries")
        assertRefused(corrupted { $0.patch(UInt64($0.count), at: programTable, width: 8) }, because: "program header table")
        assertRefused(corrupted { $0.patch(0xfffe, at: FileHeaderField.programHeaderCount, width: 2) }, because: "program header table")
        assertRefused(corrupted { $0.patch(40, at: FileHeaderField.sectionHeaderEntrySize, width: 2) }, because: "section header entry size")
        assertRefused(corrupted { $0.patch(32, at: FileHeaderField.programHeaderEntrySize, width: 2) }, because: "program header entry size")
    }

    func testExtendedSectionCountThatOverflows() {
        // e_shnum = 0 means "the count is in section 0's sh_size"; a count of 2^64-1 must not overflow the bounds check.
        assertRefused(
            corrupted {
                $0.patch(0, at: FileHeaderField.sectionHeaderCount, width: 2)
                $0.patch(UInt64.max, at: self.sectionHeaderTableOffset + SectionHeaderField.size, width: 8)
            },
            because: "section header table"
        )
    }

    func testSectionNameTableProblems() {
        let nameTableIndexField = FileHeaderField.sectionNameTableIndex
        assertRefused(corrupted { $0.patch(999, at: nameTableIndexField, width: 2) }, because: "section name table index 999")
        let nameTable = sectionHeaderOffset(index: Int(original.read(at: nameTableIndexField, width: 2)))
        assertRefused(corrupted { $0.patch(UInt64($0.count), at: nameTable + SectionHeaderField.offset, width: 8) },
                      because: "section name table")
        assertRefused(corrupted { $0.patch(UInt64.max, at: nameTable + SectionHeaderField.size, width: 8) }, because: "section name table")
        assertRefused(corrupted { $0.patch(1, at: nameTable + SectionHeaderField.type, width: 4) }, because: "not a string table")
        let textSection = sectionHeaderOffset(named: ".text")
        assertRefused(corrupted { $0.patch(0xffff_ffff, at: textSection + SectionHeaderField.name, width: 4) }, because: "name offset")
        // A name table without a single NUL: every name would run off its end.
        assertRefused(
            corrupted { bytes in
                let offset = Int(bytes.read(at: nameTable + SectionHeaderField.offset, width: 8))
                let size = Int(bytes.read(at: nameTable + SectionHeaderField.size, width: 8))
                for index in offset..<offset + size { bytes[index] = UInt8(ascii: "x") }
            },
            because: "NUL-terminated"
        )
    }

    func testSymbolTableProblems() {
        let dynamicSymbols = sectionHeaderOffset(named: ".dynsym")
        let size = dynamicSymbols + SectionHeaderField.size, link = dynamicSymbols + SectionHeaderField.link
        assertRefused(corrupted { $0.patch($0.read(at: size, width: 8) + 1, at: size, width: 8) }, because: "not a multiple of its entry size")
        assertRefused(corrupted { $0.patch(16, at: dynamicSymbols + SectionHeaderField.entrySize, width: 8) }, because: "entry size 16")
        assertRefused(corrupted { $0.patch(0, at: link, width: 4) }, because: "not a string table")
        assertRefused(corrupted { $0.patch(1000, at: link, width: 4) }, because: "not a string table")
        assertRefused(corrupted { $0.patch(UInt64($0.count), at: dynamicSymbols + SectionHeaderField.offset, width: 8) },
                      because: "past the end")
    }

    func testStringTableOffsetPastTheEnd() {
        let dynamicStrings = sectionHeaderOffset(named: ".dynstr")
        assertRefused(corrupted { $0.patch(UInt64($0.count), at: dynamicStrings + SectionHeaderField.offset, width: 8) },
                      because: "'.dynstr'")
        assertRefused(corrupted { $0.patch(UInt64.max, at: dynamicStrings + SectionHeaderField.size, width: 8) }, because: "'.dynstr'")
    }

    func testSymbolNameOutsideItsStringTableSkipsOnlyThatSymbol() throws {
        let file = try ELFFile(bytes: original)
        let dynamicSymbols = try XCTUnwrap(file.section(named: ".dynsym"))
        let symbolCount = file.symbols().count
        XCTAssertGreaterThan(symbolCount, 1)
        // Corrupt the name of every defined symbol but the last.
        let corruptedFile = try ELFFile(bytes: corrupted { bytes in
            let symbolSize = ELFLayout.symbolSize
            for index in 1..<Int(dynamicSymbols.size) / symbolSize - 1 {
                bytes.patch(0xffff_fff0, at: Int(dynamicSymbols.offset) + index * symbolSize + SymbolField.name, width: 4)
            }
        })
        XCTAssertLessThan(corruptedFile.symbols().count, symbolCount)
        XCTAssertNil(corruptedFile.symbol(named: file.symbols()[0].name))
    }

    func testMalformedNotesAndDebugLinkYieldNil() throws {
        let file = try ELFFile(bytes: original)
        let buildIDSection = try XCTUnwrap(file.section(named: ".note.gnu.build-id"))
        // The same bytes are also reachable through PT_NOTE, so both paths see the huge name size.
        let hugeNameSize = try ELFFile(bytes: corrupted { $0.patch(0xffff_ffff, at: Int(buildIDSection.offset), width: 4) })
        XCTAssertNil(hugeNameSize.buildID)
        let hugeDescriptorSize = try ELFFile(bytes: corrupted { $0.patch(0xffff_ffff, at: Int(buildIDSection.offset) + 4, width: 4) })
        XCTAssertNil(hugeDescriptorSize.buildID)

        let debugLinkSection = try XCTUnwrap(file.section(named: ".gnu_debuglink"))
        let unterminatedName = try ELFFile(bytes: corrupted { bytes in
            for index in 0..<Int(debugLinkSection.size) { bytes[Int(debugLinkSection.offset) + index] = UInt8(ascii: "x") }
        })
        XCTAssertNil(unterminatedName.debugLink)
        let nameFillsSection = try ELFFile(bytes: corrupted { bytes in
            let end = Int(debugLinkSection.offset + debugLinkSection.size)
            for index in Int(debugLinkSection.offset)..<end - 1 { bytes[index] = UInt8(ascii: "x") }
            bytes[end - 1] = 0
        })
        XCTAssertNil(nameFillsSection.debugLink, "no room left for the CRC")
    }

    /// Random byte changes concentrated on the structures the parser trusts least (ELF header, program headers,
    /// section header table), with every accessor exercised on whatever still parses.
    func testRandomCorruptionNeverCrashes() throws {
        var random = SplitMix64(seed: 0x5eed_e1f)
        let programHeaderTableEnd = Int(original.read(at: FileHeaderField.programHeaderOffset, width: 8))
            + Int(original.read(at: FileHeaderField.programHeaderCount, width: 2)) * ELFLayout.programHeaderSize
        let hotRegions = [0..<programHeaderTableEnd, sectionHeaderTableOffset..<original.count, 0..<original.count]
        var parsed = 0
        for _ in 0..<4000 {
            var bytes = original
            for _ in 0..<(1 + random.next(below: 8)) {
                let region = hotRegions[random.next(below: hotRegions.count)]
                let position = region.lowerBound + random.next(below: region.count)
                // Half the time an extreme value, which is what breaks size and offset arithmetic.
                bytes[position] = random.next(below: 2) == 0 ? UInt8(truncatingIfNeeded: random.next()) : 0xff
            }
            guard let file = try? ELFFile(bytes: bytes) else { continue }
            parsed += 1
            exerciseEveryAccessor(file)
        }
        // Many flips land in bytes the parser does not validate; the loop must have reached the accessors.
        XCTAssertGreaterThan(parsed, 500)
    }

    // MARK: Helpers

    private func exerciseEveryAccessor(_ file: ELFFile) {
        _ = file.buildID
        _ = file.debugLink
        for section in file.sections {
            _ = try? file.data(of: section)
            _ = file.bytes(atVirtualAddress: section.address, count: 16)
        }
        for symbol in file.symbols() {
            XCTAssertNotNil(file.symbol(named: symbol.name))
            _ = file.bytes(atVirtualAddress: symbol.value, count: Int(min(symbol.size, 64)))
        }
        let mappings = file.loadSegments.map { segment in
            MemoryMapping.parse("7f0000000000-7f0000001000 r-xp \(String(segment.offset, radix: 16)) fd:01 1 /x")
        }.joined()
        _ = file.loadBias(mappings: Array(mappings))
    }

    private func corrupted(_ change: (inout [UInt8]) -> Void) -> [UInt8] {
        var bytes = original
        change(&bytes)
        return bytes
    }

    private func assertRefused(_ bytes: [UInt8], because expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ELFFile(bytes: bytes), file: file, line: line) { error in
            XCTAssertTrue(error is ELFError, "\(type(of: error))", file: file, line: line)
            XCTAssertTrue("\(error)".contains(expected), "\"\(error)\" does not mention \"\(expected)\"", file: file, line: line)
        }
    }

    private func sectionHeaderOffset(index: Int) -> Int {
        sectionHeaderTableOffset + index * ELFLayout.sectionHeaderSize
    }

    private func sectionHeaderOffset(named name: String) -> Int {
        // Parsing the intact original is safe; the offset is then used to corrupt a copy.
        let section = (try? ELFFile(bytes: original))?.section(named: name)
        return sectionHeaderOffset(index: section?.index ?? 0)
    }
}

/// A small deterministic generator, so a fuzz failure reproduces.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58_476d_1ce4_e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d0_49bb_1331_11eb
        return mixed ^ (mixed >> 31)
    }

    mutating func next(below bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }
}
