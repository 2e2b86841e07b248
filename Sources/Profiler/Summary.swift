import Foundation
import ProfileModel

/// The one-screen report printed at the end of `record`.
public struct Summary {
    public var profile: Profile
    public var statistics: RecordingStatistics
    /// The samples counted: the profile's, unless set to those of every period of a recording written a period at a
    /// time (`record --rotate`), whose profile holds only its last period's samples on the whole recording's tables.
    public var tally: SampleTally
    public var topCount = 15
    /// The terminal's size when the summary goes to one: the function list is cut to fit the screen and its
    /// names to fit a line. nil: no limits (a file or a pipe).
    public var terminal: (columns: Int, rows: Int)?

    public init(profile: Profile, statistics: RecordingStatistics) {
        self.profile = profile
        self.statistics = statistics
        tally = SampleTally(profile.samples)
    }

    public var text: String {
        let samples = tally.count
        let threads = tally.threads.count
        let seconds = Double(profile.duration) / 1e9
        var lines: [String] = []
        lines.append(String(
            format: "%d samples from %d process%@ (%d thread%@) in %.1f s at %d Hz; %llu records lost",
            samples, profile.processes.count, profile.processes.count == 1 ? "" : "es", threads,
            threads == 1 ? "" : "s", seconds, profile.sampleRate, statistics.lostRecords))
        let errors = statistics.errorCounters
            .sorted { $0.key < $1.key }
            .map { "\($0.key) \($0.value)" }
            + statistics.unresolvedFrames.sorted { $0.key < $1.key }.map { "unresolved frames (\($0.key)) \($0.value)" }
        lines.append("errors: " + (errors.isEmpty ? "none" : errors.joined(separator: ", ")))
        if !statistics.kernel.isEmpty { lines.append(statistics.kernel) }
        if let cost = statistics.bpfNanosecondsPerSample {
            lines.append(String(format: "BPF cost: %.0f ns per sample (%llu program runs)", cost, statistics.bpfInvocations ?? 0))
            if !statistics.verifiedInstructions.isEmpty {
                lines.append("BPF verifier: " + statistics.verifiedInstructions.sorted { $0.key < $1.key }
                    .map { "\($0.key) \($0.value)" }.joined(separator: ", ") + " instructions processed (limit 1000000 each)")
            }
        }
        var splicing = Dictionary(uniqueKeysWithValues: statistics.splicing.map { ("\($0.key)", $0.value) })
        if statistics.nativeTablesNotLoaded > 0 { splicing["native tables not loaded yet"] = statistics.nativeTablesNotLoaded }
        if !splicing.isEmpty {
            let total = splicing.values.reduce(0, +)
            lines.append("mixed stacks: " + splicing.sorted { $0.key < $1.key }
                .map { String(format: "%@ %d (%.1f%%)", $0.key, $0.value, 100 * Double($0.value) / Double(max(total, 1))) }
                .joined(separator: ", "))
        }
        if statistics.nativeStacks > 0 {
            lines.append(String(
                format: "native stacks: %d of %d (%.2f%%) unwound to the thread's entry", statistics.nativeStacksComplete,
                statistics.nativeStacks, 100 * Double(statistics.nativeStacksComplete) / Double(statistics.nativeStacks)))
        }
        if let tables = statistics.unwindTables {
            lines.append(String(
                format: "unwind tables: %d files, %d rows, %.1f of %.1f MiB", tables.files, tables.rows,
                Double(tables.bytes) / 1048576, Double(tables.capacityBytes) / 1048576))
            for (path, reason) in tables.filesWithoutTable.sorted(by: { $0.key < $1.key }) {
                lines.append("  no unwind table for \(path): \(reason)")
            }
        }
        for skipped in statistics.skippedProcesses { lines.append("skipped: \(skipped)") }
        if statistics.moreSkippedProcesses > 0 { lines.append("skipped: \(statistics.moreSkippedProcesses) more processes") }
        for (file, fields) in statistics.debugOffsetsMismatches.sorted(by: { $0.key < $1.key }) {
            lines.append("note: \(file)'s _Py_DebugOffsets differ from pybpfprof's table, its processes' own values were "
                + "used: " + fields.joined(separator: "; "))
        }
        guard samples > 0 else { return lines.joined(separator: "\n") }
        var count = topCount
        // The header lines, the column titles and the "wrote" line after the summary stay on screen too.
        if let terminal { count = max(3, min(topCount, terminal.rows - lines.count - 3)) }
        lines.append("   own   total  function")
        for entry in FunctionTable(profile).count(samplesPerStack: tally.samplesPerStack).prefix(count) {
            var name = entry.name
            if let terminal, name.count > terminal.columns - 16 {
                name = String(name.prefix(max(10, terminal.columns - 17))) + "…"
            }
            lines.append(String(
                format: "%5.1f%%  %5.1f%%  %@", 100 * Double(entry.own) / Double(samples),
                100 * Double(entry.total) / Double(samples), name))
        }
        return lines.joined(separator: "\n")
    }
}
