import Foundation
import XCTest

@testable import Native

final class LoadBiasTests: XCTestCase {
    private var sleepingPython: Process?

    override func tearDown() {
        if let sleepingPython, sleepingPython.isRunning {
            sleepingPython.terminate()
            sleepingPython.waitUntilExit()
        }
        sleepingPython = nil
        super.tearDown()
    }

    // MARK: Live processes

    func testSharedLibpythonBiasFindsPyVersionInARunningProcess() throws {
        try TestBinaries.require(TestBinaries.python312)
        let pid = try startSleepingPython(TestBinaries.python312, waitingForMappingOf: TestBinaries.libpython312)
        let mappings = try MemoryMapping.read(pid: pid).filter { $0.path == TestBinaries.libpython312 }
        XCTAssertGreaterThanOrEqual(mappings.count, 4, "one mapping per PT_LOAD at least")

        let libpython = try ELFFile(path: TestBinaries.libpython312)
        let bias = try XCTUnwrap(libpython.loadBias(mappings: mappings))
        XCTAssertEqual(bias % 4096, 0)
        // libpython's first PT_LOAD is at offset 0 and address 0, so the bias is where that mapping starts.
        XCTAssertEqual(bias, mappings.first { $0.offset == 0 }?.start)

        let version = try XCTUnwrap(libpython.symbol(named: "Py_Version"))
        let bytes = try XCTUnwrap(readProcessMemory(pid: pid, address: bias &+ version.value, count: 4))
        XCTAssertEqual(littleEndianUInt32(bytes), 0x030C_01F0)

        let runtime = try XCTUnwrap(libpython.symbol(named: "_PyRuntime"))
        let runtimeAddress = bias &+ runtime.value
        let runtimeMapping = try XCTUnwrap(mappings.first { ($0.start..<$0.end).contains(runtimeAddress) })
        XCTAssertTrue(runtimeMapping.writable)
    }

    func testNonPIEExecutableHasZeroBiasInARunningProcess() throws {
        try TestBinaries.require(TestBinaries.debianPython311)
        let pid = try startSleepingPython(TestBinaries.debianPython311, waitingForMappingOf: TestBinaries.debianPython311)
        let mappings = try MemoryMapping.read(pid: pid).filter { $0.path == TestBinaries.debianPython311 }

        let python = try ELFFile(path: TestBinaries.debianPython311)
        XCTAssertEqual(python.loadBias(mappings: mappings), 0)
        let version = try XCTUnwrap(python.symbol(named: "Py_Version"))
        let bytes = try XCTUnwrap(readProcessMemory(pid: pid, address: version.value, count: 4))
        XCTAssertEqual(littleEndianUInt32(bytes), try pythonHexVersion(TestBinaries.debianPython311))
    }

    // MARK: Layouts no installed binary has

    private let bias: UInt64 = 0x7f12_3450_0000
    private let read: UInt32 = ELFProgramHeader.flagRead
    private let readExecute: UInt32 = ELFProgramHeader.flagRead | ELFProgramHeader.flagExecute
    private let readWrite: UInt32 = ELFProgramHeader.flagRead | ELFProgramHeader.flagWrite

    func testFirstLoadSegmentAtNonZeroOffset() throws {
        // The RW segment's first page is the RX segment's page in the file (offset 0x2000): only the execute bit
        // says which segment that mapping belongs to.
        let file = try ELFFile(bytes: syntheticELF(type: ELFFile.typeShared, segments: [
            SyntheticSegment(offset: 0x1000, virtualAddress: 0x1000, fileSize: 0x500, memorySize: 0x500, flags: read),
            SyntheticSegment(offset: 0x2000, virtualAddress: 0x2000, fileSize: 0x800, memorySize: 0x800, flags: readExecute),
            SyntheticSegment(offset: 0x2e10, virtualAddress: 0x3e10, fileSize: 0x100, memorySize: 0x2000, flags: readWrite),
        ]))
        let mappings = [
            mapping(bias + 0x1000, bias + 0x2000, "r--p", offset: 0x1000),
            mapping(bias + 0x2000, bias + 0x3000, "r-xp", offset: 0x2000),
            mapping(bias + 0x3000, bias + 0x4000, "rw-p", offset: 0x2000),
        ]
        XCTAssertEqual(file.loadBias(mappings: mappings), bias)
        XCTAssertEqual(file.loadBias(mappings: [mappings[2]]), bias, "any one mapping of a segment is enough")
    }

