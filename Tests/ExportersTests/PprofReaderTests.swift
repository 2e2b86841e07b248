@testable import Exporters
import CZlib
import Foundation
import ProfileModel
import XCTest

/// PprofProfile reads what profilers push to a profile server: ours, and Go's runtime/pprof as a writer we did not
/// write; and refuses damaged and hostile input with one line, never crashing or reading past a bound.
final class PprofReaderTests: XCTestCase {
    /// Every sample of the fixture comes back with its stack (outermost first, each frame's name, file and line) and
    /// its count, through the gzip'd file PprofExporter writes.
    func testReadsBackWhatPprofExporterWrites() throws {
        let profile = Fixture.profile
        let read = try PprofProfile(reading: PprofExporter().render(profile))
        XCTAssertEqual(read.sampleTypes.map { "\($0.type)/\($0.unit)" }, ["samples/count", "cpu/nanoseconds"])
        XCTAssertEqual(read.period, Int64(profile.samplePeriod))
        var expected: [[String]: Int64] = [:]
        for sample in profile.samples {
            let frames = profile.stacks[Int(sample.stack)].map { profile.frames[Int($0)] }
            expected[frames.map { "\($0.name) \(PprofExporter.fileName(of: $0)):\($0.line)" }, default: 0] += 1
        }
        var counted: [[String]: Int64] = [:]
        for sample in read.samples {
            counted[sample.stack.map { "\($0.name) \($0.file):\($0.line)" }, default: 0] += sample.values[0]
            XCTAssertEqual(sample.values[1], sample.values[0] * read.period)
            XCTAssertNotNil(sample.labels["thread_name"])
        }
        XCTAssertEqual(counted, expected)
    }

    /// A CPU profile written by Go's runtime/pprof (a program that spins for 300 ms of CPU time) holds its spinning
    /// function, under main.main, with Go's sample types.
    func testReadsGosRuntimeCPUProfile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pprof-go-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try """
            package main

            import (
            \t"os"
            \t"runtime/pprof"
            \t"syscall"
            \t"time"
            )

            func cpuTime() time.Duration {
            \tvar usage syscall.Rusage
            \tsyscall.Getrusage(syscall.RUSAGE_SELF, &usage)
            \treturn time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
            }

            var sink uint64

            func spin() {
            \tfor start := cpuTime(); cpuTime()-start < 300*time.Millisecond; {
            \t\tfor i := uint64(0); i < 1000000; i++ {
            \t\t\tsink += i * i
            \t\t}
            \t}
            }

            func main() {
            \tfile, _ := os.Create(os.Args[1])
            \tpprof.StartCPUProfile(file)
            \tspin()
            \tpprof.StopCPUProfile()
            \tfile.Close()
            }
            """.write(to: directory.appendingPathComponent("main.go"), atomically: true, encoding: .utf8)
        let output = directory.appendingPathComponent("cpu.pprof").path
        let go = Process()
        go.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        go.arguments = ["go", "run", directory.appendingPathComponent("main.go").path, output]
        go.currentDirectoryURL = directory
        go.environment = ProcessInfo.processInfo.environment.merging(
            ["GOCACHE": directory.appendingPathComponent("cache").path, "GOFLAGS": "-mod=mod", "GO111MODULE": "off"]) { $1 }
        try go.run()
        go.waitUntilExit()
        XCTAssertEqual(go.terminationStatus, 0, "go run failed: is golang-go installed (Scripts/setup --tests)?")
        let read = try PprofProfile(reading: [UInt8](try Data(contentsOf: URL(fileURLWithPath: output))))
        XCTAssertEqual(read.sampleTypes.map { "\($0.type)/\($0.unit)" }, ["samples/count", "cpu/nanoseconds"])
        XCTAssertEqual(read.periodType?.type, "cpu")
        let spinning = read.samples.filter { sample in
            sample.stack.contains { $0.name == "main.spin" && $0.file.hasSuffix("main.go") && $0.line > 0 }
        }
        XCTAssertFalse(spinning.isEmpty, "no sample in main.spin among \(read.samples.count)")
        for sample in spinning {
            let names = sample.stack.map(\.name)
            XCTAssertEqual(names.firstIndex(of: "main.main").map { $0 + 1 }, names.firstIndex(of: "main.spin"),
                           "main.main should call main.spin: \(names)")
        }
    }

    /// A gzip bomb (64 MiB of zeros in 64 KB) is refused at the bound, not decompressed whole.
    func testGzipBombIsRefusedAtTheBound() throws {
        let zeros = [UInt8](repeating: 0, count: 64 << 20)
        var output: UnsafeMutablePointer<UInt8>?
        var size = 0
        XCTAssertEqual(zeros.withUnsafeBytes { czlib_gzip($0.baseAddress, $0.count, &output, &size) }, 0)
        let bomb = Array(UnsafeBufferPointer(start: output, count: size))
        free(output)
        XCTAssertLessThan(bomb.count, 1 << 20)
        XCTAssertThrowsError(try PprofProfile(reading: bomb, maxBytes: 1 << 20)) { error in
            XCTAssertEqual("\(error)", "not a pprof profile: the profile decompresses to more than 1048576 bytes")
        }
    }

    /// Every prefix of a valid profile, gzip'd or not, is either read or refused with a reason; so are the bytes of a
    /// profile with one byte changed, at every position.
    func testCutAndDamagedProfilesAreRefusedNotCrashed() throws {
        let message = PprofExporter().encode(Fixture.profile)
        let file = PprofExporter().render(Fixture.profile)
        var refused = 0
        for cut in 0..<message.count {
            do { _ = try PprofProfile(reading: Array(message[..<cut])) } catch is PprofReadError { refused += 1 }
        }
        XCTAssertGreaterThan(refused, message.count / 2, "most cuts end inside a field")
        for cut in 0..<file.count {
            XCTAssertThrowsError(try PprofProfile(reading: Array(file[..<cut])), "a gzip stream cut at \(cut) of \(file.count)")
        }
        for position in message.indices {
            var damaged = message
            damaged[position] ^= 0xff
            do { _ = try PprofProfile(reading: damaged) } catch is PprofReadError {}
        }
    }

    /// References the profile does not define, and lengths past the message, are named in the error.
    func testBadReferencesAndLengthsAreNamed() throws {
        var writer = ProtobufWriter()
        writer.string(6, "")
        writer.message(2) { sample in sample.uint64(1, 7) }
        XCTAssertThrowsError(try PprofProfile(reading: writer.bytes)) { error in
            XCTAssertEqual("\(error)", "not a pprof profile: a sample names location 7, which the profile does not define")
        }
        var badString = ProtobufWriter()
        badString.string(6, "")
        badString.message(1) { type in type.uint64(1, 3) }
        XCTAssertThrowsError(try PprofProfile(reading: badString.bytes)) { error in
            XCTAssertEqual("\(error)", "not a pprof profile: string index 3 is past the string table's 1 entries")
        }
        // Field 6, length-delimited, claiming 100 bytes where 1 follows.
        XCTAssertThrowsError(try PprofProfile(reading: [0x32, 100, 0x41])) { error in
            XCTAssertEqual("\(error)", "not a pprof profile: a field runs past the end of its message")
        }
        // An eleven-byte varint.
        XCTAssertThrowsError(try PprofProfile(reading: [0x48] + [UInt8](repeating: 0xff, count: 10) + [0x01]))
        XCTAssertThrowsError(try PprofProfile(reading: [])) { error in
            XCTAssertEqual("\(error)", "not a pprof profile: the string table does not start with the empty string")
        }
    }
}
