import Foundation
import XCTest

@testable import Native

final class UnwindTableTests: XCTestCase {
    static let libc = "/lib/x86_64-linux-gnu/libc.so.6"

    // MARK: Agreement with binutils on real binaries

    func testLibpythonAgreesWithReadelf() throws {
        let compared = try assertAgreesWithReadelf(TestBinaries.libpython312)
        XCTAssertGreaterThan(compared, 10_000)
    }

    func testDebianPython311AgreesWithReadelf() throws {
        let compared = try assertAgreesWithReadelf(TestBinaries.debianPython311)
        XCTAssertGreaterThan(compared, 10_000)
    }

    func testLibcAgreesWithReadelf() throws {
        let compared = try assertAgreesWithReadelf(Self.libc)
        XCTAssertGreaterThan(compared, 10_000)
    }

    /// Compares `rule(at:)` with every row binutils computes for `path`, prints the counts, the rows with rules the
    /// unwinder does not support and the table size, and returns how many rows were compared.
    private func assertAgreesWithReadelf(_ path: String) throws -> Int {
        try TestBinaries.require(path)
        let file = try ELFFile(path: path)
        let table = try UnwindTable(elf: file)
        XCTAssertEqual(table.skippedFrameDescriptions, [], "\(path): FDEs skipped")
        let pltRanges = [".plt", ".plt.sec"].compactMap { file.section(named: $0) }.map { $0.address..<($0.address + $0.size) }

        var compared = 0, outsideFDE = 0
        var mismatches: [String] = [], unsupported: [String] = []
        for row in try readelfFrameRows(path) {
            guard row.fdeRange.contains(row.location) else {
                outsideFDE += 1
                continue
            }
            compared += 1
            let expected = row.expectedRule(pltRanges: pltRanges)
            let actual = table.rule(at: row.location)
            if actual != expected {
                mismatches.append("0x\(String(row.location, radix: 16)) CFA \(row.cfa) rbp \(row.rbp ?? "-") ra \(row.returnAddress ?? "-"): "
                    + "expected \(expected), got \(actual.map { "\($0)" } ?? "nil")")
            }
            if expected.cfa == .unsupported {
                unsupported.append("0x\(String(row.location, radix: 16)) CFA \(row.cfa) rbp \(row.rbp ?? "-") ra \(row.returnAddress ?? "-")")
            }
        }
        XCTAssertEqual(mismatches.count, 0, "\(path): \(mismatches.count) rows disagree with readelf, first:\n"
            + mismatches.prefix(20).joined(separator: "\n"))
        print("\(path): compared \(compared) readelf rows (\(outsideFDE) past their FDE's end ignored), "
            + "\(unsupported.count) with unsupported rules; table: \(table.entries.count) entries, "
            + "\(table.distinctRules.count) distinct rules, \(table.sizeInBytes) bytes")
        for row in unsupported { print("  unsupported: \(row)") }
        return compared
    }

    // MARK: Specific frames of real binaries

    func testLibpythonPLTEntriesUseThePLTExpression() throws {
        try TestBinaries.require(TestBinaries.libpython312)
        let file = try ELFFile(path: TestBinaries.libpython312)
        let table = try UnwindTable(elf: file)
        let plt = try XCTUnwrap(file.section(named: ".plt"))
        // PLT0 pushes the link map (rsp+16) then jumps to the resolver with the pushed index on top (rsp+24).
        XCTAssertEqual(table.rule(at: plt.address), UnwindRule(cfa: .rspOffset(16), rbp: .unchanged))
        XCTAssertEqual(table.rule(at: plt.address + 6), UnwindRule(cfa: .rspOffset(24), rbp: .unchanged))
        let pltRule = UnwindRule(cfa: .plt(threshold: 11), rbp: .unchanged)
        for entry in stride(from: plt.address + 16, to: plt.address + plt.size, by: 16) {
            XCTAssertEqual(table.rule(at: entry), pltRule, "PLT entry 0x\(String(entry, radix: 16))")
            XCTAssertEqual(table.rule(at: entry + 15), pltRule, "PLT entry 0x\(String(entry, radix: 16)) + 15")
        }
        // .plt.got entries are a bare `jmp *got`: the return address is on top of the stack.
        if let pltGOT = file.section(named: ".plt.got") {
            XCTAssertEqual(table.rule(at: pltGOT.address), UnwindRule(cfa: .rspOffset(8), rbp: .unchanged))
        }
        if let pltSec = file.section(named: ".plt.sec") {
            XCTAssertNotNil(table.rule(at: pltSec.address), ".plt.sec has no unwind rule")
        }
    }

