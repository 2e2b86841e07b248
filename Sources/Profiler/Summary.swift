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

    /// The off-CPU intervals counted (from the tally: with `--rotate` the profile holds only the last period), their
    /// seconds in all and per reason (the stack's leaf marker), and what was sampled out or lost.
    var offCPULine: String {
        var intervals = 0, nanoseconds: [Frame: UInt64] = [:]
        for (stack, count) in tally.samplesPerStack.enumerated() where count > 0 {
            guard let leaf = profile.stacks[stack].last.map({ profile.frames[Int($0)] }), leaf.isOffCPUMarker else { continue }
            intervals += count
            nanoseconds[leaf, default: 0] += tally.weightPerStack[stack]
        }
        func seconds(_ nanoseconds: UInt64) -> String { String(cFormat: "%.2f s", Double(nanoseconds) / 1e9) }
        let labels: [(Frame, String)] = [(.offCPUSleeping, "sleeping"), (.offCPUDisk, "uninterruptible"),
                                         (.offCPURunnable, "waiting for a CPU"), (.waitingForGIL, "waiting for the GIL")]
        let reasons = labels.compactMap { marker, label in nanoseconds[marker].map { "\(label) \(seconds($0))" } }
        return "off-CPU: \(intervals) intervals, \(seconds(nanoseconds.values.reduce(0, +)))"
            + (reasons.isEmpty ? "" : " (" + reasons.joined(separator: ", ") + ")") + "; "
            + "\(statistics.offCPUSampledOut) short ones sampled out (their time is in the weights of those kept); "
            + "\(String(cFormat: "%.3f", Double(statistics.offCPULostNanoseconds) / 1e9)) s lost (ring buffer full)"
    }

    public var text: String {
        let samples = tally.count
        let threads = tally.threads.count
        let seconds = Double(profile.duration) / 1e9
        var lines: [String] = []
        let processes = profile.processes.count
        lines.append("\(samples) samples from \(processes) process\(processes == 1 ? "" : "es") (\(threads) thread\(threads == 1 ? "" : "s")) "
            + "in \(String(cFormat: "%.1f", seconds)) s at \(profile.sampleRate) Hz; \(statistics.lostRecords) records lost")
        let errors = statistics.errorCounters
            .sorted { $0.key < $1.key }
            .map { "\($0.key) \($0.value)" }
            + statistics.unresolvedFrames.sorted { $0.key < $1.key }.map { "unresolved frames (\($0.key)) \($0.value)" }
        lines.append("errors: " + (errors.isEmpty ? "none" : errors.joined(separator: ", ")))
        if profile.mode.hasIntervals { lines.append(offCPULine) }
        if !statistics.kernel.isEmpty { lines.append(statistics.kernel) }
        if let reason = statistics.nativeStacksOff { lines.append("native stacks off: \(reason)") }
        if let cost = statistics.bpfNanosecondsPerSample {
            lines.append(
                "BPF cost: \(String(cFormat: "%.0f", cost)) ns per sample (\(statistics.bpfInvocations ?? 0) program runs)")
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
                .map { outcome, count in "\(outcome) \(count) (\(String(cFormat: "%.1f", 100 * Double(count) / Double(max(total, 1))))%)" }
                .joined(separator: ", "))
        }
        if statistics.nativeStacks > 0 {
            let percent = 100 * Double(statistics.nativeStacksComplete) / Double(statistics.nativeStacks)
            lines.append("native stacks: \(statistics.nativeStacksComplete) of \(statistics.nativeStacks) "
                + "(\(String(cFormat: "%.2f", percent))%) unwound to the thread's entry")
        }
        if let tables = statistics.unwindTables {
            let cached = tables.filesFromCache > 0 ? " (\(tables.filesFromCache) from the cache)" : ""
            lines.append("unwind tables: \(tables.files) files\(cached), \(tables.rows) rows, "
                + String(cFormat: "%.1f of %.1f MiB", Double(tables.bytes) / 1048576, Double(tables.capacityBytes) / 1048576))
            if tables.cacheEntriesRejected > 0 {
                lines.append("  unwind-table cache: \(tables.cacheEntriesRejected) damaged entr\(tables.cacheEntriesRejected == 1 ? "y" : "ies") "
                    + "deleted and compiled again")
            }
            if let problem = tables.cacheProblem { lines.append("  unwind-table cache: \(problem)") }
            for (path, reason) in tables.filesWithoutTable.sorted(by: { $0.key < $1.key }) {
                lines.append("  no unwind table for \(path): \(reason)")
            }
        }
        if !statistics.newCodeGaps.isEmpty {
            let gaps = statistics.newCodeGaps.sorted()
            let milliseconds = { (nanoseconds: UInt64) in String(cFormat: "%.0f", Double(nanoseconds) / 1e6) }
            lines.append("code mapped while recording: \(gaps.count) time\(gaps.count == 1 ? "" : "s"), its tables loaded "
                + "\(milliseconds(gaps[gaps.count / 2])) ms (median) and \(milliseconds(gaps.last!)) ms (longest) after its first "
                + "sample there (samples in it before then end at [unknown 0x…])")
        }
        if let naming = statistics.lateNaming.summaryLine { lines.append(naming) }
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
        // Shares of time: in wall and offcpu modes an interval weighs its length, not one sample.
        let totalWeight = max(tally.weight, 1)
        lines.append("   own   total  function" + (profile.mode == .cpu ? "" : " (shares of \(profile.mode.timeDescription))"))
        for entry in FunctionTable(profile).weigh(weightPerStack: tally.weightPerStack).prefix(count) {
            var name = entry.name
            if let terminal, name.count > terminal.columns - 16 {
                name = String(name.prefix(max(10, terminal.columns - 17))) + "…"
            }
            lines.append(String(
                cFormat: "%5.1f%%  %5.1f%%  ", 100 * Double(entry.own) / Double(totalWeight),
                100 * Double(entry.total) / Double(totalWeight)) + name)
        }
        return lines.joined(separator: "\n")
    }
}
