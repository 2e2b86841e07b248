import Foundation
import XCTest

/// `--format pprof` writes a file `go tool pprof` reads, whose top functions are those of the folded output.
///
/// pybpfprof writes one file per recording, so the two formats come from two recordings of the same
/// deterministic workload, and their shares are compared within a tolerance; the exact counts of the pprof
/// encoding are ExportersTests' subject (PprofExporterTests.testGoToolPprofTopHasExactCounts).
final class PprofGoToolTests: IntegrationTestCase {
    static let rate = 499
    static let seconds = "2"

    /// How far a function's share (in percentage points) may differ between two recordings of `first` and
    /// `second` samples: 4 standard deviations of the difference of two binomial fractions, and at least
    /// 5 points. 2 s at 499 Hz is about 1000 samples, so spin()'s ~83% gets about 7 points, a 3% share 5.
    static func tolerance(share: Double, first: Double, second: Double) -> Double {
        let fraction = min(max(share / 100, 0), 1)
        let deviation = (fraction * (1 - fraction) * (1 / max(first, 1) + 1 / max(second, 1))).squareRoot()
        return max(5, 100 * 4 * deviation)
    }

    /// Functions with less of the samples are left out of the top-3 comparison: below it the ranks are
    /// ties among a few samples (the workload's top 3 hold about 83%, 12% and, on 3.12, libc's
    /// __tls_get_addr 2-5%; the rest 0.3% or less).
    static let rankedShare = 1.0

    func testTopFunctionsMatchTheFoldedOutput() throws {
        let workload = try Workload.load()
        let interpreter = try PythonInterpreters.pyenv("3.12")
        let command = ["--", interpreter.path, workload.path, "shape", "--seconds", Self.seconds]

        let foldedPath = scratchFile("run.folded")
        let folded = try runPyBPFProf(["record", "--rate", "\(Self.rate)", "-o", foldedPath] + command).requireSuccess()
        let pprofPath = scratchFile("run.pb.gz")
        let pprof = try runPyBPFProf(["record", "--rate", "\(Self.rate)", "--format", "pprof", "-o", pprofPath] + command)
            .requireSuccess()

        let go = try GoTool(test: self, scratch: scratch)
        let top = try go.pprof(["-top", "-nodecount=20", "-sample_index=samples", pprofPath])
        let tags = try go.pprof(["-tags", "-sample_index=samples", pprofPath])
        print("  go tool pprof -top -nodecount=20 -sample_index=samples run.pb.gz (\(pprof.recordingSummary)):")
        print(top.standardOutput.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))

        let pprofTable = try PprofTop(top.standardOutput)
        let pprofShares = pprofTable.flatShares
        let (foldedShares, foldedTotal) = try Self.ownShares(folded: foldedPath)
        func tolerance(_ name: String) -> Double {
            Self.tolerance(share: ((foldedShares[name] ?? 0) + (pprofShares[name] ?? 0)) / 2,
                           first: Double(foldedTotal), second: pprofTable.total)
        }
        print("  own-time shares (%), folded (\(folded.recordingSummary)) vs pprof, and the tolerance:")
        let names = Set(foldedShares.keys).union(pprofShares.keys).sorted {
            (foldedShares[$0] ?? 0, $1) > (foldedShares[$1] ?? 0, $0)
        }
        for name in names.prefix(12) {
            print(String(format: "    %6.2f  %6.2f  ±%4.1f  %@", foldedShares[name] ?? 0, pprofShares[name] ?? 0,
                         tolerance(name), name))
        }

        // The file is a CPU profile of this workload: its functions, from this file, with many samples.
        XCTAssertGreaterThan(pprofTable.total, 500, top.standardOutput)
        XCTAssertTrue(top.standardOutput.contains("Type: samples"), top.standardOutput)
        XCTAssertTrue(pprofShares.keys.contains("spin"), top.standardOutput)

        // The same top 3 functions, in the same order as far as their shares are apart by more than the noise.
        let foldedTop = Self.ranked(foldedShares).prefix(3).filter { $0.share >= Self.rankedShare }
        let pprofTop = Self.ranked(pprofShares).prefix(3).filter { $0.share >= Self.rankedShare }
        XCTAssertEqual(foldedTop.map(\.name).sorted(), pprofTop.map(\.name).sorted(), "top 3 functions by own time")
        XCTAssertEqual(foldedTop.first?.name, "spin", "spin() does the workload's arithmetic")
        XCTAssertEqual(pprofTop.first?.name, "spin")
        for (function, next) in zip(foldedTop, foldedTop.dropFirst())
        where function.share - next.share > tolerance(function.name) + tolerance(next.name) {
            XCTAssertGreaterThan(pprofShares[function.name] ?? 0, pprofShares[next.name] ?? 0,
                                 "\(function.name) before \(next.name), as in the folded output")
        }
        for name in names where max(foldedShares[name] ?? 0, pprofShares[name] ?? 0) >= 2 {
            XCTAssertEqual(pprofShares[name] ?? 0, foldedShares[name] ?? 0, accuracy: tolerance(name),
                           "\(name)'s share of own time in pprof vs folded")
        }

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

    /// Each function's share of the samples, in percent, from the leaf frames of a folded file: the leaf is
    /// where the sample was taken. Grouped by name, since pprof's rows have no line: Python frames by their
    /// function name, kernel frames without the `_[k]` suffix folded adds and pprof does not.
    static func ownShares(folded path: String) throws -> (shares: [String: Double], total: Int) {
        var counts: [String: Int] = [:]
        var total = 0
        for stack in try FoldedFile.stacks(at: path) {
            total += stack.count
            guard var name = stack.frames.last?.name else { continue }
            if name.hasSuffix("_[k]") { name.removeLast(4) }
            counts[name, default: 0] += stack.count
        }
        guard total > 0 else { throw IntegrationError("the folded profile at \(path) has no samples") }
        return (counts.mapValues { 100 * Double($0) / Double(total) }, total)
    }

    static func ranked(_ shares: [String: Double]) -> [(name: String, share: Double)] {
        shares.map { ($0.key, $0.value) }.sorted { ($0.share, $1.name) > ($1.share, $0.name) }
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

    /// Each function's own (flat) share of all samples, in percent; rows of one name (the same function
    /// name in two files) added up.
    var flatShares: [String: Double] {
        var shares: [String: Double] = [:]
        for row in rows { shares[row.name, default: 0] += 100 * row.flat / total }
        return shares
    }
}