    func testPython311StartIsTheEndOfTheStack() throws {
        try TestBinaries.require(TestBinaries.debianPython311)
        let table = try UnwindTable(elf: try ELFFile(path: TestBinaries.debianPython311))
        // e_entry, at offset 24 of the ELF header: `_start`, whose CIE marks the return address undefined.
        let header = try FileHandle(forReadingFrom: URL(fileURLWithPath: TestBinaries.debianPython311)).read(upToCount: 32) ?? Data()
        let entry = Array(header).read(at: 24, width: 8)
        XCTAssertEqual(table.rule(at: entry)?.cfa, .endOfStack, "_start at 0x\(String(entry, radix: 16))")
    }

    func testLibcCloneChildIsTheEndOfTheStack() throws {
        try TestBinaries.require(Self.libc)
        let file = try ELFFile(path: Self.libc)
        let table = try UnwindTable(elf: file)
        let clone = try XCTUnwrap(file.symbol(named: "clone"))
        // The child's half of clone() marks the return address undefined before it calls the thread function.
        XCTAssertEqual(table.rule(at: clone.value), UnwindRule(cfa: .rspOffset(8), rbp: .unchanged))
        let childStarts = (clone.value..<(clone.value + clone.size)).filter { table.rule(at: $0)?.cfa == .endOfStack }
        XCTAssertFalse(childStarts.isEmpty, "no instruction of clone is the end of the stack")
    }

    // MARK: Interpreter, on hand-built sections

    func testPrologueWithFramePointer() throws {
        var builder = EHFrameBuilder()
        let cie = builder.appendCIE()
        // push rbp (1 byte); mov rbp, rsp (3 bytes); ...; leave at +20; ret at +21.
        builder.appendFDE(cieOffset: cie, begin: 0x2000, length: 22, instructions: [
            0x41, 0x0e, 0x10,  // advance 1; def_cfa_offset 16
            0x86, 0x02,  // offset r6 (rbp) at cfa-16
            0x43, 0x0d, 0x06,  // advance 3; def_cfa_register rbp
            0x50, 0xc6, 0x0c, 0x07, 0x08,  // advance 16; restore rbp; def_cfa rsp 8
        ])
        builder.appendFDE(cieOffset: cie, begin: 0x2100, length: 0x10, instructions: [])
        let table = try builder.table()
        XCTAssertNil(table.rule(at: 0x1fff))
        XCTAssertEqual(table.rule(at: 0x2000), UnwindRule(cfa: .rspOffset(8), rbp: .unchanged))
        XCTAssertEqual(table.rule(at: 0x2001), UnwindRule(cfa: .rspOffset(16), rbp: .atCFA(-16)))
        XCTAssertEqual(table.rule(at: 0x2004), UnwindRule(cfa: .rbpOffset(16), rbp: .atCFA(-16)))
        XCTAssertEqual(table.rule(at: 0x2013), UnwindRule(cfa: .rbpOffset(16), rbp: .atCFA(-16)))
        XCTAssertEqual(table.rule(at: 0x2014), UnwindRule(cfa: .rspOffset(8), rbp: .unchanged))
        XCTAssertNil(table.rule(at: 0x2016), "gap between FDEs")
        XCTAssertEqual(table.rule(at: 0x2100), UnwindRule(cfa: .rspOffset(8), rbp: .unchanged))
        XCTAssertNil(table.rule(at: 0x2110), "past the last FDE")
        XCTAssertEqual(table.entries.map(\.address), [0x2000, 0x2001, 0x2004, 0x2014, 0x2016, 0x2100, 0x2110])
        XCTAssertEqual(table.distinctRules.count, 3)
        XCTAssertEqual(table.sizeInBytes, 7 * 8 + 3 * 12)
    }

