import Native
import XCTest

final class KernelSymbolsTests: XCTestCase {
    func testParsesTextSymbolsAndModules() {
        let table = KernelSymbols(parsing: """
            ffffffff81000000 T _stext
            ffffffff81379cc0 T __x64_sys_getpid
            ffffffff81379d00 D some_data
            ffffffff82202560 t do_nanosleep
            ffffffffc0201000 t ftrace_trampoline\t[__builtin__ftrace]
            0000000000000000 T hidden_symbol
            garbage line
            """)
        XCTAssertEqual(table.symbols.map(\.name), ["_stext", "__x64_sys_getpid", "do_nanosleep", "ftrace_trampoline"])
        XCTAssertEqual(table.symbols.last?.module, "[__builtin__ftrace]")
        XCTAssertEqual(table.symbolize(0xffffffff81379cc0 + 0x12)?.symbol.name, "__x64_sys_getpid")
        XCTAssertEqual(table.symbolize(0xffffffff81379cc0 + 0x12)?.offset, 0x12)
        // Data symbols are not code: an address past getpid still belongs to it, not to some_data.
        XCTAssertEqual(table.symbolize(0xffffffff81379d08)?.symbol.name, "__x64_sys_getpid")
        XCTAssertNil(table.symbolize(0x1000))
    }

    /// The running kernel's table names the running kernel's functions at their own addresses.
    func testRunningKernel() throws {
        let table = try KernelSymbols.read()
        XCTAssertGreaterThan(table.symbols.count, 10_000)
        let getpid = try XCTUnwrap(table.symbols.first { $0.name == "__x64_sys_getpid" }, "no __x64_sys_getpid in kallsyms")
        let resolved = try XCTUnwrap(table.symbolize(getpid.address + 4))
        XCTAssertEqual(resolved.offset, 4)
        XCTAssertEqual(table.symbolize(getpid.address)?.symbol.address, getpid.address)
    }

