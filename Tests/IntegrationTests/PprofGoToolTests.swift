import Foundation
import XCTest

/// `--format pprof` writes a file `go tool pprof` reads, whose functions and counts are exactly those of the
/// folded output of the same recording (recorded once with `--save`, rendered by `report` in both formats).
final class PprofGoToolTests: IntegrationTestCase {
    func testTopFunctionsMatchTheFoldedOutput() throws {
        let workload = try Workload.load()
        let interpreter = try PythonInterpreters.pyenv("3.12")
        let foldedPath = scratchFile("run.folded"), savedPath = scratchFile("run.pybpfprof"), pprofPath = scratchFile("run.pb.gz")
        let recording = try runPyBPFProf([
            "record", "--rate", "499", "-o", foldedPath, "--save", savedPath, "--",
        ] + interpreter.command([workload.path, "shape", "--seconds", "2"])).requireSuccess()
        try runPyBPFProf(["report", savedPath, "-o", pprofPath]).requireSuccess()

        let go = try GoTool(test: self, scratch: scratch)
        let top = try go.pprof(["-top", "-nodecount=20", "-sample_index=samples", pprofPath])
        let tags = try go.pprof(["-tags", "-sample_index=samples", pprofPath])
        print("  go tool pprof -top -nodecount=20 -sample_index=samples run.pb.gz (\(recording.recordingSummary)):")
        print(top.standardOutput.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))

        let pprofTable = try PprofTop(top.standardOutput)
        let (foldedCounts, foldedTotal) = try Self.ownCounts(folded: foldedPath)
        XCTAssertGreaterThan(foldedTotal, 500)
        XCTAssertTrue(top.standardOutput.contains("Type: samples"), top.standardOutput)
        XCTAssertEqual(Int(pprofTable.total), foldedTotal, "pprof's total samples vs the folded file's")
        // Every row pprof lists: the same own count as the folded file's leaves of that name.
        var pprofCounts: [String: Int] = [:]
        for row in pprofTable.rows { pprofCounts[row.name, default: 0] += Int(row.flat) }
        for (name, count) in pprofCounts {
            XCTAssertEqual(count, foldedCounts[name] ?? 0, "\(name)'s own samples in pprof vs folded")
        }
        // And pprof's top functions are the folded file's top functions.
        let foldedTop = foldedCounts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(3).map(\.key)
        XCTAssertTrue(foldedTop.allSatisfy { pprofCounts[$0] != nil }, "top of folded \(foldedTop) missing from pprof's top")
        XCTAssertEqual(foldedTop.first, "spin", "spin() does the workload's arithmetic")
        let pprof = recording

        // Labels: the process and both of its threads, by the ids the workload printed.
        let mainTid = try printedThreadID("main-tid", in: pprof.standardOutput)
        let workerTid = try printedThreadID("worker-tid", in: pprof.standardOutput)
        let tagValues = Self.tagValues(tags.standardOutput)
        print("  -tags: \(tagValues.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.sorted())" }.joined(separator: " "))")
        XCTAssertEqual(tagValues["pid"], ["\(mainTid)"], tags.standardOutput)
        XCTAssertTrue(tagValues["thread_id"]?.isSuperset(of: ["\(mainTid)", "\(workerTid)"]) == true, tags.standardOutput)
        // The kernel's name of the thread (CPython before 3.14 leaves it at the program's name, python3).
        XCTAssertFalse(tagValues["thread_name", default: []].isEmpty, tags.standardOutput)

        // Functions carry their file and line: -lines shows workload.py's lines in spin.
        let lines = try go.pprof(["-top", "-lines", "-nodecount=5", "-sample_index=samples", pprofPath])
        let spinAdd = try workload.line("spin-add")
        let spinLoop = try workload.line("spin-loop")
        XCTAssertTrue(
            lines.standardOutput.contains("spin \(workload.path):\(spinAdd)")
                || lines.standardOutput.contains("spin \(workload.path):\(spinLoop)"),
            "go tool pprof -lines should name spin's lines \(spinLoop) or \(spinAdd) in \(workload.path):\n\(lines.standardOutput)")
    }

    /// Each function's own samples from the leaf frames of a folded file: the leaf is where the sample was taken.
    /// Grouped by name, since pprof's rows have no line: Python frames by their function name, kernel frames
    /// without the `_[k]` suffix folded adds and pprof does not.
    static func ownCounts(folded path: String) throws -> (counts: [String: Int], total: Int) {
        var counts: [String: Int] = [:]
        var total = 0
        for stack in try FoldedFile.stacks(at: path) {
            total += stack.count
            guard var name = stack.frames.last?.name else { continue }
            if name.hasSuffix("_[k]") { name.removeLast(4) }
            counts[name, default: 0] += stack.count
        }
        guard total > 0 else { throw IntegrationError("the folded profile at \(path) has no samples") }
        return (counts, total)
    }

    /// `go tool pprof -tags`' values by key: a block per key (` pid: Total 1234`), one line per value
    /// (`  1234 (100%): 5678`).
    static func tagValues(_ text: String) -> [String: Set<String>] {
        var values: [String: Set<String>] = [:]
        var key: String?
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if let range = trimmed.range(of: ": Total ") {
                key = String(trimmed[..<range.lowerBound])
            } else if let key, let range = trimmed.range(of: "): ") {
                values[key, default: []].insert(String(trimmed[range.upperBound...]))
            }
        }
        return values
    }
}

