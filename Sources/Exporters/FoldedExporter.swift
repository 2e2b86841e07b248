import ProfileModel

/// Folded ("collapsed") stacks: one line per distinct stack, `frame;frame;...;frame count`, root first,
/// lines sorted by their UTF-8 bytes (the order of `LC_ALL=C sort`), each ending in "\n".
///
/// The count is the stack's samples in modes cpu and gil, where every sample weighs one sampling period. In modes
/// with off-CPU intervals (wall, offcpu) samples weigh what they stand for, so the count is microseconds: the
/// weights of the line's samples summed, then rounded to the nearest microsecond. Flame graph tools size frames by
/// the count, so either way they size them by time (`unitDescription(for:)` says which).
///
/// Frames render as:
/// - Python and native frames: `name (file:line)`, `name (file)` when the line is unknown (0),
///   `name` when the file is unknown (empty). A native frame's file is its library.
/// - kernel frames: `name_[k]`, the suffix flamegraph.pl and inferno colour as kernel code.
/// - markers: their name, e.g. `[truncated]`.
///
/// Readers split a line into frames at every `;` and at the first character that ends a line, so neither
/// may appear inside a frame: `;` becomes `,` and every control character (newline, tab, NUL...) becomes a
/// space. Spaces need no care, since readers take the count after the line's last space.
///
/// A sample of a process in a container starts with `container <id>` (its first 12 characters), a root frame of
/// its own. Stacks that render identically (e.g. they differ only in a replaced character) share one line.
public struct FoldedExporter: Sendable {
    /// Starts each line with the process and the thread, `pid;thread-name (tid);`, so a flame graph has
    /// one tower per thread. The thread's name is the one it had last, as in the speedscope export. A pid that
    /// names two processes during the recording is `pid.2` for the second (`Profile.processLabels`).
    public var prefixesThreads: Bool

    public init(prefixesThreads: Bool = false) {
        self.prefixesThreads = prefixesThreads
    }

    public func render(_ profile: Profile) -> [UInt8] {
        var bytes: [UInt8] = []
        for line in lines(profile) {
            bytes.append(contentsOf: line.utf8)
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }

    /// What the counts of a profile of this mode are, for the line that names the file written: "counts are
    /// samples of CPU time", "counts are microseconds of wall time".
    public static func unitDescription(for mode: ProfileMode) -> String {
        "counts are \(mode.hasIntervals ? "microseconds" : "samples") of \(mode.timeDescription)"
    }

    /// The lines of the file, sorted, without their line terminators.
    public func lines(_ profile: Profile) -> [String] {
        let renderedFrames = profile.frames.map(Self.render)
        func renderStack(_ stack: Int32) -> String {
            profile.stacks[Int(stack)].lazy.map { renderedFrames[Int($0)] }.joined(separator: ";")
        }

        // What a sample adds to its line: nanoseconds where the count is time, else 1.
        let weighs = profile.mode.hasIntervals
        func amount(_ sample: Sample) -> UInt64 { weighs ? sample.weight : 1 }

        // Counting per interned stack first means each distinct stack is rendered once, not once per sample.
        var countsByLine: [String: UInt64] = [:]
        let containerPrefixes = profile.processes.map { process in
            process.containerID.isEmpty ? "" : "container \(Self.sanitize(process.shortContainerID))"
        }
        func join(_ prefix: String, _ stack: String) -> String {
            prefix.isEmpty ? stack : stack.isEmpty ? prefix : prefix + ";" + stack
        }
        if prefixesThreads {
            struct ThreadStack: Hashable {
                var thread: ThreadKey
                var stack: Int32
            }
            var counts: [ThreadStack: UInt64] = [:]
            for sample in profile.samples {
                counts[ThreadStack(thread: ThreadKey(process: sample.process, tid: sample.tid), stack: sample.stack), default: 0]
                    += amount(sample)
            }
            let processLabels = profile.processLabels
            let prefixes = Dictionary(uniqueKeysWithValues: profile.threads.map { thread in
                let process = Int(thread.key.process)
                return (thread.key, join(containerPrefixes[process],
                                         "\(processLabels[process]);\(Self.sanitize(thread.name)) (\(thread.key.tid))"))
            })
            for (threadStack, count) in counts {
                countsByLine[join(prefixes[threadStack.thread]!, renderStack(threadStack.stack)), default: 0] += count
            }
        } else if containerPrefixes.contains(where: { !$0.isEmpty }) {
            struct ProcessStack: Hashable {
                var process: Int32
                var stack: Int32
            }
            var counts: [ProcessStack: UInt64] = [:]
            for sample in profile.samples {
                counts[ProcessStack(process: sample.process, stack: sample.stack), default: 0] += amount(sample)
            }
            for (processStack, count) in counts {
                countsByLine[join(containerPrefixes[Int(processStack.process)], renderStack(processStack.stack)), default: 0] += count
            }
        } else {
            var counts = [UInt64](repeating: 0, count: profile.stacks.count)
            for sample in profile.samples { counts[Int(sample.stack)] += amount(sample) }
            for (stack, count) in counts.enumerated() where count > 0 {
                countsByLine[renderStack(Int32(stack)), default: 0] += count
            }
        }
        return countsByLine
            .map { "\($0.key) \(weighs ? ($0.value + 500) / 1000 : $0.value)" }
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// One frame as it appears between the `;`s of a line: its folded label, sanitized whole (what the label adds
    /// to the name and the file has nothing to replace).
    public static func render(_ frame: Frame) -> String { sanitize(frame.label(.folded)) }

    /// Replaces the characters that would split a frame or a line, as the type's documentation describes.
    private static func sanitize(_ text: String) -> String {
        func isSeparator(_ scalar: Unicode.Scalar) -> Bool {
            scalar == ";" || scalar.properties.generalCategory == .control
        }
        guard text.unicodeScalars.contains(where: isSeparator) else { return text }
        var sanitized = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            sanitized.append(scalar == ";" ? "," : isSeparator(scalar) ? " " : scalar)
        }
        return String(sanitized)
    }
}
