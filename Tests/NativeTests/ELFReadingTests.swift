import Foundation
import XCTest

@testable import Native

/// What `ELFFile` reads of a file, and from where: only the parts asked for, each read bounded, from the descriptor
/// opened at init, which is closed when the file is released.
final class ELFReadingTests: XCTestCase {
    private var original: [UInt8] = []

    override func setUpWithError() throws {
        try TestBinaries.require(TestBinaries.smallExecutable)
        original = Array(try Data(contentsOf: URL(fileURLWithPath: TestBinaries.smallExecutable)))
    }

    // MARK: Bounds

    func testSymbolTableTooLargeToReadRefusesTheFile() throws {
        let path = try sparseCopy("huge-dynstr", growing: ".dynstr", to: UInt64(ELFFile.maximumSectionSize) + 1)
        XCTAssertThrowsError(try ELFFile(path: path)) { error in
            XCTAssertTrue("\(error)".hasPrefix(path + ": "), "\(error)")
            XCTAssertTrue("\(error)".contains("string table 7 '.dynstr' of symbol table 6 '.dynsym' is 268435457 bytes"), "\(error)")
            XCTAssertTrue("\(error)".contains("more than the \(ELFFile.maximumSectionSize) read per section"), "\(error)")
        }
    }

    /// A section too large to read fails only what needs it: the file opens, and its other sections read.
    func testCallFrameSectionTooLargeToReadFailsOnlyTheUnwindTable() throws {
        let path = try sparseCopy("huge-eh-frame", growing: ".eh_frame", to: UInt64(ELFFile.maximumSectionSize) + 1)
        let elf = try ELFFile(path: path)
        XCTAssertThrowsError(try UnwindTable(elf: elf)) { error in
            XCTAssertTrue("\(error)".hasPrefix(path + ": section 19 '.eh_frame' is 268435457 bytes, more than"), "\(error)")
        }
        XCTAssertNotNil(elf.buildID)
        XCTAssertFalse(elf.symbols().isEmpty)
    }

    func testReadsAreBoundedEachAndInTotal() throws {
        let contents = ELFContents(bytes: Array(0..<100), maximumReadSize: 40, maximumTotalRead: 60)
        XCTAssertEqual(try contents.read(offset: 10, count: 30, what: "first").map(Array.init), Array(10..<40))
        XCTAssertNil(try contents.read(offset: 90, count: 11, what: "outside"), "not in the file: nil, and nothing read")
        XCTAssertThrowsError(try contents.read(offset: 0, count: 41, what: "big")) { error in
            XCTAssertEqual("\(error)", "big is 41 bytes, more than the 40 read per section")
        }
        // A section is read once: asking again costs nothing.
        let section = ELFSection(
            index: 1, name: ".data", type: 1, flags: 0, address: 0, offset: 50, size: 30, link: 0, info: 0, addressAlignment: 1,
            entrySize: 0)
        XCTAssertEqual(try contents.data(of: section).map(Array.init), Array(50..<80))
        XCTAssertEqual(try contents.data(of: section).map(Array.init), Array(50..<80))
        XCTAssertThrowsError(try contents.read(offset: 0, count: 1, what: "one more")) { error in
            XCTAssertEqual("\(error)", "one more (1 bytes) would take the bytes read from the file past 60")
        }
    }

    // MARK: The file under us

    func testFileTruncatedAfterOpeningFailsTheReadsItNoLongerHas() throws {
        let path = try copy("truncated", original)
        let elf = try ELFFile(path: path)
        let symbols = elf.symbols()
        let ehFrame = try XCTUnwrap(elf.section(named: ".eh_frame"))
        XCTAssertEqual(truncate(path, off_t(ehFrame.offset)), 0)
        XCTAssertThrowsError(try elf.data(of: ehFrame)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
            XCTAssertTrue("\(error)".contains("shrank since it was opened"), "\(error)")
        }
        XCTAssertNil(elf.bytes(atVirtualAddress: ehFrame.address, count: 4))
        XCTAssertEqual(elf.symbols(), symbols, "what was read before is kept")
    }

    func testFileReplacedAfterOpeningIsReadFromTheFileOpened() throws {
        let path = try copy("replaced", original)
        let elf = try ELFFile(path: path)
        let replacement = try copy("replacement", Array("not an ELF file".utf8))
        XCTAssertEqual(rename(replacement, path), 0)
        XCTAssertNotNil(elf.buildID)
        XCTAssertFalse(elf.symbols().isEmpty)
        XCTAssertNoThrow(try UnwindTable(elf: elf))
    }

    func testDescriptorIsHeldWhileTheFileLivesAndClosedAfter() throws {
        let before = try openDescriptorCount()
        do {
            let elf = try ELFFile(path: TestBinaries.smallExecutable)
            XCTAssertEqual(try openDescriptorCount(), before + 1)
            _ = elf.symbols()
        }
        for refused in ["/etc/passwd", "/dev/zero", "/tmp", "/nonexistent"] {
            XCTAssertThrowsError(try ELFFile(path: refused))
        }
        XCTAssertEqual(try openDescriptorCount(), before)
    }

    func testCRCOfAFileReadInChunksIsTheCRCOfItsBytes() throws {
        var random = SplitMix64(seed: 0xc4c)
        let bytes = (0..<(5 << 19) + 3).map { _ in UInt8(truncatingIfNeeded: random.next()) }  // 2.5 MiB: three chunks
        let path = try copy("crc", bytes)
        XCTAssertEqual(try CRC32.checksum(of: FileReading.openFile(path, regularFileOnly: true)), CRC32.checksum(bytes))
    }

    // MARK: Helpers

    private func copy(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("native-tests-\(name)-\(getpid())").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        addTeardownBlock { unlink(path) }
        return path
    }

    /// A copy of the small executable whose section `name` is `size` bytes, the file extended to hold it: sparse, so
    /// it costs no disk space, and reading it would cost `size` bytes of memory.
    private func sparseCopy(_ name: String, growing sectionName: String, to size: UInt64) throws -> String {
        let section = try XCTUnwrap(try ELFFile(bytes: original).section(named: sectionName))
        var bytes = original
        let sectionHeaders = Int(original.read(at: FileHeaderField.sectionHeaderOffset, width: 8))
        bytes.patch(size, at: sectionHeaders + section.index * ELFLayout.sectionHeaderSize + SectionHeaderField.size, width: 8)
        let path = try copy(name, bytes)
        XCTAssertEqual(truncate(path, off_t(section.offset + size)), 0)
        return path
    }

    private func openDescriptorCount() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
    }
}
