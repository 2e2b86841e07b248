import Foundation
import TestSupport
import XCTest

@testable import CPython

final class LineTableTests: XCTestCase {
    // MARK: - Against real interpreters

    // Each interpreter runs Fixtures/dump_line_tables.py, which reports every code unit's line as
    // computed by that interpreter's own PyCode_Addr2Line; LineTable must agree everywhere.

    func testMatchesCPython2_7() throws { try checkAgainstPyenv(version: "2.7.18") }
    func testMatchesCPython3_6() throws { try checkAgainstPyenv(version: "3.6.15") }
    func testMatchesCPython3_7() throws { try checkAgainstPyenv(version: "3.7.16") }
    func testMatchesCPython3_8() throws { try checkAgainstPyenv(version: "3.8.18") }
    func testMatchesCPython3_9() throws { try checkAgainstPyenv(version: "3.9.18") }
    func testMatchesCPython3_10() throws { try checkAgainstPyenv(version: "3.10.13") }
    func testMatchesCPython3_11() throws { try checkAgainstPyenv(version: "3.11.7") }
    func testMatchesCPython3_12() throws { try checkAgainstPyenv(version: "3.12.1") }
    func testMatchesCPython3_13() throws { try checkAgainstPyenv(version: "3.13.0") }

    func testMatchesSystemPython3_11() throws {
        try checkAgainstInterpreter(path: "/usr/bin/python3.11", versionPrefix: "3.11.")
    }

    /// Debian's own builds in their roots: trixie's 3.13 and sid's 3.13, 3.14 and 3.15.
    func testMatchesDebianTrixie3_13() throws { try checkAgainst(try TestInterpreters.debian("trixie", "3.13"), versionPrefix: "3.13.") }
    func testMatchesDebianSid3_13() throws { try checkAgainst(try TestInterpreters.debian("sid", "3.13"), versionPrefix: "3.13.") }
    func testMatchesDebianSid3_14() throws { try checkAgainst(try TestInterpreters.debian("sid", "3.14"), versionPrefix: "3.14.") }
    func testMatchesDebianSid3_15() throws { try checkAgainst(try TestInterpreters.debian("sid", "3.15"), versionPrefix: "3.15.") }

    // MARK: - Hand-made tables

    func testLnotab() {
        // (6 bytes, +1 line), (4 bytes, +2 lines), starting at line 10.
        let table = LineTable(format: .lnotab, bytes: [6, 1, 4, 2], firstLineNumber: 10)
        XCTAssertEqual(table.line(forByteOffset: 0), 10)
        XCTAssertEqual(table.line(forByteOffset: 4), 10)
        XCTAssertEqual(table.line(forByteOffset: 6), 11)
        XCTAssertEqual(table.line(forByteOffset: 10), 13)
        // 3.8/3.9 keep answering the last line past the end of the table.
        XCTAssertEqual(table.line(forByteOffset: 1000), 13)
        XCTAssertEqual(table.line(forByteOffset: -2), 10)
        // An empty table puts everything on the first line.
        XCTAssertEqual(LineTable(format: .lnotab, bytes: [], firstLineNumber: 7).line(forByteOffset: 40), 7)
    }

    func testLinetable310() {
        let bytes: [UInt8] = [
            4, 0,  // [0, 4): line 1
            0, 127,  // zero width, only moves the line: 128
            2, 3,  // [4, 6): line 131
            6, 0x80,  // [6, 12): -128, no line
            2, 0xFF,  // [12, 14): line 130
        ]
        let table = LineTable(format: .linetable310, bytes: bytes, firstLineNumber: 1)
        XCTAssertEqual(table.line(forByteOffset: 2), 1)
        XCTAssertEqual(table.line(forByteOffset: 4), 131)
        XCTAssertNil(table.line(forByteOffset: 6))
        XCTAssertNil(table.line(forByteOffset: 10))
        XCTAssertEqual(table.line(forByteOffset: 12), 130)
        XCTAssertNil(table.line(forByteOffset: 14))
        XCTAssertEqual(table.line(forByteOffset: -2), 1)
    }