/// Debian's `go` (golang-go), from PATH or its usual places; a missing one fails the test and says how to
/// install it. Runs with HOME, GOCACHE and PPROF_TMPDIR in the test's scratch directory: as root in a
/// sandbox, HOME may be unset or read-only, and go refuses to start without a cache directory it can name.
struct GoTool {
    let executable: String
    let scratch: URL
    let test: IntegrationTestCase

    init(test: IntegrationTestCase, scratch: URL) throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates = path.split(separator: ":").map { "\($0)/go" } + ["/usr/bin/go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw IntegrationError("`go` is not installed (searched PATH and /usr/bin, /usr/lib/go/bin, /usr/local/go/bin); "
                + "the pprof test reads profiles with go tool pprof: apt-get install golang-go")
        }
        executable = found
        self.scratch = scratch
        self.test = test
    }

    /// `go tool pprof ARGUMENTS...`, which must succeed; env sets the variables, since `run` passes on the
    /// test's environment as it is.
    func pprof(_ arguments: [String]) throws -> ProcessResult {
        let environment = [
            "HOME=\(scratch.path)", "GOCACHE=\(scratch.appendingPathComponent("gocache").path)",
            "PPROF_TMPDIR=\(scratch.path)", "GOTOOLCHAIN=local",
        ]
        return try test.run("/usr/bin/env", environment + [executable, "tool", "pprof"] + arguments).requireSuccess()
    }
}

/// `go tool pprof -top`'s table: `Showing nodes accounting for X, Y% of TOTAL total`, then rows of
/// `flat flat% sum% cum cum% name`.
struct PprofTop {
    struct Row {
        var flat: Double
        var cum: Double
        var name: String
    }

    var total: Double
    var rows: [Row]

    /// Run with -sample_index=samples, so that values are counts without units.
    init(_ text: String) throws {
        let lines = text.split(separator: "\n")
        guard let showing = lines.first(where: { $0.hasPrefix("Showing nodes accounting for") }),
              let ofRange = showing.range(of: " of "), let totalRange = showing.range(of: " total"),
              let total = Double(showing[ofRange.upperBound..<totalRange.lowerBound].trimmingCharacters(in: .whitespaces))
        else {
            throw IntegrationError("no 'Showing nodes accounting for ... of N total' line in go tool pprof's output:\n\(text)")
        }
        guard let header = lines.firstIndex(where: { $0.split(separator: " ").prefix(2) == ["flat", "flat%"] }) else {
            throw IntegrationError("no table in go tool pprof's output:\n\(text)")
        }
        self.total = total
        rows = try lines[(header + 1)...].map { line in
            let words = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard words.count == 6, let flat = Double(words[0]), let cum = Double(words[3]) else {
                throw IntegrationError("not a row of go tool pprof -top: '\(line)'")
            }
            return Row(flat: flat, cum: cum, name: words[5].trimmingCharacters(in: .whitespaces))
        }
    }

}
