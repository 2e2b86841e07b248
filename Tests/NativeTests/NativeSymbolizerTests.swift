import Foundation
import XCTest

@testable import Native

/// Address → function name, on shared libraries compiled for the test (so their functions, sizes, build IDs and
/// debug files are known) and on the system's libc. `nm` is the independent oracle for symbol values and sizes.
final class NativeSymbolizerTests: XCTestCase {
    private static let built = Result { try BuiltLibraries() }

    private func built() throws -> BuiltLibraries {
        try Self.built.get()
    }

    override class func tearDown() {
        if case .success(let built) = Self.built { try? FileManager.default.removeItem(atPath: built.directory) }
        super.tearDown()
    }

    // MARK: function(containing:)

    func testFunctionContainingFindsStaticAndExportedFunctionsOverTheirWholeRange() throws {
        let built = try built()
        let file = try ELFFile(path: built.cLibrary)
        for name in [BuiltLibraries.staticFunction, BuiltLibraries.exportedFunction] {
            let expected = try XCTUnwrap(built.cSymbols[name], "nm does not list \(name)")
            XCTAssertGreaterThan(expected.size, 1)
            for address in [expected.value, expected.value + 1, expected.value + expected.size - 1] {
                let found = file.function(containing: address)
                XCTAssertEqual(found?.name, name, "at \(hex(address))")
                XCTAssertEqual(found?.value, expected.value)
                XCTAssertEqual(found?.size, expected.size)
            }
        }
        let staticFunction = try XCTUnwrap(built.cSymbols[BuiltLibraries.staticFunction])
        XCTAssertEqual(file.function(containing: staticFunction.value)?.binding, ELFSymbol.bindingLocal)
    }

    func testAddressPastASizedFunctionsEndIsNil() throws {
        let built = try built()
        let file = try ELFFile(path: built.cLibrary)
        for name in [BuiltLibraries.staticFunction, BuiltLibraries.exportedFunction] {
            let symbol = try XCTUnwrap(built.cSymbols[name])
            let end = symbol.value + symbol.size
            // The functions are 256-aligned and much shorter, so alignment padding (no symbol) follows each one.
            let following = built.cSymbols.values.filter { $0.value > symbol.value && $0.value <= end }
            XCTAssertTrue(following.isEmpty, "the fixture expects padding after \(name), nm shows \(following)")
            XCTAssertNil(file.function(containing: end), "first byte after \(name)")
        }
    }

    func testAddressesOutsideAllFunctionsAreNil() throws {
        let file = try ELFFile(path: try built().cLibrary)
        XCTAssertNil(file.function(containing: 0))
        XCTAssertNil(file.function(containing: UInt64.max))
    }

    func testLibcGetpidPlusOneIsGetpid() throws {
        try TestBinaries.require(libc)
        let file = try ELFFile(path: libc)
        let getpid = try XCTUnwrap(file.symbol(named: "getpid"))
        let found = try XCTUnwrap(file.function(containing: getpid.value + 1))
        XCTAssertEqual(found.value, getpid.value)
        // `getpid` (weak) and `__getpid` (global) are aliases; the name without leading underscores is chosen.
        XCTAssertEqual(found.name, "getpid")
        let oracle = try nmSymbols(libc, dynamic: true)
        XCTAssertEqual(oracle["getpid"]?.value, found.value)
        XCTAssertEqual(oracle["__getpid"]?.value, found.value)
    }

    // MARK: Lookup rules, on hand-made symbol tables

    func testNestedEntryPointFallsBackToTheEnclosingFunction() {
        let text = section(address: 0x1000, size: 0x1000)
        let index = FunctionIndex(symbols: [
            function("outer", at: 0x1000, size: 0x100),
            function("inner_entry", at: 0x1040, size: 0x10),
            function("next", at: 0x1200, size: 0x20),
        ], sections: [section(address: 0, size: 0), text])
        XCTAssertEqual(name(in: index, at: 0x1044), "inner_entry")
        XCTAssertEqual(name(in: index, at: 0x1050), "outer", "past inner_entry, still inside outer")
        XCTAssertEqual(name(in: index, at: 0x10ff), "outer")
        XCTAssertNil(name(in: index, at: 0x1100), "between outer and next")
        XCTAssertEqual(name(in: index, at: 0x1210), "next")
        XCTAssertNil(name(in: index, at: 0x1220))
    }

