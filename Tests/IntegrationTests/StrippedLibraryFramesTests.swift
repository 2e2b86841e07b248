import Exporters
import Foundation
import ProfileModel
import XCTest

/// Native frames in a stripped library: Debian's libz has `.dynsym` only, so its internal functions (the match search,
/// deflate_slow) have no name. Each such frame stands for its function, named by the start of the FDE that covers the
/// sampled address (`libz.so.1.2.13+0x4970`), so that a function's samples add up in one frame rather than being spread
/// over one frame per instruction, in every output format.
final class StrippedLibraryFramesTests: IntegrationTestCase {
    func testUnnamedFramesOfAStrippedLibraryAreOnePerFDE() throws {
        let interpreter = try PythonInterpreters.pyenv("3.12")
        let fixture = Checkout.fixtures.appendingPathComponent("zlib_workload.py").path
        let folded = scratchFile("zlib.folded"), saved = scratchFile("zlib.pybpfprof")
        // 3 s of the workload's CPU time: the tables are compiled while it runs (until then its samples have no native
        // frames), and ~1500 samples are taken whatever the machine's load.
        let result = try runPyBPFProf(["record", "--rate", "499", "-o", folded, "--save", saved, "--"]
            + interpreter.command([fixture, "\(3 * Slowdown.factor)"]), timeout: 120).requireSuccess()
        let libzPath = try mappedLibz(result.standardOutput)
        let libz = URL(fileURLWithPath: libzPath).lastPathComponent
        try requireStripped(libzPath)
        let fdeStarts = try fdeStarts(libzPath)
        let exported = try exportedFunctions(libzPath)

        let profile = try RecordingFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: saved))))
        let unnamedPrefix = libz + "+0x"
        // Every frame of the library: an exported function's name, or the library's name and an FDE's start.
        var libzFrames: Set<Int32> = []
        for (index, frame) in profile.frames.enumerated() where frame.kind == .native && frame.file == libz {
            libzFrames.insert(Int32(index))
            if frame.name.hasPrefix(unnamedPrefix) {
                // A caller found by frame pointer has " [fp]" after its name.
                let hex = frame.name.dropFirst(unnamedPrefix.count).prefix { $0 != " " }
                let address = UInt64(hex, radix: 16)
                XCTAssertTrue(address.map(fdeStarts.contains) ?? false, "\(frame.name) is not at the start of an FDE of \(libzPath)")
            } else {
                XCTAssertTrue(exported.contains(frame.name), "\(frame.name) is neither an exported function of \(libz) nor \(libz)+0xFDE")
            }
        }
        let unnamedFrames = libzFrames.filter { profile.frames[Int($0)].name.hasPrefix(unnamedPrefix) }
        XCTAssertEqual(Set(unnamedFrames.map { profile.frames[Int($0)].name }).count, unnamedFrames.count, "one frame per name")

        // Samples whose innermost user frame is in the library, by that frame.
        var leafSamples: [Int32: Int] = [:]
        for sample in profile.samples {
            let stack = profile.stacks[Int(sample.stack)]
            guard let leaf = stack.last(where: { profile.frames[Int($0)].kind != .kernel }), libzFrames.contains(leaf) else { continue }
            leafSamples[leaf, default: 0] += 1
        }
        let inLibz = leafSamples.values.reduce(0, +)
        let unnamedShares = leafSamples.filter { unnamedFrames.contains($0.key) }.sorted { $0.value > $1.value }
        let summary = unnamedShares.map { "\(profile.frames[Int($0.key)].name) \($0.value)" }.joined(separator: ", ")
        print("  \(inLibz) samples in \(libz) (\(fdeStarts.count) FDEs): \(unnamedFrames.count) unnamed frames: \(summary)")
        print("    \(result.recordingSummary)")
        // ~1500 samples, ~1000 of them in libz after its table is loaded (1060 to 1140 measured here).
        XCTAssertGreaterThan(inLibz, 300, "too few samples in \(libz)\n\(result.report)")
        // Level 9 spends most of its time in the match search (longest_match), a few functions share the rest.
        let top = try XCTUnwrap(unnamedShares.first, "no unnamed frame of \(libz)")
        XCTAssertGreaterThan(Double(top.value) / Double(inLibz), 0.5, "one function should hold most of \(libz)'s samples: \(summary)")
        // Before, each sampled address was a frame of its own: hundreds. Now at most one per function sampled.
        XCTAssertLessThanOrEqual(unnamedFrames.count, 15, summary)

        // The same frames in the formats: one folded name and one speedscope frame each.
        let foldedNames = Set(try FoldedFile.stacks(at: folded).flatMap(\.frames).filter { $0.file == libz }.map(\.name))
        XCTAssertEqual(foldedNames, Set(libzFrames.map { profile.frames[Int($0)].name }))
        let speedscope = scratchFile("zlib.speedscope.json")
        try runPyBPFProf(["report", saved, "-o", speedscope]).requireSuccess()
        let speedscopeNames = try speedscopeFrameNames(speedscope).filter { $0.hasPrefix(unnamedPrefix) }
        XCTAssertEqual(speedscopeNames.sorted(), unnamedFrames.map { profile.frames[Int($0)].name }.sorted())
    }

    // MARK: Helpers

    /// The path the workload printed as `libz PATH`.
    private func mappedLibz(_ standardOutput: String) throws -> String {
        guard let line = standardOutput.split(separator: "\n").first(where: { $0.hasPrefix("libz ") }),
              case let path = String(line.dropFirst(5)), path.hasPrefix("/")
        else { throw IntegrationError("the workload did not print the libz it maps; its stdout was:\n\(standardOutput)") }
        return path
    }

    /// The test is about a stripped library: `readelf -S` lists no `.symtab`, and no debug file by build ID is installed.
    private func requireStripped(_ path: String) throws {
        let sections = try run("/usr/bin/readelf", ["-S", "-W", path]).requireSuccess().standardOutput
        guard sections.contains(".eh_frame") else { throw IntegrationError("\(path) has no .eh_frame") }
        guard !sections.contains(".symtab") else {
            throw IntegrationError("\(path) has a .symtab: the test needs a stripped libz, as Debian's zlib1g ships it")
        }
        let notes = try run("/usr/bin/readelf", ["-n", path]).requireSuccess().standardOutput
        if let id = notes.split(separator: "\n").first(where: { $0.contains("Build ID:") })?.split(separator: " ").last {
            let debugFile = "/usr/lib/debug/.build-id/\(id.prefix(2))/\(id.dropFirst(2)).debug"
            guard !FileManager.default.fileExists(atPath: debugFile) else {
                throw IntegrationError("\(debugFile) names libz's functions: the test needs it absent (apt-get remove zlib1g-dbgsym)")
            }
        }
    }

    /// The start of every FDE of the file's `.eh_frame`, as `readelf --debug-dump=frames` prints them.
    private func fdeStarts(_ path: String) throws -> Set<UInt64> {
        let output = try run("/usr/bin/readelf", ["--debug-dump=frames", path]).requireSuccess().standardOutput
        var starts: Set<UInt64> = []
        for line in output.split(separator: "\n") where line.contains(" FDE ") {
            guard let pc = line.split(separator: " ").first(where: { $0.hasPrefix("pc=") }),
                  let begin = pc.dropFirst(3).split(separator: ".").first.flatMap({ UInt64($0, radix: 16) })
            else { throw IntegrationError("unparsable FDE line of readelf: \(line)") }
            starts.insert(begin)
        }
        guard starts.count > 10 else { throw IntegrationError("readelf found \(starts.count) FDEs in \(path)") }
        return starts
    }

    /// The functions `nm -D` lists as defined, without their versions.
    private func exportedFunctions(_ path: String) throws -> Set<String> {
        let output = try run("/usr/bin/nm", ["-D", "--defined-only", path]).requireSuccess().standardOutput
        return Set(output.split(separator: "\n").compactMap { line in
            line.split(separator: " ").last.map { String($0.prefix { $0 != "@" }) }
        })
    }

    private func speedscopeFrameNames(_ path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path),
              let document = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let shared = document["shared"] as? [String: Any], let frames = shared["frames"] as? [[String: Any]]
        else { throw IntegrationError("\(path) is not a speedscope file with shared.frames") }
        return frames.compactMap { $0["name"] as? String }
    }
}
