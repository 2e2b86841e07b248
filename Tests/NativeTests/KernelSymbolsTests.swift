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
}