    func testLocationTable() {
        let bytes: [UInt8] = [
            0x80, 0x00,  // short form 0, 1 code unit: [0, 2) line 50
            0xD9, 0x04, 0x08,  // one-line form, +1 line, 2 code units: [2, 6) line 51
            0xE8, 0x03,  // no-column form, delta -1 (signed varint 3), 1 code unit: [6, 8) line 50
            0xFA,  // no location, 3 code units: [8, 14)
            0xF0, 0x50, 0x06, 0x00, 0x05, 0x09,  // long form, delta +200 (varint 400 in two bytes): [14, 16)
        ]
        let table = LineTable(format: .locationTable, bytes: bytes, firstLineNumber: 50)
        XCTAssertEqual(table.line(forByteOffset: 0), 50)
        XCTAssertEqual(table.line(forByteOffset: 2), 51)
        XCTAssertEqual(table.line(forByteOffset: 4), 51)
        XCTAssertEqual(table.line(forByteOffset: 6), 50)
        XCTAssertNil(table.line(forByteOffset: 8))
        XCTAssertNil(table.line(forByteOffset: 12))
        XCTAssertEqual(table.line(forByteOffset: 14), 250)
        XCTAssertNil(table.line(forByteOffset: 16))
        XCTAssertEqual(table.line(forByteOffset: -2), 50)
        XCTAssertEqual(table.line(forByteOffset: Int.min), 50)
    }

    func testFormatForVersion() {
        XCTAssertEqual(LineTableFormat(major: 3, minor: 8), .lnotab)
        XCTAssertEqual(LineTableFormat(major: 3, minor: 9), .lnotab)
        XCTAssertEqual(LineTableFormat(major: 3, minor: 10), .linetable310)
        XCTAssertEqual(LineTableFormat(major: 3, minor: 11), .locationTable)
        XCTAssertEqual(LineTableFormat(major: 3, minor: 13), .locationTable)
        XCTAssertEqual(LineTableFormat(major: 3, minor: 6), .lnotab)
        XCTAssertEqual(LineTableFormat(major: 3, minor: 7), .lnotab)
        XCTAssertEqual(LineTableFormat(major: 2, minor: 7), .lnotabUnsigned)
        XCTAssertNil(LineTableFormat(major: 3, minor: 5))
        XCTAssertNil(LineTableFormat(major: 2, minor: 6))
    }

    /// 2.7's line deltas are unsigned: 200 is two hundred lines on, not 56 back as in 3.6+.
    func testUnsignedLnotab() {
        let table = LineTable(format: .lnotabUnsigned, bytes: [6, 200, 4, 1], firstLineNumber: 10)
        XCTAssertEqual(table.line(forByteOffset: 5), 10)
        XCTAssertEqual(table.line(forByteOffset: 6), 210)
        XCTAssertEqual(table.line(forByteOffset: 10), 211)
        XCTAssertEqual(LineTable(format: .lnotab, bytes: [6, 200, 4, 1], firstLineNumber: 100).line(forByteOffset: 6), 44)
    }

    // MARK: - Malformed input

    func testMalformedTablesAnswerNil() {
        let malformed: [(LineTableFormat, [UInt8], String)] = [
            (.lnotab, [2, 1, 2], "odd length"),
            (.linetable310, [2, 1, 2], "odd length"),
            (.locationTable, [0x01, 0x80, 0x00], "starts with a payload byte"),
            (.locationTable, [0x80], "short form without its column byte"),
            (.locationTable, [0x80, 0x00, 0x00], "short form with an extra byte"),
            (.locationTable, [0xD0, 0x05], "one-line form with one column byte"),
            (.locationTable, [0xE8, 0x41], "varint cut off after a continuation bit"),
            (.locationTable, [0xE8, 0x41, 0x80, 0x00], "varint running into the next entry"),
            (.locationTable, [0xE8, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x01], "varint beyond 32 bits"),
            (.locationTable, [0xF0, 0x02, 0x00], "long form missing its columns"),
        ]
        for (format, bytes, description) in malformed {
            let table = LineTable(format: format, bytes: bytes, firstLineNumber: 1)
            XCTAssertNil(table.ranges, "\(format) \(description)")
            for offset in [-2, 0, 2, 100] {
                XCTAssertNil(table.line(forByteOffset: offset), "\(format) \(description) at \(offset)")
            }
        }
    }

