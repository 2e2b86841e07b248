import CBPF
import Foundation
import Native
import ProfileModel
@testable import Profiler
import XCTest

/// How the decoder names native frames of a stripped library (Debian's libz, which has `.dynsym` only): exported
/// functions by their symbol, every address of a function no symbol names by the one name `libz.so.1.2.13+0x<FDE
/// start>`, so that they intern to one frame of the profile; an address no FDE covers by its own address.
final class StackDecoderNativeNamesTests: XCTestCase {
    private let libz = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
    /// Where the test pretends the library is loaded.
    private let loadBias: UInt64 = 0x7f12_3400_0000

    func testAddressesInOneUnnamedFunctionAreOneFrame() throws {
        let (decoder, profile) = try makeDecoder()
        let ranges = try FrameDescriptionRanges(elf: try ELFFile(path: libz)).ranges
        let symbolizer = try NativeFileSymbolizer(path: libz)
        let unnamed = try XCTUnwrap(ranges.first { $0.end - $0.start >= 64 && symbolizer.symbol(at: $0.start) == nil
            && symbolizer.symbol(at: $0.end - 1) == nil }, "libz has a function no symbol names")
        let expected = "libz.so.1.2.13+0x" + String(unnamed.start, radix: 16)
        // Leaves (the interrupted instruction) anywhere in the function, and a return address just past its start (the
        // call instruction is looked up one byte back).
        var frameIndices: Set<Int32> = []
        for leaf in [unnamed.start, unnamed.start + 7, unnamed.end - 1] {
            frameIndices.formUnion(try nativeFrames(decoder, profile, native: [loadBias + leaf]))
        }
        let returnAddress = loadBias + unnamed.start + 2
        frameIndices.formUnion(try nativeFrames(decoder, profile, native: [loadBias + unnamed.start + 1, returnAddress]))
        XCTAssertEqual(frameIndices.count, 1, "\(frameIndices.map { profile.frames[Int($0)].name })")
        // It keeps where its code is (the file's build ID, the function's start), for naming it later from a debug file.
        let code = UnnamedNativeCode(buildID: try XCTUnwrap(symbolizer.buildID), address: unnamed.start)
        XCTAssertEqual(frameIndices.first.map { profile.frames[Int($0)] },
                       Frame(kind: .native, name: expected, file: "libz.so.1.2.13", unnamed: code))
    }

    func testExportedFunctionsKeepTheirNames() throws {
        let (decoder, profile) = try makeDecoder()
        let deflate = try XCTUnwrap(try ELFFile(path: libz).symbol(named: "deflate"), "libz exports deflate")
        let frames = try nativeFrames(decoder, profile, native: [loadBias + deflate.value + 3])
        XCTAssertEqual(frames.map { profile.frames[Int($0)].name }, ["deflate"])
    }

    func testAnAddressNoFDECoversKeepsItsOwnAddress() throws {
        let (decoder, profile) = try makeDecoder()
        let ranges = try FrameDescriptionRanges(elf: try ELFFile(path: libz)).ranges
        let symbolizer = try NativeFileSymbolizer(path: libz)
        // The gaps between FDEs (padding, or code without call frame information) that no symbol covers either.
        let gap = try XCTUnwrap(zip(ranges, ranges.dropFirst()).map { ($0.end, $1.start) }
            .first { $0.0 < $0.1 && symbolizer.symbol(at: $0.0) == nil }, "libz has a gap between FDEs").0
        let frames = try nativeFrames(decoder, profile, native: [loadBias + gap])
        XCTAssertEqual(frames.map { profile.frames[Int($0)].name }, ["libz.so.1.2.13+0x" + String(gap, radix: 16)])
    }

    // MARK: Helpers

    /// A decoder for a process that maps only libz, interning into a profile the test reads.
    private func makeDecoder() throws -> (StackDecoder<Int32>, InternedFrames) {
        guard FileManager.default.fileExists(atPath: libz) else {
            throw TestFailure("\(libz) is not installed (zlib1g): the test reads that real stripped library")
        }
        let mapping = ExecutableMapping(
            start: loadBias, end: loadBias + 0x100_0000, path: libz, file: nil, bias: loadBias, table: nil,
            symbolizer: try NativeFileSymbolizer(path: libz), isInterpreter: false)
        let profile = InternedFrames()
        let decoder = StackDecoder<Int32>(
            interpreter: nil, native: NativeProcess(pid: 1, mappings: [mapping]), kernelSymbols: nil, showInterpreterFrames: false
        ) { profile.intern($0) }
        return (decoder, profile)
    }

    /// The native frames (not the splicer's markers) of the stack decoded from a sample record with `native`
    /// addresses (leaf first), marked complete, and nothing else.
    private func nativeFrames(_ decoder: StackDecoder<Int32>, _ profile: InternedFrames, native: [UInt64]) throws -> [Int32] {
        var header = sample_header()
        header.record_type = UInt16(RECORD_SAMPLE.rawValue)
        header.native_frame_count = UInt16(native.count)
        header.flags = UInt16(SAMPLE_NATIVE_COMPLETE.rawValue)
        var bytes = withUnsafeBytes(of: header) { Array($0) }
        for address in native { bytes += withUnsafeBytes(of: address) { Array($0) } }
        let stack = try XCTUnwrap(bytes.withUnsafeBytes { decoder.decode($0) })
        return stack.frames.filter { profile.frames[Int($0)].kind == .native }
    }
}

/// Frames interned as the Recorder's Profile interns them: one index per distinct frame.
private final class InternedFrames {
    private(set) var profile = Profile(sampleRate: 100, startDate: 0)

    var frames: [Frame] { profile.frames }

    func intern(_ frame: Frame) -> Int32 { profile.intern(frame) }
}

private struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
