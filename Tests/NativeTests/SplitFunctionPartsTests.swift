import Foundation
import XCTest

@testable import Native

/// The parts a compiler split off CPython's eval loop, found without symbols. Where a binary has its symbols (pyenv's
/// builds, GCC's `_PyEval_EvalFrameDefault.cold`), they are the oracle: every part found starts at a symbol of that
/// function, and every such symbol is found. Debian sid's stripped interpreters (Scripts/setup --tests builds their
/// root) have no such symbols: there the part holding the eval loop's samples is named by address, taken from
/// `readelf --debug-dump=frames` and `objdump -d` of those exact packages.
final class SplitFunctionPartsTests: XCTestCase {
    static let evalLoop = "_PyEval_EvalFrameDefault"

    /// Every function of pyenv's libpython builds that GCC split (a `NAME.cold` symbol beside `NAME`): what is found
    /// from `NAME`'s entry must be its `.cold` part, never another function's code. A part reached only through a
    /// computed-goto table (the eval loop's 8-byte `.cold` in 3.11 and 3.12) is not found, and need not be: they are
    /// counted. (`NAME.part.N`, `.isra.N` and `.constprop.N` are functions of their own, called with a frame of
    /// their own, which the symbol-less naming does not need.)
    func testPartsFoundAreThoseTheSymbolsName() throws {
        let pyenv = ProcessInfo.processInfo.environment["PYENV_ROOT"] ?? "/root/.pyenv"
        var namedInAll = 0, foundInAll = 0
        for version in ["3.8.18", "3.11.7", "3.12.1", "3.13.0"] {
            let library = "\(pyenv)/versions/\(version)/lib/libpython\(version.split(separator: ".").prefix(2).joined(separator: ".")).so.1.0"
            let elf = try ELFFile(path: library)
            let functions = elf.symbols().filter { $0.type == ELFSymbol.typeFunction && $0.size > 0 }
            var partsByFunction: [String: Set<UInt64>] = [:]
            for symbol in functions {
                guard symbol.name.hasSuffix(".cold"), let dot = symbol.name.firstIndex(of: "."), dot != symbol.name.startIndex
                else { continue }
                partsByFunction[String(symbol.name[..<dot]), default: []].insert(symbol.value)
            }
            let entries = Dictionary(functions.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
            var named = 0, found = 0, wrong: [String] = []
            for (name, parts) in partsByFunction.sorted(by: { $0.key < $1.key }) {
                guard let entry = entries[name] else { continue }
                named += parts.count
                for part in SplitFunctionParts.find(in: elf, entry: entry) {
                    if parts.contains(part.lowerBound) {
                        found += 1
                    } else {
                        wrong.append("\(name): 0x\(String(part.lowerBound, radix: 16)) is \(elf.function(containing: part.lowerBound)?.name ?? "no symbol")")
                    }
                }
            }
            print("  libpython \(version): \(partsByFunction.count) split functions, \(named) parts named, \(found) found, \(wrong.count) wrong")
            XCTAssertEqual(wrong, [], "\(library): parts found that belong to another function")
            namedInAll += named
            foundInAll += found
        }
        XCTAssertGreaterThan(namedInAll, 40, "too few split functions for the comparison to mean much")
        XCTAssertGreaterThan(foundInAll * 10, namedInAll * 8, "most parts should be found from their function's entry")
    }

    /// Debian sid's stripped interpreters (the root Scripts/setup --tests makes): the eval loop's entry is small and
    /// jumps into a part no symbol names, which holds most of the loop. `objdump -d` is the independent decoder: each
    /// part found is where one of the entry's jumps lands.
    func testDebianSidsStrippedInterpreters() throws {
        let root = (ProcessInfo.processInfo.environment["PYBPFPROF_ROOTS_DIR"] ?? "/var/cache/pybpfprof-roots") + "/sid"
        for version in ["3.13", "3.14", "3.15"] {
            let path = "\(root)/usr/bin/python\(version)"
            guard FileManager.default.fileExists(atPath: path) else {
                XCTFail("\(path) is missing: run sudo Scripts/setup --tests")
                continue
            }
            let elf = try ELFFile(path: path)
            XCTAssertFalse(elf.sections.contains { $0.type == ELFSection.typeSymbolTable }, "python\(version) is not stripped")
            let entry = try XCTUnwrap(elf.symbols().first { $0.name == Self.evalLoop && $0.size > 0 })
            let found = SplitFunctionParts.find(in: elf, entry: entry.value)
            let targets = try jumpTargets(path, from: entry.value, size: entry.size)
            let landed = found.map { part in targets.filter { part.contains($0) }.count }
            print("  sid python\(version): parts \(found.map { "\(hex($0.lowerBound))..<\(hex($0.upperBound))" }), "
                + "objdump's jumps out of the entry landing in each: \(landed)")
            XCTAssertFalse(found.isEmpty, "python\(version): no part of \(Self.evalLoop) found")
            XCTAssertFalse(landed.contains(0), "python\(version): a part no jump of the entry lands in")
            XCTAssertTrue(found.allSatisfy { elf.function(containing: $0.lowerBound) == nil }, "python\(version): a part has a symbol")
        }
    }

    /// The symbolizer names an address in such a part after the function it was split from, and only when asked to.
    func testTheSymbolizerNamesAPartAfterItsFunction() throws {
        let root = (ProcessInfo.processInfo.environment["PYBPFPROF_ROOTS_DIR"] ?? "/var/cache/pybpfprof-roots") + "/sid"
        let elf = try ELFFile(path: "/usr/bin/python3.13", inRoot: root)
        let entry = try XCTUnwrap(elf.symbols().first { $0.name == Self.evalLoop && $0.size > 0 })
        let part = try XCTUnwrap(SplitFunctionParts.find(in: elf, entry: entry.value).first)
        let inside = part.lowerBound + (part.upperBound - part.lowerBound) / 2
        let named = NativeFileSymbolizer(file: elf, path: "/usr/bin/python3.13", root: root, splitFunctions: [Self.evalLoop])
        XCTAssertEqual(named.symbol(at: inside), NativeSymbol(name: Self.evalLoop + ".cold", offset: inside - part.lowerBound))
        XCTAssertEqual(named.symbol(at: entry.value)?.name, Self.evalLoop)
        XCTAssertNil(NativeFileSymbolizer(file: elf, path: "/usr/bin/python3.13", root: root).symbol(at: inside))
    }

    /// The targets of the direct jumps (`jmp`, `jcc`) in [start, start + size) that leave it, as `objdump -d` decodes them.
    private func jumpTargets(_ path: String, from start: UInt64, size: UInt64) throws -> [UInt64] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/objdump")
        process.arguments = ["-d", "--no-show-raw-insn", "--start-address=\(start)", "--stop-address=\(start + size)", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // "  5bfabe:\tje     43d73e <Py_CompileStringExFlags@@Base+0x7a57>"
        return text.split(separator: "\n").compactMap { line -> UInt64? in
            let fields = line.split(separator: "\t")
            guard fields.count >= 2 else { return nil }
            let instruction = fields[1].split(separator: " ", omittingEmptySubsequences: true)
            guard instruction.count >= 2, instruction[0].hasPrefix("j"), let target = UInt64(instruction[1], radix: 16),
                  !(start..<start + size).contains(target) else { return nil }
            return target
        }
    }

    private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
}
