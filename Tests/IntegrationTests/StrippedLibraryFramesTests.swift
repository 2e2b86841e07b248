import Exporters
import Foundation
import ProfileModel
import TestSupport
import XCTest

/// Native frames in a stripped library: Debian's libz has `.dynsym` only, so its internal functions (the match search,
/// deflate_slow) have no name. Each such frame stands for its function, named by the start of the FDE that covers the
/// sampled address (`libz.so.1.2.13+0x4970`), so that a function's samples add up in one frame rather than being spread
/// over one frame per instruction, in every output format.
final class StrippedLibraryFramesTests: IntegrationTestCase {
    /// Debian's libz at level 9: most of the time in its match search.
    func testUnnamedFramesOfAStrippedLibraryAreOnePerFDE() throws {
        let (library, frames, shares) = try checkUnnamedFramesAreOnePerFDE(
            try PythonInterpreters.pyenv("3.12").command([Self.workload, "zlib", "\(3 * Slowdown.factor)"]), checkNoDebugFile: true)
        // Level 9 spends most of its time in the match search (longest_match), a few functions share the rest.
        let top = try XCTUnwrap(shares.first, "no unnamed frame of \(library)")
        XCTAssertGreaterThan(Double(top.samples) / Double(shares.map(\.samples).reduce(0, +)), 0.5,
                             "one function should hold most of \(library)'s unnamed samples: \(shares)")
        // Before, each sampled address was a frame of its own: hundreds. Now at most one per function sampled.
        XCTAssertLessThanOrEqual(frames, 15, "\(shares)")
    }