    func testUnsizedSymbolCoversUpToTheNextSymbolOrItsSectionEnd() {
        let text = section(address: 0x1000, size: 0x100)
        let index = FunctionIndex(symbols: [
            function("asm_routine", at: 0x1000, size: 0, type: 0),
            function("sized", at: 0x1080, size: 0x10),
            function("asm_tail", at: 0x10c0, size: 0, type: 0),
        ], sections: [section(address: 0, size: 0), text])
        XCTAssertEqual(name(in: index, at: 0x107f), "asm_routine")
        XCTAssertNil(name(in: index, at: 0x1090), "past a sized symbol")
        XCTAssertEqual(name(in: index, at: 0x10ff), "asm_tail")
        XCTAssertNil(name(in: index, at: 0x1100), "past the end of .text")
    }

    func testUntypedSymbolsOutsideCodeAndDataSymbolsAreNotFunctions() {
        let data = ELFSection(
            index: 2, name: ".data", type: 1, flags: ELFSection.flagAlloc | ELFSection.flagWrite, address: 0x4000, offset: 0,
            size: 0x100, link: 0, info: 0, addressAlignment: 8, entrySize: 0)
        let index = FunctionIndex(symbols: [
            function("code", at: 0x1000, size: 0x10),
            function("_edata", at: 0x4000, size: 0, type: 0, section: 2),
            function("a_table", at: 0x4010, size: 0x40, type: ELFSymbol.typeObject, section: 2),
        ], sections: [section(address: 0, size: 0), section(address: 0x1000, size: 0x100), data])
        XCTAssertEqual(index.entries.map(\.symbol.name), ["code"])
        XCTAssertNil(name(in: index, at: 0x4020))
    }

    func testAliasChoiceIsIndependentOfSymbolTableOrder() {
        let aliases = [
            function("__GI___getpid", at: 0x2000, size: 8, binding: ELFSymbol.bindingLocal),
            function("__getpid", at: 0x2000, size: 8),
            function("getpid", at: 0x2000, size: 8, binding: ELFSymbol.bindingWeak),
            function("getpid_label", at: 0x2000, size: 0, type: 0),
        ]
        let sections = [section(address: 0, size: 0), section(address: 0x1000, size: 0x2000)]
        for order in [aliases, aliases.reversed(), [aliases[2], aliases[0], aliases[3], aliases[1]]] {
            let index = FunctionIndex(symbols: order, sections: sections)
            XCTAssertEqual(index.entries.count, 1)
            XCTAssertEqual(name(in: index, at: 0x2004), "getpid")
        }
    }

    // MARK: Debug files

    func testStrippedLibraryResolvesItsStaticFunctionThroughDebugLink() throws {
        let built = try built()
        let directory = try built.makeDirectory("debuglink")
        let library = try built.strippedCopy(in: directory, debugFileIn: directory, debugLink: true)
        let strippedFile = try ELFFile(path: library)
        XCTAssertNil(strippedFile.section(named: ".symtab"))
        let staticFunction = try XCTUnwrap(built.cSymbols[BuiltLibraries.staticFunction])
        XCTAssertNil(strippedFile.function(containing: staticFunction.value + 2), "a static function is not in .dynsym")

        XCTAssertEqual(DebugFileLocator.debugFile(for: strippedFile, path: library, root: "/"), library + ".debug")
        let symbolizer = try NativeFileSymbolizer(path: library)
        XCTAssertEqual(symbolizer.debugFilePath, library + ".debug")
        XCTAssertEqual(symbolizer.symbol(at: staticFunction.value + 2), NativeSymbol(name: BuiltLibraries.staticFunction, offset: 2))
        let exported = try XCTUnwrap(built.cSymbols[BuiltLibraries.exportedFunction])
        XCTAssertEqual(symbolizer.symbol(at: exported.value), NativeSymbol(name: BuiltLibraries.exportedFunction, offset: 0))
        XCTAssertNil(symbolizer.symbol(at: staticFunction.value + staticFunction.size))
    }

    func testDebugLinkIsFoundInDotDebugDirectory() throws {
        let built = try built()
        let directory = try built.makeDirectory("dot-debug")
        let library = try built.strippedCopy(in: directory, debugFileIn: directory + "/.debug", debugLink: true)
        let symbolizer = try NativeFileSymbolizer(path: library)
        XCTAssertEqual(symbolizer.debugFilePath, directory + "/.debug/libsymtest.so.debug")
        let staticFunction = try XCTUnwrap(built.cSymbols[BuiltLibraries.staticFunction])
        XCTAssertEqual(symbolizer.symbol(at: staticFunction.value)?.name, BuiltLibraries.staticFunction)
    }

