import CBPF
import Native
@testable import Profiler
import XCTest

/// The BPF form of unwind rules, and the table store's sharing and memory bound, on real files.
final class UnwindTableStoreTests: XCTestCase {
    private let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"

    private func row(_ rule: UnwindRule?) -> unwind_row {
        UnwindTableStore.row(UnwindTable.Entry(address: 0x1010, rule: rule), base: 0x1000)
    }

    func testRowsEncodeEachRuleKind() {
        var rsp = row(UnwindRule(cfa: .rspOffset(24), rbp: .atCFA(-16)))
        XCTAssertEqual([rsp.address, UInt32(rsp.cfa_kind), UInt32(bitPattern: Int32(rsp.cfa_offset))], [0x10, UNWIND_CFA_RSP.rawValue, 24])
        XCTAssertEqual(rsp.rbp_offset, -2)
        rsp = row(UnwindRule(cfa: .rbpOffset(16), rbp: .unchanged))
        XCTAssertEqual(UInt32(rsp.cfa_kind), UNWIND_CFA_RBP.rawValue)
        XCTAssertEqual(rsp.rbp_offset, 0)
        let plt = row(UnwindRule(cfa: .plt(threshold: 11), rbp: .unchanged))
        XCTAssertEqual(UInt32(plt.cfa_kind), UNWIND_CFA_PLT.rawValue)
        XCTAssertEqual(plt.cfa_offset, 11)
        XCTAssertEqual(UInt32(row(UnwindRule(cfa: .endOfStack, rbp: .unchanged)).cfa_kind), UNWIND_END_OF_STACK.rawValue)
        XCTAssertEqual(UInt32(row(nil).cfa_kind), UNWIND_NO_RULE.rawValue)
    }

    /// What the 8-byte row cannot hold stops the unwinder rather than misleading it.
    func testRulesThatDoNotFitTheRowAreUnsupported() {
        for rule in [UnwindRule(cfa: .rspOffset(40_000), rbp: .unchanged),
                     UnwindRule(cfa: .rspOffset(16), rbp: .atCFA(-12)),
                     UnwindRule(cfa: .rspOffset(16), rbp: .atCFA(-8 * 200)),
                     UnwindRule(cfa: .unsupported, rbp: .unchanged)] {
            XCTAssertEqual(UInt32(row(rule).cfa_kind), UNWIND_UNSUPPORTED.rawValue, "\(rule)")
        }
    }

    func testAFileIsLoadedOnceAndItsRowsMatchItsTable() throws {
        let capacity = 200_000
        let memory = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<unwind_row>.stride, alignment: 8)
        defer { memory.deallocate() }
        let store = UnwindTableStore(rows: memory, capacity: capacity)
        let key = UnwindTableStore.FileKey(device: "fd:01", inode: 42)
        // The symbolizer keeps the opener (a @Sendable closure), so the count is an object's, not a captured var.
        final class OpenCount: @unchecked Sendable { var value = 0 }
        let opened = OpenCount()
        let libc = self.libc
        let open: ELFFileOpener = { opened.value += 1; return try ELFFile(path: libc) }
        XCTAssertNotNil(store.layout(key, path: libc, root: "/", open: open))
        let placement = try XCTUnwrap(store.placement(for: key))
        // Another process mapping the same file: no second read, no second copy.
        XCTAssertNotNil(store.layout(key, path: libc, root: "/", open: open))
        XCTAssertEqual(opened.value, 1)
        XCTAssertEqual(store.placement(for: key), placement)
        XCTAssertEqual(store.usedRows, Int(placement.rowCount))
        XCTAssertEqual(store.filesLoaded, 1)

        let table = try UnwindTable(elf: try ELFFile(path: libc))
        XCTAssertEqual(Int(placement.rowCount), table.entries.count)
        XCTAssertEqual(placement.linkTimeBase, table.entries[0].address)
        let rows = memory.bindMemory(to: unwind_row.self, capacity: capacity)
        for (index, entry) in table.entries.enumerated() {
            XCTAssertEqual(UInt64(rows[index].address) + placement.linkTimeBase, entry.address)
        }
    }

    /// The symbolizer reads a file's FDE ranges when an address first needs them, by opening the file again: through
    /// the process that mapped it first, which may have exited by then, or through a later one mapping the same file.
    func testALaterProcessMappingTheFileOffersItsWayToOpenIt() throws {
        let libz = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 10_000 * MemoryLayout<unwind_row>.stride, alignment: 8)
        defer { memory.deallocate() }
        let store = UnwindTableStore(rows: memory, capacity: 10_000)
        let key = UnwindTableStore.FileKey(device: "fd:01", inode: 9)
        struct Exited: Error {}
        final class FirstProcess: @unchecked Sendable { var exited = false }
        let first = FirstProcess()
        XCTAssertNotNil(store.layout(key, path: libz, root: "/") {
            if first.exited { throw Exited() }
            return try ELFFile(path: libz)
        })
        first.exited = true
        let symbolizer = try XCTUnwrap(store.symbolizer(for: key))
        let unnamed = try XCTUnwrap(try FrameDescriptionRanges(elf: try ELFFile(path: libz)).ranges
            .first { $0.end - $0.start > 1 && symbolizer.symbol(at: $0.start + 1) == nil }, "libz is stripped: some function has no symbol")
        XCTAssertNil(symbolizer.unnamedFunctionStart(containing: unnamed.start + 1), "the first process has exited")
        XCTAssertNotNil(store.layout(key, path: libz, root: "/") { try ELFFile(path: libz) })
        XCTAssertEqual(symbolizer.unnamedFunctionStart(containing: unnamed.start + 1), unnamed.start)
    }

    func testAFileThatDoesNotFitIsReportedAndGetsNoRows() throws {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 1000 * MemoryLayout<unwind_row>.stride, alignment: 8)
        defer { memory.deallocate() }
        let store = UnwindTableStore(rows: memory, capacity: 1000)
        let key = UnwindTableStore.FileKey(device: "fd:01", inode: 7)
        // The load layout is still known: addresses in the file are symbolized, and unwound by frame pointer.
        XCTAssertNotNil(store.layout(key, path: libc, root: "/") { try ELFFile(path: self.libc) })
        XCTAssertNil(store.placement(for: key))
        XCTAssertEqual(store.usedRows, 0)
        let reason = try XCTUnwrap(store.filesWithoutTable[libc])
        XCTAssertTrue(reason.contains("no room"), reason)
    }
}
