import Foundation
import XCTest

@testable import Native

final class ELFFileTests: XCTestCase {
    // MARK: libpython3.12.so (pyenv, shared build, not stripped)

    /// Read once: the file is 30 MB, mostly debug info.
    private static let libpython = Result { try ELFFile(path: TestBinaries.libpython312) }

    private func libpython() throws -> ELFFile {
        try TestBinaries.require(TestBinaries.libpython312)
        return try Self.libpython.get()
    }

    func testLibpythonIsSharedObjectWithFullSymbolTable() throws {
        let file = try libpython()
        XCTAssertEqual(file.type, ELFFile.typeShared)
        XCTAssertEqual(file.path, TestBinaries.libpython312)
        XCTAssertNotNil(file.section(named: ".symtab"))
        XCTAssertNotNil(file.section(named: ".dynsym"))
        XCTAssertEqual(file.loadSegments.count, 4)
        XCTAssertGreaterThan(file.symbols().count, 10_000)
    }

    func testLibpythonRuntimeStateIsInAWritableSection() throws {
        let file = try libpython()
        let runtime = try XCTUnwrap(file.symbol(named: "_PyRuntime"))
        XCTAssertEqual(runtime.type, ELFSymbol.typeObject)
        XCTAssertEqual(runtime.binding, ELFSymbol.bindingGlobal)
        let section = file.sections[Int(runtime.sectionIndex)]
        XCTAssertTrue(section.isWritable, "_PyRuntime is in \(section.name)")
        XCTAssertTrue(section.isAllocated)
        // CPython gives the runtime state its own section so that out-of-process tools can find it.
        XCTAssertEqual(section.name, ".PyRuntime")
        XCTAssertTrue((section.address..<section.address + section.size).contains(runtime.value))
    }

    func testLibpythonPyVersionReadsAsHexVersion() throws {
        let file = try libpython()
        let version = try XCTUnwrap(file.symbol(named: "Py_Version"))
        XCTAssertEqual(file.sections[Int(version.sectionIndex)].name, ".rodata")
        let bytes = try XCTUnwrap(file.bytes(atVirtualAddress: version.value, count: 4))
        XCTAssertEqual(littleEndianUInt32(bytes), 0x030C_01F0)
        XCTAssertEqual(littleEndianUInt32(bytes), try pythonHexVersion(TestBinaries.python312))
    }

    func testLibpythonBuildIDMatchesReadelf() throws {
        let file = try libpython()
        let buildID = try XCTUnwrap(file.buildID)
        XCTAssertEqual(buildID.count, 20)
        XCTAssertEqual(hexString(buildID), try readelfBuildID(TestBinaries.libpython312))
    }

    func testLibpythonSymbolsAreDeduplicatedAcrossTables() throws {
        let file = try libpython()
        let symbols = file.symbols()
        let identities = symbols.map { "\($0.name)@\($0.value)" }
        XCTAssertEqual(Set(identities).count, identities.count)
        // Exported symbols are in both .symtab and .dynsym but listed once.
        XCTAssertEqual(symbols.filter { $0.name == "Py_Version" }.count, 1)
        XCTAssertFalse(symbols.contains { $0.sectionIndex == ELFSymbol.sectionIndexUndefined })
        XCTAssertFalse(symbols.contains { $0.type == ELFSymbol.typeSection || $0.type == ELFSymbol.typeFile })
        // An import such as libc's malloc is undefined here, so it is not a symbol of this file.
        XCTAssertNil(file.symbol(named: "malloc"))
    }