    func testDebugLinkIsFoundUnderTheRootsDebugDirectory() throws {
        let built = try built()
        let root = try built.makeDirectory("debuglink-root")
        let library = try built.strippedCopy(in: root + "/opt/lib", debugFileIn: root + "/usr/lib/debug/opt/lib", debugLink: true)
        XCTAssertTrue(library.hasPrefix(root))
        let symbolizer = try NativeFileSymbolizer(path: "/opt/lib/libsymtest.so", root: root)
        XCTAssertEqual(symbolizer.debugFilePath, root + "/usr/lib/debug/opt/lib/libsymtest.so.debug")
        let staticFunction = try XCTUnwrap(built.cSymbols[BuiltLibraries.staticFunction])
        XCTAssertEqual(symbolizer.symbol(at: staticFunction.value)?.name, BuiltLibraries.staticFunction)
    }

    func testDebugLinkWithAnotherCRCIsRejected() throws {
        let built = try built()
        let directory = try built.makeDirectory("wrong-crc")
        let library = try built.strippedCopy(in: directory, debugFileIn: directory, debugLink: true)
        // Still a valid ELF file, but not the bytes the link was made for.
        let debugFile = try FileHandle(forWritingTo: URL(fileURLWithPath: library + ".debug"))
        try debugFile.seekToEnd()
        try debugFile.write(contentsOf: Data([0]))
        try debugFile.close()
        XCTAssertNotNil(try? ELFFile(path: library + ".debug"))

        let symbolizer = try NativeFileSymbolizer(path: library)
        XCTAssertNil(symbolizer.debugFilePath)
        let staticFunction = try XCTUnwrap(built.cSymbols[BuiltLibraries.staticFunction])
        XCTAssertNil(symbolizer.symbol(at: staticFunction.value))
    }

