import Foundation
import XCTest

@testable import Native

/// Real binaries the tests read. A test that needs one fails when it is absent: a skip would pass unseen.
enum TestBinaries {
    static let libpython312 = "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0"
    static let python312 = "/root/.pyenv/versions/3.12.1/bin/python3"
    /// Debian's stripped, non-PIE interpreter. Not the pyenv shim that `python3.11` on PATH resolves to.
    static let debianPython311 = "/usr/bin/python3.11"
    static let smallExecutable = "/bin/true"

    static func require(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestFailure("\(path) is not installed: the Native tests read this real binary")
        }
    }
}

/// Runs a program to completion and returns its standard output, failing the test if it exits non-zero.
func runCommand(_ executable: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
    }
    return String(decoding: data, as: UTF8.self)
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The build ID `readelf -n` prints for a file, as lowercase hex.
func readelfBuildID(_ path: String) throws -> String {
    let notes = try runCommand("/usr/bin/readelf", ["-n", path])
    guard let line = notes.split(separator: "\n").first(where: { $0.contains("Build ID:") }),
          let id = line.split(separator: " ").last
    else { throw TestFailure("readelf -n \(path) printed no build ID") }
    return String(id)
}

/// `PY_VERSION_HEX` of an installed interpreter, asked from the interpreter itself.
func pythonHexVersion(_ interpreter: String) throws -> UInt32 {
    let output = try runCommand(interpreter, ["-c", "import sys; print(sys.hexversion)"])
    guard let version = UInt32(output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw TestFailure("\(interpreter) printed \(output) as its hexversion")
    }
    return version
}

func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

func littleEndianUInt32(_ bytes: [UInt8]) -> UInt32? {
    guard bytes.count == 4 else { return nil }
    return bytes.reversed().reduce(0) { $0 << 8 | UInt32($1) }
}

extension Array where Element == UInt8 {
    /// Overwrites `width` bytes at `offset` with `value`, little-endian: how the malformed-input tests corrupt fields.
    mutating func patch(_ value: UInt64, at offset: Int, width: Int) {
        for index in 0..<width {
            self[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))
        }
    }

    func read(at offset: Int, width: Int) -> UInt64 {
        (0..<width).reversed().reduce(0) { $0 << 8 | UInt64(self[offset + $1]) }
    }
}

/// A PT_LOAD segment for `syntheticELF`.
struct SyntheticSegment {
    var offset: UInt64
    var virtualAddress: UInt64
    var fileSize: UInt64
    var memorySize: UInt64
    var flags: UInt32
}

/// A minimal ELF64 x86_64 file with only a header and PT_LOAD program headers (no sections), padded so that every
/// segment's file range exists: for layouts that no binary on the system has, such as a first PT_LOAD at a
/// non-zero offset.
func syntheticELF(type: UInt16, segments: [SyntheticSegment]) -> [UInt8] {
    let headerSize = ELFLayout.headerSize, programHeaderSize = ELFLayout.programHeaderSize
    let fileSize = segments.map { Int($0.offset + $0.fileSize) }.max() ?? 0
    var bytes = [UInt8](repeating: 0, count: max(fileSize, headerSize + programHeaderSize * segments.count))
    bytes.replaceSubrange(0..<8, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0])  // magic, ELF64, little-endian, version 1
    bytes.patch(UInt64(type), at: FileHeaderField.type, width: 2)
    bytes.patch(62, at: FileHeaderField.machine, width: 2)  // EM_X86_64
    bytes.patch(UInt64(headerSize), at: FileHeaderField.programHeaderOffset, width: 8)
    bytes.patch(UInt64(programHeaderSize), at: FileHeaderField.programHeaderEntrySize, width: 2)
    bytes.patch(UInt64(segments.count), at: FileHeaderField.programHeaderCount, width: 2)
    for (index, segment) in segments.enumerated() {
        let base = headerSize + index * programHeaderSize
        bytes.patch(UInt64(ELFProgramHeader.typeLoad), at: base + ProgramHeaderField.type, width: 4)
        bytes.patch(UInt64(segment.flags), at: base + ProgramHeaderField.flags, width: 4)
        bytes.patch(segment.offset, at: base + ProgramHeaderField.offset, width: 8)
        bytes.patch(segment.virtualAddress, at: base + ProgramHeaderField.virtualAddress, width: 8)
        bytes.patch(segment.fileSize, at: base + ProgramHeaderField.fileSize, width: 8)
        bytes.patch(segment.memorySize, at: base + ProgramHeaderField.memorySize, width: 8)
        bytes.patch(0x1000, at: base + ProgramHeaderField.align, width: 8)
    }
    return bytes
}