    func testRandomBytesNeverCrashAndDecodeToContiguousRanges() {
        var random = SplitMix64(seed: 0x5EED)
        for format in [LineTableFormat.lnotab, .linetable310, .locationTable] {
            var accepted = 0
            for _ in 0..<20_000 {
                let count = Int.random(in: 0...24, using: &random)
                var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
                if format == .locationTable, !bytes.isEmpty {
                    // Mostly payload-sized bytes after a header, so that some garbage is well formed too.
                    bytes[0] |= 0x80
                    for index in bytes.indices.dropFirst() where Bool.random(using: &random) {
                        bytes[index] &= 0x3F
                    }
                }
                let firstLine = Int(Int32.random(in: .min ... .max, using: &random))
                let table = LineTable(format: format, bytes: bytes, firstLineNumber: firstLine)
                for offset in [Int.min, -1, 0, 1, 2, 7, 64, 255, 4096, Int.max] {
                    _ = table.line(forByteOffset: offset)
                }
                guard let ranges = table.ranges else { continue }
                accepted += 1
                var expectedStart = 0
                for range in ranges {
                    XCTAssertEqual(range.start, expectedStart, "\(format) \(bytes)")
                    XCTAssertGreaterThan(range.end, range.start, "\(format) \(bytes)")
                    expectedStart = range.end
                }
            }
            XCTAssertGreaterThan(accepted, 100, "\(format): too few random tables were well formed to test the ranges")
        }
    }

    // MARK: - Helpers

    private func checkAgainstPyenv(version: String) throws {
        try checkAgainstInterpreter(path: "\(try Pyenv.root())/versions/\(version)/bin/python", versionPrefix: version)
    }