    func testSegmentsSharingFilePagesAsLldLaysThemOut() throws {
        // All three segments start in file page 0, so every mapping has offset 0 and several segments fit each.
        let file = try ELFFile(bytes: syntheticELF(type: ELFFile.typeShared, segments: [
            SyntheticSegment(offset: 0, virtualAddress: 0, fileSize: 0x5f0, memorySize: 0x5f0, flags: read),
            SyntheticSegment(offset: 0x5f0, virtualAddress: 0x15f0, fileSize: 0x300, memorySize: 0x300, flags: readExecute),
            SyntheticSegment(offset: 0x8f0, virtualAddress: 0x28f0, fileSize: 0x100, memorySize: 0x100, flags: readWrite),
        ]))
        let mappings = [
            mapping(bias, bias + 0x1000, "r--p", offset: 0),
            mapping(bias + 0x1000, bias + 0x2000, "r-xp", offset: 0),
            mapping(bias + 0x2000, bias + 0x3000, "rw-p", offset: 0),
        ]
        XCTAssertEqual(file.loadBias(mappings: mappings), bias)
    }

    func testRelroSplitOfTheDataSegment() throws {
        // After relocation the loader makes the start of the RW segment read-only, splitting its mapping in two.
        let file = try ELFFile(bytes: syntheticELF(type: ELFFile.typeShared, segments: [
            SyntheticSegment(offset: 0, virtualAddress: 0, fileSize: 0x800, memorySize: 0x800, flags: read),
            SyntheticSegment(offset: 0x1d70, virtualAddress: 0x2d70, fileSize: 0x1470, memorySize: 0x1608, flags: readWrite),
        ]))
        let mappings = [
            mapping(bias + 0x2000, bias + 0x3000, "r--p", offset: 0x1000),
            mapping(bias + 0x3000, bias + 0x5000, "rw-p", offset: 0x2000),
        ]
        XCTAssertEqual(file.loadBias(mappings: mappings), bias)
    }

    func testNoBiasWithoutAMatchingMapping() throws {
        let file = try ELFFile(bytes: syntheticELF(type: ELFFile.typeShared, segments: [
            SyntheticSegment(offset: 0, virtualAddress: 0, fileSize: 0x800, memorySize: 0x800, flags: read),
        ]))
        XCTAssertNil(file.loadBias(mappings: []))
        XCTAssertNil(file.loadBias(mappings: [mapping(bias, bias + 0x1000, "r--p", offset: 0x5000)]), "offset past the segment")
        XCTAssertNil(file.loadBias(mappings: [mapping(bias, bias + 0x1000, "r-xp", offset: 0)]), "segment is not executable")
        XCTAssertNil(file.loadBias(mappings: [mapping(bias, bias + 0x3000, "r--p", offset: 0)]), "larger than the segment")
    }

    func testExecutableBiasIsZeroOnlyIfAMappingAgrees() throws {
        let file = try ELFFile(bytes: syntheticELF(type: ELFFile.typeExecutable, segments: [
            SyntheticSegment(offset: 0, virtualAddress: 0x400000, fileSize: 0x800, memorySize: 0x800, flags: read),
        ]))
        XCTAssertEqual(file.loadBias(mappings: [mapping(0x400000, 0x401000, "r--p", offset: 0)]), 0)
        XCTAssertNil(file.loadBias(mappings: [mapping(0x500000, 0x501000, "r--p", offset: 0)]))
    }

    // MARK: Helpers

    private func mapping(_ start: UInt64, _ end: UInt64, _ permissions: String, offset: UInt64) -> MemoryMapping {
        let line = "\(String(start, radix: 16))-\(String(end, radix: 16)) \(permissions) \(String(offset, radix: 16)) fd:01 42 /synthetic.so"
        return MemoryMapping.parse(line)[0]
    }

    /// Starts `python -c 'sleep'` and waits until the loader has mapped `mappedFile`, data segment included
    /// (libraries appear shortly after exec). The process is killed in `tearDown`.
    private func startSleepingPython(_ interpreter: String, waitingForMappingOf mappedFile: String) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: interpreter)
        process.arguments = ["-c", "import time; time.sleep(30)"]
        try process.run()
        sleepingPython = process
        let pid = process.processIdentifier
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if try MemoryMapping.read(pid: pid).contains(where: { $0.path == mappedFile && $0.writable }) {
                return pid
            }
            usleep(20_000)
        }
        throw TestFailure("\(mappedFile) did not appear in the maps of \(interpreter) (pid \(pid))")
    }

    private func readProcessMemory(pid: Int32, address: UInt64, count: Int) -> [UInt8]? {
        let descriptor = open("/proc/\(pid)/mem", O_RDONLY)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: count)
        let readCount = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, count, off_t(Int64(bitPattern: address))) }
        return readCount == count ? bytes : nil
    }
}