    func testCRC32MatchesTheOneObjcopyRecords() throws {
        let built = try built()
        let directory = try built.makeDirectory("crc")
        let library = try built.strippedCopy(in: directory, debugFileIn: directory, debugLink: true)
        let link = try XCTUnwrap(try ELFFile(path: library).debugLink)
        XCTAssertEqual(link.name, "libsymtest.so.debug")
        let debugBytes = Array(try Data(contentsOf: URL(fileURLWithPath: library + ".debug")))
        XCTAssertEqual(CRC32.checksum(debugBytes), link.crc)
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)  // the standard check value
    }

    func testBuildIDDebugFileIsFoundUnderRoot() throws {
        let built = try built()
        let root = try built.makeDirectory("build-id-root")
        _ = try built.strippedCopy(in: root + "/opt", debugFileIn: nil, debugLink: false)
        let buildIDPath = try built.buildIDPath(root: root)
        try FileManager.default.copyItem(atPath: built.debugFile, toPath: buildIDPath)

        let strippedFile = try ELFFile(path: root + "/opt/libsymtest.so")
        XCTAssertNil(strippedFile.debugLink)
        XCTAssertEqual(DebugFileLocator.debugFile(for: strippedFile, path: "/opt/libsymtest.so", root: root), buildIDPath)
        let symbolizer = try NativeFileSymbolizer(path: "/opt/libsymtest.so", root: root)
        XCTAssertEqual(symbolizer.buildID.map(hexString), built.buildID)
        XCTAssertEqual(symbolizer.debugFilePath, buildIDPath)
        let staticFunction = try XCTUnwrap(built.cSymbols[BuiltLibraries.staticFunction])
        XCTAssertEqual(symbolizer.symbol(at: staticFunction.value + 1), NativeSymbol(name: BuiltLibraries.staticFunction, offset: 1))
        // Not found outside the root.
        XCTAssertNil(try NativeFileSymbolizer(path: root + "/opt/libsymtest.so").debugFilePath)
    }

    /// `--debug-dir`: a directory laid out by build ID on this machine, outside the process's root, looked in after the
    /// root's own /usr/lib/debug; a file there of another build ID is not used.
    func testBuildIDDebugFileIsFoundInTheUsersDebugDirectories() throws {
        let built = try built()
        let root = try built.makeDirectory("debug-dir-root")
        _ = try built.strippedCopy(in: root + "/opt", debugFileIn: nil, debugLink: false)
        let elsewhere = try built.makeDirectory("debug-dir-elsewhere")
        let debugDirectory = try built.makeDirectory("debug-dir")
        // The C++ library's debug file under the C library's build ID, in the first directory given: rejected.
        let wrongPath = try built.buildIDPath(root: elsewhere).replacingOccurrences(of: elsewhere + "/usr/lib/debug", with: elsewhere)
        try FileManager.default.createDirectory(
            atPath: (wrongPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        _ = try runCommand("/usr/bin/objcopy", ["--only-keep-debug", built.cxxLibrary, wrongPath])
        let rightPath = try built.buildIDPath(root: debugDirectory)
            .replacingOccurrences(of: debugDirectory + "/usr/lib/debug", with: debugDirectory)
        try FileManager.default.createDirectory(
            atPath: (rightPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: built.debugFile, toPath: rightPath)

        let strippedFile = try ELFFile(path: root + "/opt/libsymtest.so")
        XCTAssertNil(DebugFileLocator.debugFile(for: strippedFile, path: "/opt/libsymtest.so", root: root))
        XCTAssertEqual(DebugFileLocator.debugFile(for: strippedFile, path: "/opt/libsymtest.so", root: root,
                                                  debugDirectories: [elsewhere, debugDirectory]), rightPath)
        let symbolizer = NativeFileSymbolizer(
            file: strippedFile, path: "/opt/libsymtest.so", root: root, debugDirectories: [elsewhere, debugDirectory])
        XCTAssertEqual(symbolizer.debugFilePath, rightPath)
        let staticFunction = try XCTUnwrap(built.cSymbols[BuiltLibraries.staticFunction])
        XCTAssertEqual(symbolizer.symbol(at: staticFunction.value + 1), NativeSymbol(name: BuiltLibraries.staticFunction, offset: 1))
    }

    func testBuildIDLinkWithAbsoluteTargetIsResolvedInsideRoot() throws {
        let built = try built()
        let root = try built.makeDirectory("build-id-symlink-root")
        _ = try built.strippedCopy(in: root + "/opt", debugFileIn: nil, debugLink: false)
        let target = "/usr/lib/debug/opt/libsymtest.so.debug"  // exists only inside the root
        XCTAssertFalse(FileManager.default.fileExists(atPath: target))
        try FileManager.default.createDirectory(atPath: root + "/usr/lib/debug/opt", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: built.debugFile, toPath: root + target)
        try FileManager.default.createSymbolicLink(atPath: try built.buildIDPath(root: root), withDestinationPath: target)

        let symbolizer = try NativeFileSymbolizer(path: "/opt/libsymtest.so", root: root)
        XCTAssertEqual(symbolizer.debugFilePath, try built.buildIDPath(root: root))
        let staticFunction = try XCTUnwrap(built.cSymbols[BuiltLibraries.staticFunction])
        XCTAssertEqual(symbolizer.symbol(at: staticFunction.value)?.name, BuiltLibraries.staticFunction)
    }

    /// A build-ID link in the root pointing at the debug file's absolute path on the host: inside the root that path
    /// holds nothing, so no debug file is used, although the host's is the right one (same build ID). Opened as
    /// root + path, the kernel would have followed the link to the host's file.
    func testBuildIDLinkToAHostFileIsNotFollowedOutOfTheRoot() throws {
        let built = try built()
        let root = try built.makeDirectory("build-id-host-link-root")
        _ = try built.strippedCopy(in: root + "/opt", debugFileIn: nil, debugLink: false)
        XCTAssertTrue(built.debugFile.hasPrefix("/") && FileManager.default.fileExists(atPath: built.debugFile))
        let link = try built.buildIDPath(root: root)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: built.debugFile)
        XCTAssertNotNil(try? ELFFile(path: link), "the link leads to the host's debug file when followed from our root")

        let symbolizer = try NativeFileSymbolizer(path: "/opt/libsymtest.so", root: root)
        XCTAssertNil(symbolizer.debugFilePath)
        let staticFunction = try XCTUnwrap(built.cSymbols[BuiltLibraries.staticFunction])
        XCTAssertNotEqual(symbolizer.symbol(at: staticFunction.value)?.name, BuiltLibraries.staticFunction)
    }

    func testBuildIDDebugFileOfAnotherBuildIsRejected() throws {
        let built = try built()
        let root = try built.makeDirectory("build-id-mismatch")
        _ = try built.strippedCopy(in: root + "/opt", debugFileIn: nil, debugLink: false)
        // The C++ library's debug file, under the C library's build ID.
        _ = try runCommand("/usr/bin/objcopy", ["--only-keep-debug", built.cxxLibrary, try built.buildIDPath(root: root)])
        XCTAssertNil(try NativeFileSymbolizer(path: "/opt/libsymtest.so", root: root).debugFilePath)
    }

    func testLibcStaticFunctionComesFromItsBuildIDDebugFile() throws {
        try TestBinaries.require(libc)
        let buildID = try readelfBuildID(libc)
        let debugFile = "/usr/lib/debug/.build-id/\(buildID.prefix(2))/\(buildID.dropFirst(2)).debug"
        try TestBinaries.require(debugFile)  // libc6-dbg
        let cleanup = try XCTUnwrap(try nmSymbols(debugFile, dynamic: false)["_IO_cleanup"])
        XCTAssertNil(try ELFFile(path: libc).function(containing: cleanup.value + 4)?.name)

        let symbolizer = try NativeFileSymbolizer(path: libc)
        XCTAssertEqual(symbolizer.debugFilePath, debugFile)
        XCTAssertEqual(symbolizer.symbol(at: cleanup.value + 4), NativeSymbol(name: "_IO_cleanup", offset: 4))
        let getpid = try XCTUnwrap(try ELFFile(path: libc).symbol(named: "getpid"))
        XCTAssertEqual(symbolizer.symbol(at: getpid.value + 1), NativeSymbol(name: "getpid", offset: 1))
    }

    // MARK: Demangling

    func testCxxNamesAreDemangledWithTheirParameters() {
        XCTAssertEqual(Demangler.demangle("_ZN3foo3barEi"), "foo::bar(int)")
        XCTAssertEqual(
            Demangler.demangle("_ZNSt6vectorIiSaIiEE9push_backERKi"), "std::vector<int, std::allocator<int> >::push_back(int const&)")
        XCTAssertEqual(Demangler.demangle("_ZN3foo3barEi.cold"), "foo::bar(int) [clone .cold]")
    }

    func testSwiftNamesAreDemangled() {
        XCTAssertEqual(Demangler.demangle("$sSi1poiyS2i_SitFZ"), "static Swift.Int.+ infix(Swift.Int, Swift.Int) -> Swift.Int")
        XCTAssertEqual(Demangler.demangle("_$sSi1poiyS2i_SitFZ"), "static Swift.Int.+ infix(Swift.Int, Swift.Int) -> Swift.Int")
    }

    func testOtherNamesAreUnchanged() {
        for name in ["getpid", "_PyEval_EvalFrameDefault", "_Z", "_Zgarbage", "$sgarbage!", "", "main.cold", "_ZN3foo"] {
            XCTAssertEqual(Demangler.demangle(name), name)
        }
    }

    func testOverlongAndDeeplyNestedNamesDoNotCrash() {
        let overlong = "_ZN3foo3barEi" + String(repeating: "i", count: Demangler.maximumMangledLength)
        XCTAssertEqual(Demangler.demangle(overlong), overlong)
        // Nesting as deep as the length bound allows: past libstdc++'s recursion limit, so refused.
        let nestedPointers = "_Z1f" + String(repeating: "P", count: Demangler.maximumMangledLength - 6) + "i"
        XCTAssertEqual(Demangler.demangle(nestedPointers), nestedPointers)
        XCTAssertEqual(Demangler.demangle("_Z1fPPPi"), "f(int***)")
        // Demangles, but to more than is kept (swift-demangle prints 28,000 characters).
        let nestedOptionals = "$s" + String(repeating: "Sq", count: (Demangler.maximumMangledLength - 4) / 2) + "D"
        XCTAssertEqual(Demangler.demangle(nestedOptionals), nestedOptionals)
        XCTAssertEqual(Demangler.demangle("$sSiSgSgD"), "Swift.Optional<Swift.Optional<Swift.Int>>")
        let deepOptional = "$sSi" + String(repeating: "Sg", count: (Demangler.maximumMangledLength - 5) / 2) + "D"
        // The runtime's demangler stops at its own depth limit.
        let deep = Demangler.demangle(deepOptional)
        XCTAssertTrue(deep.hasPrefix("Swift.Optional<Swift.Optional<"), deep)
        XCTAssertLessThanOrEqual(deep.utf8.count, Demangler.maximumDemangledLength)
    }

    func testCxxFunctionsOfABuiltLibraryAreDemangled() throws {
        let built = try built()
        let symbolizer = try NativeFileSymbolizer(path: built.cxxLibrary)
        XCTAssertNil(symbolizer.debugFilePath)
        let expectations = ["_ZN4demo5twiceEi": "demo::twice(int)", "_ZN4demo7Counter4stepEi": "demo::Counter::step(int)"]
        for (mangled, demangled) in expectations {
            let symbol = try XCTUnwrap(built.cxxSymbols[mangled], "nm does not list \(mangled)")
            XCTAssertGreaterThan(symbol.size, 1)
            XCTAssertEqual(symbolizer.symbol(at: symbol.value + 1), NativeSymbol(name: demangled, offset: 1))
        }
        let callAll = try XCTUnwrap(built.cxxSymbols["call_all"])
        XCTAssertEqual(symbolizer.symbol(at: callAll.value), NativeSymbol(name: "call_all", offset: 0))
    }

    // MARK: Hostile files

    func testTruncatedLibraryIsRefused() throws {
        let built = try built()
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: built.cLibrary)))
        let directory = try built.makeDirectory("truncated")
        for length in [0, 63, 64, bytes.count / 2, bytes.count - 1] {
            let path = directory + "/libtruncated-\(length).so"
            try Data(bytes.prefix(length)).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try NativeFileSymbolizer(path: path), "\(length) bytes")
        }
    }

    func testTruncatedDebugFileIsIgnored() throws {
        let built = try built()
        let root = try built.makeDirectory("truncated-debug")
        _ = try built.strippedCopy(in: root + "/opt", debugFileIn: nil, debugLink: false)
        let debugBytes = Array(try Data(contentsOf: URL(fileURLWithPath: built.debugFile)))
        try Data(debugBytes.prefix(debugBytes.count / 2)).write(to: URL(fileURLWithPath: try built.buildIDPath(root: root)))
        let symbolizer = try NativeFileSymbolizer(path: "/opt/libsymtest.so", root: root)
        XCTAssertNil(symbolizer.debugFilePath)
        let exported = try XCTUnwrap(built.cSymbols[BuiltLibraries.exportedFunction])
        XCTAssertEqual(symbolizer.symbol(at: exported.value)?.name, BuiltLibraries.exportedFunction, "still found in .dynsym")
    }

    /// Random bytes written over the symbol tables: values, sizes, section indices and name offsets all become
    /// arbitrary. Every lookup must return, with a symbol that really contains the address.
    func testCorruptedSymbolTablesDoNotTrap() throws {
        let built = try built()
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: built.cLibrary)))
        let tables = try ELFFile(bytes: original).sections.filter {
            $0.type == ELFSection.typeSymbolTable || $0.type == ELFSection.typeDynamicSymbolTable
        }
        XCTAssertEqual(tables.count, 2)
        var random = SplitMix64(seed: 0x5eed_5)  // declared with the malformed-ELF tests
        var lookups = 0
        for _ in 0..<300 {
            var bytes = original
            for _ in 0..<24 {
                let table = tables[Int(random.next() % UInt64(tables.count))]
                let offset = Int(table.offset + random.next() % table.size)
                bytes[offset] = UInt8(truncatingIfNeeded: random.next())
            }
            guard let file = try? ELFFile(bytes: bytes) else { continue }
            let values = file.symbols().map(\.value)
            for address in [0, 1, UInt64.max, random.next()] + values.prefix(8) + values.prefix(8).map({ $0 &+ 1 }) {
                lookups += 1
                guard let found = file.function(containing: address) else { continue }
                XCTAssertLessThanOrEqual(found.value, address)
            }
        }
        XCTAssertGreaterThan(lookups, 1000)
    }

    // MARK: Cache

    func testCacheSharesOneSymbolizerPerFile() throws {
        let built = try built()
        let cache = NativeSymbolCache()
        let byInode = cache.symbolizer(path: built.cLibrary, root: "/", device: "fd:01", inode: 1234)
        XCTAssertNotNil(byInode)
        XCTAssertTrue(byInode === cache.symbolizer(path: "/elsewhere/libsame.so", root: "/", device: "fd:01", inode: 1234))
        XCTAssertFalse(byInode === cache.symbolizer(path: built.cLibrary, root: "/", device: "fd:01", inode: 1235))
        let byPath = cache.symbolizer(path: built.cLibrary, root: "/", device: nil, inode: nil)
        XCTAssertFalse(byInode === byPath)
        XCTAssertTrue(byPath === cache.symbolizer(path: built.cLibrary, root: "/", device: "00:00", inode: 0))
        XCTAssertEqual(cache.count, 3)
    }

    func testCacheRemembersFilesThatCannotBeRead() throws {
        let built = try built()
        let directory = try built.makeDirectory("cache-failure")
        let path = directory + "/libappears-later.so"
        let cache = NativeSymbolCache()
        XCTAssertNil(cache.symbolizer(path: path, root: "/", device: "fd:01", inode: 77))
        try FileManager.default.copyItem(atPath: built.cLibrary, toPath: path)
        XCTAssertNil(cache.symbolizer(path: path, root: "/", device: "fd:01", inode: 77), "the failure is remembered")
        XCTAssertNotNil(NativeSymbolCache().symbolizer(path: path, root: "/", device: "fd:01", inode: 77))
    }

    func testCacheDropsTheLeastRecentlyUsedFile() throws {
        let built = try built()
        let cache = NativeSymbolCache(capacity: 2)
        let first = cache.symbolizer(path: built.cLibrary, root: "/", device: "fd:01", inode: 1)
        let second = cache.symbolizer(path: built.cLibrary, root: "/", device: "fd:01", inode: 2)
        XCTAssertTrue(first === cache.symbolizer(path: built.cLibrary, root: "/", device: "fd:01", inode: 1))  // now the most recent
        _ = cache.symbolizer(path: built.cLibrary, root: "/", device: "fd:01", inode: 3)
        XCTAssertEqual(cache.count, 2)
        XCTAssertTrue(first === cache.symbolizer(path: built.cLibrary, root: "/", device: "fd:01", inode: 1))
        XCTAssertFalse(second === cache.symbolizer(path: built.cLibrary, root: "/", device: "fd:01", inode: 2), "read again")
    }

    func testSymbolizerGivesTheSameAnswersFromManyThreads() throws {
        let built = try built()
        let symbolizer = try NativeFileSymbolizer(path: built.cxxLibrary)
        let twice = try XCTUnwrap(built.cxxSymbols["_ZN4demo5twiceEi"])
        nonisolated(unsafe) let names = UnsafeMutableBufferPointer<String?>.allocate(capacity: 64)
        names.initialize(repeating: nil)
        defer { names.deallocate() }
        DispatchQueue.concurrentPerform(iterations: names.count) { iteration in
            names[iteration] = symbolizer.symbol(at: twice.value + UInt64(iteration % 2))?.name
        }
        XCTAssertEqual(Set(names), ["demo::twice(int)"])
    }

    // MARK: Unknown frames

    func testUnknownNativeFrameNameIsBaseNamePlusHexAddress() {
        XCTAssertEqual(unknownNativeFrameName(path: "/usr/lib/libfoo.so.1", address: 0x1a2b), "libfoo.so.1+0x1a2b")
        XCTAssertEqual(unknownNativeFrameName(path: "python3.12", address: 0), "python3.12+0x0")
        XCTAssertEqual(unknownNativeFrameName(path: "[vdso]", address: 0xfff), "[vdso]+0xfff")
    }

    // MARK: Helpers

    private let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"

    private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    private func section(address: UInt64, size: UInt64) -> ELFSection {
        ELFSection(
            index: address == 0 ? 0 : 1, name: address == 0 ? "" : ".text", type: address == 0 ? 0 : 1,
            flags: address == 0 ? 0 : ELFSection.flagAlloc | ELFSection.flagExecute, address: address, offset: 0, size: size,
            link: 0, info: 0, addressAlignment: 16, entrySize: 0)
    }

    private func function(
        _ name: String, at value: UInt64, size: UInt64, type: UInt8 = ELFSymbol.typeFunction,
        binding: UInt8 = ELFSymbol.bindingGlobal, section: UInt16 = 1
    ) -> ELFSymbol {
        ELFSymbol(name: name, value: value, size: size, type: type, binding: binding, sectionIndex: section)
    }

    private func name(in index: FunctionIndex, at address: UInt64) -> String? {
        index.entry(containing: address).map { index.entries[$0].symbol.name }
    }
}