    /// The byte-level parser reads the running kernel's whole file as the plain field-splitting reading of its format
    /// does: every text symbol, name and module.
    func testRunningKernelAgreesWithFieldSplitting() throws {
        let text = try KernelFile.text("/proc/kallsyms")
        var expected: [(address: UInt64, name: String, module: String)] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 2)
            guard fields.count == 3, let type = fields[1].first, "tTwW".contains(type),
                  let address = UInt64(fields[0], radix: 16), address != 0 else { continue }
            let nameAndModule = fields[2].split(separator: "\t", maxSplits: 1)
            expected.append((address, String(nameAndModule[0]), nameAndModule.count > 1 ? String(nameAndModule[1]) : ""))
        }
        let parsed = KernelSymbols(parsing: text).symbols
        XCTAssertGreaterThan(parsed.count, 10_000)
        XCTAssertEqual(parsed.count, expected.count)
        // Sorted by address; among equal addresses the order is the sort's, so compare as sets per address.
        XCTAssertEqual(Set(parsed.map { "\($0.address) \($0.name) \($0.module)" }),
                       Set(expected.map { "\($0.address) \($0.name) \($0.module)" }))
        XCTAssertTrue(parsed.contains { !$0.module.isEmpty } || !text.contains("\t["), "modules' symbols should keep their module")
    }

    /// Lines the format does not allow are skipped, not misread; the last line needs no newline.
    func testMalformedLines() {
        let table = KernelSymbols(parsing: "1ffffffff81000000 T too_long_an_address\nffffffff81000010 Tx no_space\n"
            + "ffffffff81000020 T\nzz T not_hex\n ffffffff81000030 T leading_space\nffffffff81000040 t last_line")
        XCTAssertEqual(table.symbols.map(\.name), ["last_line"])
        XCTAssertEqual(table.symbols.first?.address, 0xffffffff81000040)
    }

    /// /proc/PID/stack names a function and its size: the way back to an address, a duplicated static name told
    /// apart by its size, a module's by its module.
    func testNamesBackToAddresses() {
        let names = KernelSymbolNames(KernelSymbols(parsing: """
            ffffffff81000000 t cleanup
            ffffffff81000040 T do_nanosleep
            ffffffff81000100 t cleanup
            ffffffff81000180 T after
            ffffffffc0001000 t cleanup\t[nfs]
            ffffffffc0001020 t nfs_wait\t[nfs]
            """))
        XCTAssertEqual(names.address(of: "do_nanosleep", module: "", size: 0xc0), 0xffffffff81000040)
        XCTAssertEqual(names.address(of: "cleanup", module: "", size: 0x80), 0xffffffff81000100)
        XCTAssertEqual(names.address(of: "cleanup", module: "", size: 0x40), 0xffffffff81000000)
        XCTAssertEqual(names.address(of: "cleanup", module: "", size: 0x999), 0xffffffff81000000, "no size matches: the first")
        XCTAssertEqual(names.address(of: "cleanup", module: "[nfs]", size: nil), 0xffffffffc0001000)
        XCTAssertNil(names.address(of: "nfs_wait", module: "", size: nil))
        XCTAssertNil(names.address(of: "missing", module: "", size: nil))
    }

    // MARK: - The cached form

    private static let sample = """
        ffffffff81000000 T _stext
        ffffffffc0201000 t ftrace_trampoline\t[__builtin__ftrace]
        ffffffff81379cc0 T __x64_sys_getpid
        ffffffffc0001020 t nfs_wait\t[nfs]
        ffffffff82202560 t do_nanosleep
        """

    /// Modules' symbols listed after the image's come out sorted, each with its module.
    func testSortsSymbolsListedOutOfOrder() {
        let table = KernelSymbols(parsing: Self.sample)
        XCTAssertEqual(table.symbols.map(\.name), ["_stext", "__x64_sys_getpid", "do_nanosleep", "nfs_wait", "ftrace_trampoline"])
        XCTAssertEqual(table.symbols.map(\.module), ["", "", "", "[nfs]", "[__builtin__ftrace]"])
        let symbol = table.symbolize(0xffffffffc0001030)?.symbol
        XCTAssertEqual(symbol?.address, 0xffffffffc0001020)
        XCTAssertEqual([symbol?.name, symbol?.module], ["nfs_wait", "[nfs]"])
    }

    /// The running kernel's table read back from its encoding is the same table.
    func testEncodedTableReadsBackTheSame() throws {
        let table = try KernelSymbols.read()
        let decoded = try XCTUnwrap(KernelSymbols(encoded: table.encoded()))
        XCTAssertEqual(Array(decoded.symbols), Array(table.symbols))
        let small = KernelSymbols(parsing: Self.sample)
        XCTAssertEqual(KernelSymbols(encoded: small.encoded()).map { Array($0.symbols) }, Array(small.symbols))
    }

    /// Bytes that are not a whole, well-formed table are refused, never read past or trusted.
    func testDamagedEncodingsAreRefused() {
        let bytes = KernelSymbols(parsing: Self.sample).encoded()
        func patched(_ offset: Int, _ value: some FixedWidthInteger) -> [UInt8] {
            var copy = bytes
            withUnsafeBytes(of: value.littleEndian) { for (index, byte) in $0.enumerated() { copy[offset + index] = byte } }
            return copy
        }
        let count = 5, header = 12
        let addresses = header, offsets = addresses + 8 * count, modules = offsets + 4 * (count + 1)
        let cases: [(String, [UInt8])] = [
            ("empty", []),
            ("cut short", Array(bytes.dropLast())),
            ("a byte too many", bytes + [0]),
            ("a count larger than the bytes", patched(0, UInt32(1 << 20))),
            ("a count past the bound", patched(0, UInt32.max)),
            ("addresses out of order", patched(addresses, UInt64.max)),
            ("a name offset past the names", patched(offsets + 4, UInt32(1 << 30))),
            ("name offsets out of order", patched(offsets + 8, UInt32(0))),
            ("a module index out of range", patched(modules, UInt16(9))),
            ("no module", patched(8, UInt32(0))),
        ]
        for (what, damaged) in cases {
            XCTAssertNil(KernelSymbols(encoded: damaged), what)
        }
        XCTAssertNotNil(KernelSymbols(encoded: bytes))
    }
}