    func testStateStackAndExtendedOpcodes() throws {
        var builder = EHFrameBuilder()
        let cie = builder.appendCIE()
        builder.appendFDE(cieOffset: cie, begin: 0x3000, length: 0x100, instructions: [
            0x02, 0x04,  // advance_loc1 4
            0x12, 0x07, 0x7e,  // def_cfa_sf rsp, -2 × -8 = 16
            0x2f, 0x06, 0x03,  // GNU_negative_offset_extended rbp, -(3 × -8) = +24
            0x0a,  // remember_state
            0x03, 0x04, 0x00,  // advance_loc2 4
            0x13, 0x7c,  // def_cfa_offset_sf -4 × -8 = 32
            0x11, 0x06, 0x7c,  // offset_extended_sf rbp at cfa + (-4 × -8) = +32
            0x04, 0x08, 0x00, 0x00, 0x00,  // advance_loc4 8
            0x0b,  // restore_state: back to rsp+16, rbp at cfa+24
            0x2e, 0x10,  // GNU_args_size 16
            0x01, 0x00, 0x00, 0x00, 0x00,  // set_loc (pcrel sdata4), patched below
            0x09, 0x06, 0x03,  // register rbp in rbx
            0x41, 0x06, 0x06,  // advance 1; restore_extended rbp
            0x41, 0x14, 0x06, 0x01,  // advance 1; val_offset rbp
            0x41, 0x07, 0x10,  // advance 1; undefined rip
            0x41, 0x08, 0x10, 0x00, 0x00,  // advance 1; same_value rip; nop; nop
        ])
        // set_loc to 0x3020: the operand is relative to its own address.
        let setLocOperand = builder.bytes.count - 22
        XCTAssertEqual(builder.bytes[setLocOperand - 1], 0x01)
        let operandAddress = EHFrameBuilder.sectionAddress + UInt64(setLocOperand)
        builder.bytes.replaceSubrange(setLocOperand..<(setLocOperand + 4), with: le32(UInt32(truncatingIfNeeded: 0x3020 &- operandAddress)))

        let table = try builder.table()
        XCTAssertEqual(table.skippedFrameDescriptions, [])
        XCTAssertEqual(table.rule(at: 0x3000), UnwindRule(cfa: .rspOffset(8), rbp: .unchanged))
        XCTAssertEqual(table.rule(at: 0x3004), UnwindRule(cfa: .rspOffset(16), rbp: .atCFA(24)))
        XCTAssertEqual(table.rule(at: 0x3008), UnwindRule(cfa: .rspOffset(32), rbp: .atCFA(32)))
        XCTAssertEqual(table.rule(at: 0x3010), UnwindRule(cfa: .rspOffset(16), rbp: .atCFA(24)))
        XCTAssertEqual(table.rule(at: 0x3020), .unsupported, "rbp held in rbx")
        XCTAssertEqual(table.rule(at: 0x3021), UnwindRule(cfa: .rspOffset(16), rbp: .unchanged), "rbp restored to the CIE's rule")
        XCTAssertEqual(table.rule(at: 0x3022), .unsupported, "rbp is a value, not a saved slot")
        XCTAssertEqual(table.rule(at: 0x3023), .endOfStack)
        XCTAssertEqual(table.rule(at: 0x3024), .unsupported, "return address same_value")
    }

    func testPLTExpressionForms() throws {
        func expression(threshold: UInt8) -> [UInt8] { [0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x30 + threshold, 0x2a, 0x33, 0x24, 0x22] }
        XCTAssertEqual(UnwindRule.pltThreshold(expression(threshold: 11)[...]), 11)
        XCTAssertEqual(UnwindRule.pltThreshold(expression(threshold: 10)[...]), 10)
        XCTAssertNil(UnwindRule.pltThreshold(Array(expression(threshold: 11).dropLast())[...]))
        XCTAssertNil(UnwindRule.pltThreshold([0x77, 0xa0, 0x01, 0x06][...]), "signal frame: breg7 160; deref")

        var builder = EHFrameBuilder()
        let cie = builder.appendCIE()
        let plt = expression(threshold: 10)
        builder.appendFDE(cieOffset: cie, begin: 0x4000, length: 0x40, instructions: [0x0f, UInt8(plt.count)] + plt)
        let deref: [UInt8] = [0x77, 0xa0, 0x01, 0x06]
        builder.appendFDE(cieOffset: cie, begin: 0x4040, length: 0x10, instructions: [0x0f, UInt8(deref.count)] + deref)
        let table = try builder.table()
        XCTAssertEqual(table.rule(at: 0x4010), UnwindRule(cfa: .plt(threshold: 10), rbp: .unchanged))
        XCTAssertEqual(table.rule(at: 0x4040), .unsupported)
    }