/// A symbol as `nm -S` prints it.
struct NMSymbol: Equatable {
    let value: UInt64
    let size: UInt64
}

/// The defined symbols with a size that `nm -S` lists, by name (`dynamic`: from `.dynsym`).
func nmSymbols(_ path: String, dynamic: Bool) throws -> [String: NMSymbol] {
    let output = try runCommand("/usr/bin/nm", (dynamic ? ["-D"] : []) + ["-S", "--defined-only", path])
    var symbols: [String: NMSymbol] = [:]
    for line in output.split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count == 4, let value = UInt64(fields[0], radix: 16), let size = UInt64(fields[1], radix: 16) else { continue }
        // nm -D appends the version (`getpid@@GLIBC_2.2.5`).
        let name = String(fields[3].prefix { $0 != "@" })
        symbols[name] = NMSymbol(value: value, size: size)
    }
    return symbols
}

/// A C and a C++ shared library compiled with the system compilers into a temporary directory, plus the C library's
/// separate debug file.
final class BuiltLibraries: @unchecked Sendable {
    static let staticFunction = "symtest_static_helper"
    static let exportedFunction = "symtest_exported_entry"

    let directory: String
    let cLibrary: String
    let cxxLibrary: String
    /// `objcopy --only-keep-debug` of `cLibrary`.
    let debugFile: String
    let buildID: String
    let cSymbols: [String: NMSymbol]
    let cxxSymbols: [String: NMSymbol]