    private func checkAgainstInterpreter(path python: String, versionPrefix: String) throws {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            XCTFail("No Python interpreter at \(python): needed to check LineTable against CPython \(versionPrefix)")
            return
        }
        try checkAgainst([python], versionPrefix: versionPrefix)
    }

    private func checkAgainst(_ command: [String], versionPrefix: String) throws {
        let python = command.joined(separator: " ")
        let dump = try Self.dumpLineTables(command: command)
        XCTAssert(dump.version.hasPrefix(versionPrefix), "\(python) is \(dump.version), expected \(versionPrefix)")
        let versionParts = dump.version.split(separator: ".").compactMap { Int($0) }
        let format = try XCTUnwrap(
            versionParts.count >= 2 ? LineTableFormat(major: versionParts[0], minor: versionParts[1]) : nil,
            "no line table format for Python \(dump.version)"
        )

        var mismatches: [String] = []
        var offsetsChecked = 0
        var offsetsWithoutLine = 0
        var instructionsChecked = 0
        var encodingFeatures = Set<String>()
        for code in dump.codeObjects {
            let bytes = try XCTUnwrap(Self.bytes(fromHex: code.table), "bad hex for \(code.qualname)")
            encodingFeatures.formUnion(Self.encodingFeatures(of: bytes, format: format))
            XCTAssertEqual(code.lines.count, (code.codeLength + code.unitSize - 1) / code.unitSize, "\(code.qualname): one line per code unit")
            let table = LineTable(format: format, bytes: bytes, firstLineNumber: code.firstLine)
            XCTAssertNotNil(table.ranges, "\(code.qualname): table rejected as malformed: \(code.table)")

            for (codeUnit, expected) in code.lines.enumerated() {
                let byteOffset = codeUnit * code.unitSize
                let actual = table.line(forByteOffset: byteOffset)
                if actual != expected {
                    mismatches.append(
                        "\(code.qualname) @\(byteOffset): CPython \(Self.describe(expected)), "
                            + "LineTable \(Self.describe(actual))"
                    )
                }
            }
            offsetsChecked += code.lines.count
            offsetsWithoutLine += code.lines.filter { $0 == nil }.count
            instructionsChecked += code.instructionCount

            XCTAssertEqual(table.line(forByteOffset: -2), code.lineBeforeStart, "\(code.qualname): negative offset")
            if format == .linetable310 || format == .locationTable {
                // Since 3.10 the table covers exactly the bytecode, and CPython has no line past it.
                XCTAssertNil(table.line(forByteOffset: code.codeLength), "\(code.qualname): offset past the bytecode")
            }
        }

        XCTAssert(
            mismatches.isEmpty,
            "\(mismatches.count) offsets differ from CPython \(dump.version), first ones:\n"
                + mismatches.prefix(20).joined(separator: "\n")
        )
        // Guard against passing vacuously: the fixture must have produced plenty of code and every
        // encoding the format has (large deltas, "no line" markers, each 3.11+ entry form).
        XCTAssertGreaterThanOrEqual(dump.codeObjects.count, 200, "too few code objects from \(dump.version)")
        XCTAssertGreaterThanOrEqual(offsetsChecked, 10_000, "too few offsets from \(dump.version)")
        var required = Self.requiredEncodingFeatures(format)
        // The compiler emits negative line deltas from 3.8 (a multi-line call's instruction goes back to its first line).
        if format == .lnotab, versionParts.count >= 2, versionParts[1] < 8 { required.remove("negative line delta") }
        let missingFeatures = required.subtracting(encodingFeatures)
        XCTAssert(missingFeatures.isEmpty, "\(dump.version) tables never used: \(missingFeatures.sorted())")
        print(
            "LineTable vs CPython \(dump.version) (\(python)): \(dump.codeObjects.count) code objects, "
                + "\(instructionsChecked) instructions, \(offsetsChecked) code-unit offsets checked "
                + "(\(offsetsWithoutLine) without a line), \(mismatches.count) mismatches"
        )
    }

    private struct Dump: Decodable {
        var version: String
        var codeObjects: [CodeObject]
    }

    private struct CodeObject: Decodable {
        var qualname: String
        var firstLine: Int
        var table: String
        var codeLength: Int
        /// Bytes per code unit: 2 (3.6+ wordcode), 1 (2.7, where any byte offset can be an instruction).
        var unitSize: Int
        var instructionCount: Int
        var lineBeforeStart: Int
        /// CPython's line for each code unit; nil where it reports none.
        var lines: [Int?]
    }

    private static func dumpLineTables(command: [String]) throws -> Dump {
        let python = command.joined(separator: " ")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/dump_line_tables.py")
        // Output goes to files rather than pipes: the JSON is megabytes and a pipe left unread fills up.
        let outputDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("dump_line_tables-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: outputDirectory) }
        let stdoutURL = outputDirectory.appendingPathComponent("stdout")
        let stderrURL = outputDirectory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        // An interpreter in a root (chroot) cannot open the script by its path here: it gets the text.
        process.arguments = Array(command.dropFirst())
            + (command.count == 1 ? [script.path] : ["-c", try String(contentsOf: script, encoding: .utf8)])
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
        process.waitUntilExit()

        guard process.terminationStatus == 0 else {
            let stderr = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
            throw FixtureError("\(python) \(script.path) exited with \(process.terminationStatus):\n\(stderr)")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Dump.self, from: Data(contentsOf: stdoutURL))
    }

    /// Which of the format's special encodings a table uses, read straight off the bytes.
    private static func encodingFeatures(of bytes: [UInt8], format: LineTableFormat) -> Set<String> {
        var features = Set<String>()
        switch format {
        case .lnotabUnsigned:
            for pairStart in stride(from: 0, to: bytes.count - 1, by: 2) {
                if bytes[pairStart] == 255 { features.insert("split byte delta") }
                if bytes[pairStart + 1] == 255 { features.insert("split line delta") }
            }
        case .lnotab, .linetable310:
            for pairStart in stride(from: 0, to: bytes.count - 1, by: 2) {
                let byteDelta = bytes[pairStart]
                let lineDelta = Int8(bitPattern: bytes[pairStart + 1])
                if byteDelta == (format == .lnotab ? 255 : 254) { features.insert("split byte delta") }
                if lineDelta == 127 { features.insert("split line delta") }
                if lineDelta < 0 { features.insert("negative line delta") }
                if lineDelta == -128, format == .linetable310 { features.insert("no line") }
            }
        case .locationTable:
            for header in bytes where header & 0x80 != 0 {
                switch (header >> 3) & 0x0F {
                case 0...9: features.insert("short form")
                case 10...12: features.insert("one-line form")
                case 13: features.insert("no-column form")
                case 14: features.insert("long form")
                default: features.insert("no location")
                }
            }
        }
        return features
    }

    private static func requiredEncodingFeatures(_ format: LineTableFormat) -> Set<String> {
        switch format {
        case .lnotab: return ["split byte delta", "split line delta", "negative line delta"]
        case .lnotabUnsigned: return ["split byte delta", "split line delta"]
        case .linetable310: return ["split byte delta", "split line delta", "negative line delta", "no line"]
        case .locationTable: return ["short form", "one-line form", "no-column form", "long form", "no location"]
        }
    }

    private static func bytes(fromHex hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[index...index + 1], as: UTF8.self), radix: 16) else {
                return nil
            }
            bytes.append(byte)
        }
        return bytes
    }

    private static func describe(_ line: Int?) -> String {
        line.map(String.init) ?? "no line"
    }
}

private struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A small seedable generator so the random-input test is reproducible.
private struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}