    func testDebugFrameFormat() throws {
        // .debug_frame: CIE id 0xffffffff, version 4 with address and segment selector sizes, no augmentation,
        // absolute 8-byte addresses, CIE pointer as a section offset.
        var bytes: [UInt8] = []
        let cieBody: [UInt8] = [0xff, 0xff, 0xff, 0xff, 4, 0, 8, 0, 1, 0x78, 16] + EHFrameBuilder.standardInitialInstructions
        bytes += le32(UInt32(cieBody.count)) + cieBody
        let fdeBody = le32(0) + le32(0x5000) + le32(0) + le32(0x20) + le32(0) + [0x41, 0x0e, 0x10]
        bytes += le32(UInt32(fdeBody.count)) + fdeBody
        let table = try UnwindTable(callFrameSection: bytes[...], kind: .debugFrame, bases: EHFrameBuilder.bases)
        XCTAssertEqual(table.rule(at: 0x5000), UnwindRule(cfa: .rspOffset(8), rbp: .unchanged))
        XCTAssertEqual(table.rule(at: 0x5001), UnwindRule(cfa: .rspOffset(16), rbp: .unchanged))
        XCTAssertNil(table.rule(at: 0x5020))
    }

    // MARK: Malformed input

    func testTruncatedCIE() {
        var builder = EHFrameBuilder()
        builder.appendCIE()
        let truncated = Array(builder.bytes.prefix(10))
        XCTAssertThrowsError(try UnwindTable(callFrameSection: truncated[...], kind: .ehFrame, bases: EHFrameBuilder.bases)) {
            XCTAssert($0 is ELFError, "\($0)")
        }
        // A CIE whose declared length is too short for its own fields: the FDE that uses it is skipped.
        var short = EHFrameBuilder()
        short.bytes = le32(6) + [0, 0, 0, 0, 1, UInt8(ascii: "z")]
        short.appendFDE(cieOffset: 0, begin: 0x1000, length: 0x10, instructions: [])
        assertSkipsEveryFDE(short, because: "not terminated")
    }