    func testSymbolLookupIsConsistentAcrossThreads() throws {
        try TestBinaries.require(TestBinaries.libpython312)
        let file = try ELFFile(path: TestBinaries.libpython312)  // a fresh file, so the index is built concurrently
        let names = ["_PyRuntime", "Py_Version", "PyEval_EvalFrame", "_PyEval_EvalFrameDefault", "Py_Initialize"]
        // Each iteration writes only its own slot.
        nonisolated(unsafe) let results = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: 64)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: results.count) { iteration in
            results[iteration] = file.symbol(named: names[iteration % names.count])?.value ?? 0
        }
        for (iteration, value) in results.enumerated() {
            XCTAssertEqual(value, file.symbol(named: names[iteration % names.count])?.value)
            XCTAssertNotEqual(value, 0)
        }
    }

    func testBytesOfUninitializedDataAreNotFileBacked() throws {
        let file = try libpython()
        let bss = try XCTUnwrap(file.section(named: ".bss"))
        XCTAssertNil(try file.data(of: bss))
        XCTAssertNil(file.bytes(atVirtualAddress: bss.address, count: 1))
        // A read that starts in file-backed data but runs into .bss is not file-backed either.
        let lastDataSegment = try XCTUnwrap(file.loadSegments.last)
        let fileEnd = lastDataSegment.virtualAddress + lastDataSegment.fileSize
        XCTAssertNotNil(file.bytes(atVirtualAddress: fileEnd - 4, count: 4))
        XCTAssertNil(file.bytes(atVirtualAddress: fileEnd - 4, count: 5))
        XCTAssertNil(file.bytes(atVirtualAddress: UInt64.max - 2, count: 4))
        XCTAssertNil(file.bytes(atVirtualAddress: 0, count: -1))
    }

    func testVersionStringIsOnlyATailOfALongerRodataString() throws {
        // The linker merges string literals that are suffixes of others: "3.12.1" (PY_VERSION) lives at the end of
        // the build prefix "/root/.pyenv/versions/3.12.1", so a scan must look for substrings, not string starts.
        let file = try libpython()
        let rodata = try XCTUnwrap(file.data(of: try XCTUnwrap(file.section(named: ".rodata"))))
        let needle = Array("3.12.1\0".utf8)
        let match = try XCTUnwrap(Array(rodata).firstRange(of: needle))
        XCTAssertNotEqual(rodata[rodata.startIndex + match.lowerBound - 1], 0)
    }

    // MARK: /usr/bin/python3.11 (Debian, stripped, non-PIE)

    func testDebianPythonUsesDynamicSymbolsAndDebugLink() throws {
        try TestBinaries.require(TestBinaries.debianPython311)
        let file = try ELFFile(path: TestBinaries.debianPython311)
        XCTAssertEqual(file.type, ELFFile.typeExecutable)
        XCTAssertNil(file.section(named: ".symtab"), "stripped: only .dynsym is left")

        let runtime = try XCTUnwrap(file.symbol(named: "_PyRuntime"))
        XCTAssertTrue(file.sections[Int(runtime.sectionIndex)].isWritable)
        let version = try XCTUnwrap(file.symbol(named: "Py_Version"))
        let versionBytes = try XCTUnwrap(file.bytes(atVirtualAddress: version.value, count: 4))
        XCTAssertEqual(littleEndianUInt32(versionBytes), try pythonHexVersion(TestBinaries.debianPython311))

        let buildID = hexString(try XCTUnwrap(file.buildID))
        XCTAssertEqual(buildID, try readelfBuildID(TestBinaries.debianPython311))
        // Debian names the debug file after the build ID, minus the two characters that become a directory.
        let debugLink = try XCTUnwrap(file.debugLink)
        XCTAssertEqual(debugLink.name, String(buildID.dropFirst(2)) + ".debug")
        XCTAssertNotEqual(debugLink.crc, 0)
    }

    // MARK: /bin/true

    func testBuildIDFromProgramHeadersWhenSectionHeadersAreStripped() throws {
        try TestBinaries.require(TestBinaries.smallExecutable)
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: TestBinaries.smallExecutable)))
        let intact = try ELFFile(bytes: bytes)
        // What `sstrip`-like tools leave: no section header table at all.
        bytes.patch(0, at: FileHeaderField.sectionHeaderOffset, width: 8)
        bytes.patch(0, at: FileHeaderField.sectionHeaderCount, width: 2)
        let stripped = try ELFFile(bytes: bytes)
        XCTAssertTrue(stripped.sections.isEmpty)
        XCTAssertTrue(stripped.symbols().isEmpty)
        XCTAssertNil(stripped.debugLink)
        XCTAssertEqual(stripped.loadSegments, intact.loadSegments)
        XCTAssertEqual(stripped.buildID.map(hexString), try readelfBuildID(TestBinaries.smallExecutable))
    }

    // MARK: Refusals

    func testRefusesFilesThatAreNotELF() throws {
        XCTAssertThrowsError(try ELFFile(path: "/etc/passwd")) { error in
            XCTAssertTrue("\(error)".contains("not an ELF file"), "\(error)")
            XCTAssertTrue("\(error)".contains("/etc/passwd"), "\(error)")
        }
        XCTAssertThrowsError(try ELFFile(path: "/nonexistent/libpython.so")) { error in
            XCTAssertTrue("\(error)".contains("No such file"), "\(error)")
        }
        XCTAssertThrowsError(try ELFFile(path: "/tmp")) { error in
            XCTAssertTrue("\(error)".contains("not a regular file"), "\(error)")
        }
        XCTAssertThrowsError(try ELFFile(path: "/dev/zero")) { error in
            XCTAssertTrue("\(error)".contains("not a regular file"), "\(error)")
        }
    }

    func testRefusesHugeFileWithoutReadingIt() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("native-tests-sparse-\(getpid())").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data([0x7f, 0x45, 0x4c, 0x46])))
        defer { unlink(path) }
        XCTAssertEqual(truncate(path, off_t(ELFFile.maximumFileSize) + 1), 0)  // sparse: costs no disk space
        XCTAssertThrowsError(try ELFFile(path: path)) { error in
            XCTAssertTrue("\(error)".contains("larger than"), "\(error)")
        }
    }

    func testRefusesFIFOWithoutBlocking() throws {
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("native-tests-fifo-\(getpid())").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        defer { unlink(fifo) }
        XCTAssertThrowsError(try ELFFile(path: fifo)) { error in
            XCTAssertTrue("\(error)".contains("not a regular file"), "\(error)")
        }
    }
}

final class SymbolScanTests: XCTestCase {
    /// The in-place scan finds what the index finds, for exported and absent names.
    func testScanAgreesWithTheIndex() throws {
        for path in [TestBinaries.libpython312, "/usr/lib/x86_64-linux-gnu/libc.so.6", TestBinaries.python312] {
            try TestBinaries.require(path)
            let elf = try ELFFile(path: path)
            for name in ["_PyRuntime", "Py_Version", "Py_Initialize", "getpid", "malloc", "no_such_symbol_here", "main"] {
                XCTAssertEqual(elf.scanForSymbol(named: name)?.value, elf.symbol(named: name)?.value, "\(path): \(name)")
            }
        }
    }
}