    // Aligned far beyond their size, so that padding without a symbol follows each function.
    private static let cSource = """
        __attribute__((noinline, noclone, aligned(256)))
        static int symtest_static_helper(int x) {
            volatile int accumulator = x;
            for (int i = 0; i < x; i++) accumulator = accumulator * 31 + i;
            return accumulator;
        }

        __attribute__((aligned(256)))
        int symtest_exported_entry(int x) { return symtest_static_helper(x) + 1; }
        """

    private static let cxxSource = """
        namespace demo {
        struct Counter { int step(int by); };
        __attribute__((noinline)) int Counter::step(int by) { return by * 7 + 3; }
        __attribute__((noinline)) int twice(int x) { return x * 2; }
        }
        extern "C" int call_all(int x) { demo::Counter counter; return demo::twice(x) + counter.step(x); }
        """

    init() throws {
        directory = NSTemporaryDirectory() + "native-symbolizer-tests-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let cSourcePath = directory + "/symtest.c", cxxSourcePath = directory + "/symtest.cc"
        try Self.cSource.write(toFile: cSourcePath, atomically: true, encoding: .utf8)
        try Self.cxxSource.write(toFile: cxxSourcePath, atomically: true, encoding: .utf8)

        cLibrary = directory + "/libsymtest.so"
        cxxLibrary = directory + "/libsymtest-cxx.so"
        debugFile = directory + "/libsymtest.so.debug"
        let flags = ["-O2", "-g", "-fPIC", "-shared", "-Wl,--build-id=sha1"]
        _ = try runCommand("/usr/bin/cc", flags + ["-o", cLibrary, cSourcePath])
        _ = try runCommand("/usr/bin/c++", flags + ["-o", cxxLibrary, cxxSourcePath])
        _ = try runCommand("/usr/bin/objcopy", ["--only-keep-debug", cLibrary, debugFile])
        buildID = try readelfBuildID(cLibrary)
        cSymbols = try nmSymbols(cLibrary, dynamic: false)
        cxxSymbols = try nmSymbols(cxxLibrary, dynamic: false)
    }