    func testLengthPastTheSection() {
        var builder = EHFrameBuilder()
        builder.appendCIE()
        builder.bytes += le32(0x1000) + [0, 0, 0, 0]
        XCTAssertThrowsError(try builder.table()) { XCTAssert("\($0)".contains("run past"), "\($0)") }
        var extended = EHFrameBuilder()
        extended.bytes = le32(0xffff_ffff) + [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        XCTAssertThrowsError(try extended.table()) { XCTAssert($0 is ELFError, "\($0)") }
    }

    func testCIEPointerPointingNowhere() throws {
        var builder = EHFrameBuilder()
        let cie = builder.appendCIE()
        let fde = builder.appendFDE(cieOffset: cie, begin: 0x1000, length: 0x10, instructions: [])
        builder.appendFDE(cieOffset: fde, begin: 0x2000, length: 0x10, instructions: [])  // points at an FDE
        builder.appendFDE(cieOffset: cie + 2, begin: 0x3000, length: 0x10, instructions: [])  // inside the CIE
        builder.appendFDE(cieOffset: 0x10000, begin: 0x4000, length: 0x10, instructions: [])  // forward, past the end
        let table = try builder.table()
        XCTAssertEqual(table.skippedFrameDescriptions.count, 3, "\(table.skippedFrameDescriptions)")
        XCTAssertNotNil(table.rule(at: 0x1000))
        XCTAssertNil(table.rule(at: 0x2000))
        XCTAssertNil(table.rule(at: 0x3000))
        XCTAssertNil(table.rule(at: 0x4000))
    }

    func testStateStackAbuse() throws {
        // remember_state never restored: harmless.
        var unbalanced = EHFrameBuilder()
        let cie = unbalanced.appendCIE()
        unbalanced.appendFDE(cieOffset: cie, begin: 0x1000, length: 0x10, instructions: [0x0a, 0x41, 0x0e, 0x10])
        XCTAssertEqual(try unbalanced.table().rule(at: 0x1001), UnwindRule(cfa: .rspOffset(16), rbp: .unchanged))

        var restores = EHFrameBuilder()
        restores.appendFDE(cieOffset: restores.appendCIE(), begin: 0x1000, length: 0x10, instructions: Array(repeating: 0x0b, count: 10_000))
        assertSkipsEveryFDE(restores, because: "without DW_CFA_remember_state")

        var remembers = EHFrameBuilder()
        remembers.appendFDE(cieOffset: remembers.appendCIE(), begin: 0x1000, length: 0x10, instructions: Array(repeating: 0x0a, count: 10_000))
        assertSkipsEveryFDE(remembers, because: "nested deeper")
    }

    func testHugeAdvancesStopAtTheEndOfTheFDE() throws {
        var builder = EHFrameBuilder()
        let cie = builder.appendCIE()
        // 100,000 one-byte advances that each change the CFA: one row per instruction, linear time.
        let steps = (0..<100_000).flatMap { step in [0x41, 0x0e, step % 2 == 0 ? 0x10 : 0x18] as [UInt8] }
        // pc_range is stored as sdata4 like pc_begin (LSB: the 'R' encoding's format), so 2^31 - 1 at most.
        builder.appendFDE(cieOffset: cie, begin: 0x1000, length: 0x7fff_ffff, instructions: steps)
        // Advances far past the end of a short FDE: interpretation stops at the first one.
        let leaps = (0..<100_000).flatMap { _ in [0x04, 0xff, 0xff, 0xff, 0xff, 0x0e, 0x20] as [UInt8] }
        builder.appendFDE(cieOffset: cie, begin: 0x800, length: 0x10, instructions: leaps)
        let start = Date()
        let table = try builder.table()
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertEqual(table.skippedFrameDescriptions, [])
        XCTAssertEqual(table.rule(at: 0x1000 + 100_000), UnwindRule(cfa: .rspOffset(24), rbp: .unchanged))
        XCTAssertEqual(table.rule(at: 0x1000 + 0x7fff_fffe), UnwindRule(cfa: .rspOffset(24), rbp: .unchanged))
        XCTAssertEqual(table.rule(at: 0x800), UnwindRule(cfa: .rspOffset(8), rbp: .unchanged))
        XCTAssertNil(table.rule(at: 0x810))
        // 0x800, the gap at 0x810, 0x1000, one entry per step, the end.
        XCTAssertEqual(table.entries.count, 3 + 100_000 + 1)
    }

    func testUnknownOpcodeAndBadAugmentation() {
        var unknown = EHFrameBuilder()
        unknown.appendFDE(cieOffset: unknown.appendCIE(), begin: 0x1000, length: 0x10, instructions: [0x41, 0x3f])
        assertSkipsEveryFDE(unknown, because: "unknown call frame instruction 0x3f")

        var augmentation = EHFrameBuilder()
        augmentation.appendFDE(cieOffset: augmentation.appendCIE(augmentation: "xyz"), begin: 0x1000, length: 0x10, instructions: [])
        assertSkipsEveryFDE(augmentation, because: "unknown augmentation")

        var advanceInCIE = EHFrameBuilder()
        advanceInCIE.appendFDE(cieOffset: advanceInCIE.appendCIE(instructions: [0x41]), begin: 0x1000, length: 0x10, instructions: [])
        assertSkipsEveryFDE(advanceInCIE, because: "CIE initial instructions")
    }

    /// Flips random bytes of libc's real `.eh_frame`: every result must be a table or an `ELFError`, in bounded time.
    func testFuzzedLibcEHFrame() throws {
        try TestBinaries.require(Self.libc)
        let file = try ELFFile(path: Self.libc)
        let section = try XCTUnwrap(file.section(named: ".eh_frame"))
        let original = Array(try XCTUnwrap(file.data(of: section)))
        let bases = PointerEncoding.Bases(sectionAddress: section.address, text: nil, data: nil)
        // Each iteration corrupts a prefix of the section that ends at an entry boundary, so the uncorrupted entries
        // stay valid and the parser gets past the first bytes. Prefixes of up to 24 KB include libc's three CIEs
        // ("zR", the "zRS" signal frame at 0x252c, "zPLR" at 0x5974) and cost a few ms each; every 100th
        // iteration corrupts the whole section.
        var boundaries: [Int] = []
        var offset = 0
        while offset + 4 <= original.count {
            let length = Int(original.read(at: offset, width: 4))
            guard length != 0, length != 0xffff_ffff else { break }
            offset += 4 + length
            if offset <= 24 * 1024 { boundaries.append(offset) }
        }
        XCTAssertGreaterThan(boundaries.last ?? 0, 0x5974, "the prefixes reach the zPLR CIE")
        var random = SplitMix64(seed: 0xe4_f7a3e)
        var tables = 0, refusals = 0, skippedFDEs = 0
        let start = Date()
        for iteration in 0..<3000 {
            let end = iteration % 100 == 0 ? original.count : boundaries[random.next(below: boundaries.count)]
            var bytes = Array(original[..<end])
            for _ in 0..<(1 + random.next(below: 8)) {
                bytes[random.next(below: bytes.count)] = UInt8(truncatingIfNeeded: random.next())
            }
            do {
                let table = try UnwindTable(callFrameSection: bytes[...], kind: .ehFrame, bases: bases)
                XCTAssert(zip(table.entries, table.entries.dropFirst()).allSatisfy { $0.address < $1.address && $0.rule != $1.rule })
                tables += 1
                skippedFDEs += table.skippedFrameDescriptions.count
            } catch is ELFError {
                refusals += 1
            }
        }
        print("fuzzed libc .eh_frame: \(tables) tables (\(skippedFDEs) FDEs skipped), \(refusals) refusals in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        XCTAssertGreaterThan(tables, 0)
        XCTAssertGreaterThan(refusals, 0)
    }

    private func assertSkipsEveryFDE(_ builder: EHFrameBuilder, because reason: String, line: UInt = #line) {
        do {
            let table = try builder.table()
            XCTAssertEqual(table.entries, [], line: line)
            XCTAssertFalse(table.skippedFrameDescriptions.isEmpty, line: line)
            for skipped in table.skippedFrameDescriptions {
                XCTAssert(skipped.reason.contains(reason), "\(skipped.reason) does not say \(reason)", line: line)
            }
        } catch {
            XCTFail("\(error)", line: line)
        }
    }
}

/// A file with both sections: code built with -fno-asynchronous-unwind-tables -g has its rules in .debug_frame
/// only, the rest in .eh_frame; the table covers both.
final class MixedCallFrameSectionsTests: XCTestCase {
    func testDebugFrameFillsWhatEHFrameLeavesOut() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("unwind-mixed-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let withEHFrame = "\(directory)/eh.c", withDebugFrame = "\(directory)/debug.c", library = "\(directory)/libmixed.so"
        // A buffer passed to another function: the frame is allocated, so the CFA moves away from rsp + 8.
        let body = "{ char buffer[64]; buffer[0] = (char)x; keep(buffer); return buffer[1] + x; }"
        let declaration = "void keep(char *buffer);\n"
        try (declaration + "void keep(char *buffer) { buffer[1] = 1; }\nint in_eh_frame(int x) \(body)\n")
            .write(toFile: withEHFrame, atomically: true, encoding: .utf8)
        try (declaration + "int in_debug_frame(int x) \(body)\n").write(toFile: withDebugFrame, atomically: true, encoding: .utf8)
        _ = try runCommand("/usr/bin/cc", ["-O1", "-fPIC", "-c", "-o", "\(directory)/eh.o", withEHFrame])
        _ = try runCommand("/usr/bin/cc", ["-O1", "-g", "-fPIC", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
                                            "-c", "-o", "\(directory)/debug.o", withDebugFrame])
        _ = try runCommand("/usr/bin/cc", ["-shared", "-o", library, "\(directory)/eh.o", "\(directory)/debug.o"])

        let elf = try ELFFile(path: library)
        XCTAssertNotNil(elf.section(named: ".eh_frame"))
        XCTAssertNotNil(elf.section(named: ".debug_frame"))
        let table = try UnwindTable(elf: elf)
        for name in ["in_eh_frame", "in_debug_frame"] {
            let function = try XCTUnwrap(elf.symbol(named: name))
            XCTAssertEqual(table.rule(at: function.value), UnwindRule(cfa: .rspOffset(8), rbp: .unchanged), "\(name) entry")
            // Somewhere in the body the CFA is further from rsp: the rules came from that function's own FDE.
            let body = (function.value..<(function.value + function.size)).compactMap { table.rule(at: $0) }
            XCTAssertTrue(body.contains { if case let .rspOffset(offset) = $0.cfa { return offset > 8 } else { return false } },
                          "\(name): \(Set(body))")
        }
    }
}
