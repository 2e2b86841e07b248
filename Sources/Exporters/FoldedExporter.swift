import ProfileModel

/// Folded ("collapsed") stacks: one line per distinct stack, `frame;frame;...;frame count`, root first,
/// lines sorted by their UTF-8 bytes (the order of `LC_ALL=C sort`), each ending in "\n".
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

    /// The lines of the file, sorted, without their line terminators.
    public func lines(_ profile: Profile) -> [String] {
        let renderedFrames = profile.frames.map(Self.render)
        func renderStack(_ stack: Int32) -> String {
            profile.stacks[Int(stack)].lazy.map { renderedFrames[Int($0)] }.joined(separator: ";")
        }

        // Counting per interned stack first means each distinct stack is rendered once, not once per sample.
        var countsByLine: [String: Int] = [:]
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
            var counts: [ThreadStack: Int] = [:]
            for sample in profile.samples {
                counts[ThreadStack(thread: ThreadKey(process: sample.process, tid: sample.tid), stack: sample.stack), default: 0] += 1
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
            var counts: [ProcessStack: Int] = [:]
            for sample in profile.samples { counts[ProcessStack(process: sample.process, stack: sample.stack), default: 0] += 1 }
            for (processStack, count) in counts {
                countsByLine[join(containerPrefixes[Int(processStack.process)], renderStack(processStack.stack)), default: 0] += count
            }
        } else {
            var counts = [Int](repeating: 0, count: profile.stacks.count)
            for sample in profile.samples { counts[Int(sample.stack)] += 1 }
            for (stack, count) in counts.enumerated() where count > 0 {
                countsByLine[renderStack(Int32(stack)), default: 0] += count
            }
        }
        return countsByLine
            .map { "\($0.key) \($0.value)" }
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