    func makeDirectory(_ name: String) throws -> String {
        let path = directory + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Copies the C library to `<directory>/libsymtest.so` and strips it of everything but `.dynsym`; puts its debug
    /// file in `debugDirectory` if given, and records the debug file's name and CRC in the copy if `debugLink`.
    /// Returns the copy's path.
    func strippedCopy(in directory: String, debugFileIn debugDirectory: String?, debugLink: Bool) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let library = directory + "/libsymtest.so"
        try FileManager.default.copyItem(atPath: cLibrary, toPath: library)
        _ = try runCommand("/usr/bin/strip", ["--strip-all", library])
        if let debugDirectory {
            try FileManager.default.createDirectory(atPath: debugDirectory, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: debugFile, toPath: debugDirectory + "/libsymtest.so.debug")
        }
        if debugLink {
            // objcopy reads the debug file to compute the CRC and records only its base name.
            _ = try runCommand("/usr/bin/objcopy", ["--add-gnu-debuglink=\(debugFile)", library])
        }
        return library
    }

    /// `<root>/usr/lib/debug/.build-id/xx/yyyy.debug` for the C library, with its directory created.
    func buildIDPath(root: String) throws -> String {
        let directory = root + "/usr/lib/debug/.build-id/" + buildID.prefix(2)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory + "/" + buildID.dropFirst(2) + ".debug"
    }
}