    /// orjson from PyPI (Scripts/setup --tests installs it in a venv of pyenv's 3.12): a Rust extension whose wheel is
    /// stripped, as most wheels are.
    func testUnnamedFramesOfARustWheelFromPyPIAreOnePerFDE() throws {
        let python = "\(DebianRoots.directory)/wheels-3.12/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw IntegrationError("no \(python): run Scripts/setup --tests (it installs orjson from PyPI there)")
        }
        let (library, frames, shares) = try checkUnnamedFramesAreOnePerFDE(
            [python, Self.workload, "orjson", "\(3 * Slowdown.factor)"], checkNoDebugFile: false)
        // Serializing spreads over a few functions (7 here); one frame per sampled address would be hundreds.
        XCTAssertLessThanOrEqual(frames, 30, "\(library): \(shares)")
    }

    private static var workload: String { Checkout.fixtures.appendingPathComponent("stripped_library_workload.py").path }

    /// Records `command` (the workload, which prints the library it works in) and checks that library's frames: each is
    /// an exported function's name or the library and the start of an FDE, one frame per name, the same in folded and
    /// speedscope. Returns the library's file name, how many unnamed frames it has, and their samples (as the leaf),
    /// most first.
    private func checkUnnamedFramesAreOnePerFDE(_ command: [String], checkNoDebugFile: Bool) throws
        -> (library: String, unnamedFrames: Int, shares: [(name: String, samples: Int)])
    {
        let folded = scratchFile("stripped.folded"), saved = scratchFile("stripped.pybpfprof")
        // 3 s of the workload's CPU time: the tables are compiled while it runs (until then its samples have no native
        // frames), and ~1500 samples are taken whatever the machine's load.
        let result = try runPyBPFProf(["record", "--rate", "499", "-o", folded, "--save", saved, "--"] + command, timeout: 120)
            .requireSuccess()
        let libraryPath = try mappedLibrary(result.standardOutput)
        let library = URL(fileURLWithPath: libraryPath).lastPathComponent
        try requireStripped(libraryPath, checkNoDebugFile: checkNoDebugFile)
        let fdeStarts = try fdeStarts(libraryPath)
        let exported = try exportedFunctions(libraryPath)

        let profile = try RecordingFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: saved))))
        let unnamedPrefix = library + "+0x"
        // Every frame of the library: an exported function's name, or the library's name and an FDE's start.
        var libraryFrames: Set<Int32> = []
        for (index, frame) in profile.frames.enumerated() where frame.kind == .native && frame.file == library {
            libraryFrames.insert(Int32(index))
            if frame.name.hasPrefix(unnamedPrefix) {
                // A caller found by frame pointer has " [fp]" after its name.
                let hex = frame.name.dropFirst(unnamedPrefix.count).prefix { $0 != " " }
                let address = UInt64(hex, radix: 16)
                XCTAssertTrue(address.map(fdeStarts.contains) ?? false, "\(frame.name) is not at the start of an FDE of \(libraryPath)")
            } else {
                XCTAssertTrue(exported.contains(frame.name), "\(frame.name) is neither an exported function of \(library) nor \(library)+0xFDE")
            }
        }
        let unnamedFrames = libraryFrames.filter { profile.frames[Int($0)].name.hasPrefix(unnamedPrefix) }
        XCTAssertEqual(Set(unnamedFrames.map { profile.frames[Int($0)].name }).count, unnamedFrames.count, "one frame per name")

        // Samples whose innermost user frame is in the library, by that frame.
        var leafSamples: [Int32: Int] = [:]
        for sample in profile.samples {
            let stack = profile.stacks[Int(sample.stack)]
            guard let leaf = stack.last(where: { profile.frames[Int($0)].kind != .kernel }), libraryFrames.contains(leaf) else { continue }
            leafSamples[leaf, default: 0] += 1
        }
        let inLibrary = leafSamples.values.reduce(0, +)
        let shares = leafSamples.filter { unnamedFrames.contains($0.key) }.sorted { $0.value > $1.value }
            .map { (name: profile.frames[Int($0.key)].name, samples: $0.value) }
        print("  \(inLibrary) samples in \(library) (\(fdeStarts.count) FDEs): \(unnamedFrames.count) unnamed frames: "
              + shares.map { "\($0.name) \($0.samples)" }.joined(separator: ", "))
        print("    \(result.recordingSummary)")
        // ~1500 samples, ~1000 of them in the library after its table is loaded (libz: 1060 to 1140 measured here).
        XCTAssertGreaterThan(inLibrary, 300, "too few samples in \(library)\n\(result.report)")

        // The same frames in the formats: one folded name and one speedscope frame each.
        let foldedNames = Set(try FoldedFile.stacks(at: folded).flatMap(\.frames).filter { $0.file == library }.map(\.name))
        XCTAssertEqual(foldedNames, Set(libraryFrames.map { profile.frames[Int($0)].name }))
        let speedscope = scratchFile("stripped.speedscope.json")
        try runPyBPFProf(["report", saved, "-o", speedscope]).requireSuccess()
        let speedscopeNames = try speedscopeFrameNames(speedscope).filter { $0.hasPrefix(unnamedPrefix) }
        XCTAssertEqual(speedscopeNames.sorted(), unnamedFrames.map { profile.frames[Int($0)].name }.sorted())
        return (library, unnamedFrames.count, shares)
    }

    // MARK: Helpers

    /// The path the workload printed as `library PATH`.
    private func mappedLibrary(_ standardOutput: String) throws -> String {
        guard let line = standardOutput.split(separator: "\n").first(where: { $0.hasPrefix("library ") }),
              case let path = String(line.dropFirst(8)), path.hasPrefix("/")
        else { throw IntegrationError("the workload did not print the library it maps; its stdout was:\n\(standardOutput)") }
        return path
    }

    /// The test is about a stripped library: `readelf -S` lists no `.symtab`, and (`checkNoDebugFile`) no debug file by
    /// build ID is installed.
    private func requireStripped(_ path: String, checkNoDebugFile: Bool) throws {
        let sections = try run("/usr/bin/readelf", ["-S", "-W", path]).requireSuccess().standardOutput
        guard sections.contains(".eh_frame") else { throw IntegrationError("\(path) has no .eh_frame") }
        guard !sections.contains(".symtab") else {
            throw IntegrationError("\(path) has a .symtab: the test needs a stripped library, as Debian's zlib1g and PyPI's orjson ship it")
        }
        guard checkNoDebugFile else { return }
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
