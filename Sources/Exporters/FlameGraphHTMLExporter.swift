import ProfileModel

/// A self-contained interactive flame graph: one HTML file with its script, style and data inline, so that it
/// opens offline, from a mail attachment or a CI artifact, with nothing fetched from anywhere.
///
/// The profile is merged into one call tree in Swift (the page only lays it out), and embedded as JSON in a
/// `<script type="application/json">` element:
///
/// ```
/// {"format":"pybpfprof-flamegraph","version":1,
///  "samples":N,"sampleRate":HZ,"durationNs":NS,"startDate":SECONDS,
///  "mode":"wall","timeDescription":"wall time","unit":"microseconds","unitNs":1000,
///  "processes":[{"pid":P,"command":"...","python":"3.12.1","container":"..."},...],
///  "strings":["all","<module>","app.py",...],
///  "frames":[kind,name,file,line, kind,name,file,line, ...],
///  "nodes":{"frame":[...],"depth":[...],"total":[...]}}
/// ```
///
/// - `frames` is flat, four integers per frame: its kind (0 Python, 1 native, 2 kernel, 3 marker, 4 process,
///   5 the root, 6 container), and its name and file as indices into `strings` (a library for native frames,
///   the Python version for processes), and its line (0 when unknown). Frame 0 is the root, `all`; one frame
///   per container follows, then one per process when the profile has more than one; then the profile's
///   frames, in its order.
/// - `nodes` is the call tree in preorder: a node's parent is the nearest earlier node one level less deep,
///   children are in the order of their frames' names, files and lines (as flamegraph.pl orders them), and
///   `total` is the time of the samples whose stack passes through the node. A node's self count is its total
///   less its children's; the page derives it rather than carrying a fourth array.
/// - `unit` says what `total` counts, and `unitNs` how many nanoseconds one of it stands for: `samples` of one
///   sampling period each in modes cpu and gil; `microseconds` (1000) in modes wall and offcpu, where samples
///   weigh what they stand for, an off-CPU interval its length (each path's weights summed in nanoseconds, then
///   rounded to the microsecond, as the folded format does). The page shows a node's time in seconds of the
///   mode's `timeDescription`, and its share of the root's total: either way frames are sized by time.
///
/// Flat integer arrays keep the file small and parse quickly (a million-node tree is a few megabytes that
/// `JSON.parse` reads in well under a second) and need no object per node in the page. Frames merge by
/// frame, as everywhere else in pybpfprof: one function at two lines is two frames. With more than one
/// process, each process is a level of its own under the root, so their stacks do not merge; a process that
/// runs in a container sits under a `container <id>` level (processes on the host have none).
public struct FlameGraphHTMLExporter: Sendable {
    public init() {}

    public func render(_ profile: Profile) -> [UInt8] {
        let tree = FlameGraphTree(profile)
        let data = Self.data(profile, tree: tree)
        var page: [UInt8] = []
        page.reserveCapacity(FlameGraphPage.beforeData.count + data.count + data.count / 64
            + FlameGraphPage.afterData.count)
        page.append(contentsOf: FlameGraphPage.beforeData)
        Self.appendForScriptElement(data, to: &page)
        page.append(contentsOf: FlameGraphPage.afterData)
        return page
    }

    /// The JSON document described above.
    private static func data(_ profile: Profile, tree: FlameGraphTree) -> [UInt8] {
        var writer = JSONWriter(reservingCapacity: tree.frame.count * 16 + tree.frameTable.count * 12
            + tree.strings.reduce(0) { $0 + $1.utf8.count + 3 } + 4096)
        writer.raw("{")
        writer.key("format")
        writer.string("pybpfprof-flamegraph")
        writer.raw(",")
        writer.key("version")
        writer.number(1)
        writer.raw(",")
        writer.key("samples")
        writer.number(profile.samples.count)
        writer.raw(",")
        writer.key("sampleRate")
        writer.number(profile.sampleRate)
        writer.raw(",")
        writer.key("durationNs")
        writer.number(profile.duration)
        writer.raw(",")
        // Whole seconds are exact in a double and enough for the heading's date.
        writer.key("startDate")
        writer.number(Int(profile.startDate.rounded(.down)))
        writer.raw(",")
        writer.key("mode")
        writer.string(profile.mode.rawValue)
        writer.raw(",")
        writer.key("timeDescription")
        writer.string(profile.mode.timeDescription)
        writer.raw(",")
        writer.key("unit")
        writer.string(profile.mode.hasIntervals ? "microseconds" : "samples")
        writer.raw(",")
        writer.key("unitNs")
        writer.number(profile.mode.hasIntervals ? 1000 : profile.samplePeriod)
        writer.raw(",")

        writer.key("processes")
        writer.raw("[")
        for (position, process) in tree.processes.enumerated() {
            if position > 0 { writer.raw(",") }
            writer.raw("{")
            writer.key("pid")
            writer.number(Int(process.pid))
            writer.raw(",")
            writer.key("command")
            writer.string(process.commandLine)
            writer.raw(",")
            writer.key("python")
            writer.string(process.pythonVersion)
            writer.raw(",")
            writer.key("container")
            writer.string(process.containerID)
            writer.raw("}")
        }
        writer.raw("],")

        writer.key("strings")
        writer.array(tree.strings) { $0.string($1) }
        writer.raw(",")

        writer.key("frames")
        writer.raw("[")
        for (position, frame) in tree.frameTable.enumerated() {
            if position > 0 { writer.raw(",") }
            writer.number(Int(frame.kind))
            writer.raw(",")
            writer.number(Int(frame.name))
            writer.raw(",")
            writer.number(Int(frame.file))
            writer.raw(",")
            writer.number(frame.line)
        }
        writer.raw("],")

        writer.key("nodes")
        writer.raw("{")
        writer.key("frame")
        appendArray(tree.frame, to: &writer)
        writer.raw(",")
        writer.key("depth")
        appendArray(tree.depth, to: &writer)
        writer.raw(",")
        writer.key("total")
        appendArray(tree.total, to: &writer)
        writer.raw("}}")
        return writer.bytes
    }

    // Not generic: unspecialized generic code (debug builds) would triple the time of a million-node tree.
    private static func appendArray(_ numbers: [Int32], to writer: inout JSONWriter) {
        writer.array(numbers) { $0.number(Int($1)) }
    }

    private static func appendArray(_ numbers: [Int], to writer: inout JSONWriter) {
        writer.array(numbers) { $0.number($1) }
    }

    /// Copies JSON into the page so that no frame name, however hostile, can end the script element or open
    /// a comment in it (`</script>`, `<!--`): every `<`, `>` and `&` becomes its `\u` escape. They can only
    /// occur inside JSON strings, where the escape means the same character, so `JSON.parse` returns the
    /// names exactly as the profile has them.
    static func appendForScriptElement(_ json: [UInt8], to page: inout [UInt8]) {
        for byte in json {
            switch byte {
            case UInt8(ascii: "<"): page.append(contentsOf: Self.escapedLessThan)
            case UInt8(ascii: ">"): page.append(contentsOf: Self.escapedGreaterThan)
            case UInt8(ascii: "&"): page.append(contentsOf: Self.escapedAmpersand)
            default: page.append(byte)
            }
        }
    }

    private static let escapedLessThan = Array(#"\u003c"#.utf8)
    private static let escapedGreaterThan = Array(#"\u003e"#.utf8)
    private static let escapedAmpersand = Array(#"\u0026"#.utf8)
}

/// The profile's samples merged into one call tree, in preorder, with the frame and string tables the page
/// reads it through.
struct FlameGraphTree {
    enum Kind: UInt8 {
        case python = 0, native, kernel, marker, process, root, container
    }

    struct TableFrame {
        var kind: UInt8
        /// Index into `strings`.
        var name: Int32
        var file: Int32
        var line: Int
    }

    private var stringTable = InternTable<String>()
    var strings: [String] { stringTable.elements }
    private(set) var frameTable: [TableFrame] = []
    /// The processes that have samples, in the profile's order; one tree level each when there are several.
    private(set) var processes: [ProfiledProcess] = []
    /// Per node, in preorder: its frame (index into `frameTable`), depth (the root's is 0), and total (samples, or
    /// microseconds in modes with intervals).
    private(set) var frame: [Int32] = []
    private(set) var depth: [Int32] = []
    private(set) var total: [Int] = []

    init(_ profile: Profile) {
        let sampled = profile.sampledProcesses
        processes = sampled.map { profile.processes[Int($0)] }
        let perProcess = processes.count > 1
        let containers = Array(Set(processes.map(\.containerID).filter { !$0.isEmpty })).sorted()

        frameTable.append(TableFrame(kind: Kind.root.rawValue, name: string("all"), file: string(""), line: 0))
        for container in containers {
            frameTable.append(TableFrame(kind: Kind.container.rawValue, name: string("container \(container.prefix(12))"),
                                         file: string(container), line: 0))
        }
        if perProcess {
            for process in processes {
                let label = process.commandLine.isEmpty
                    ? "pid \(process.pid)" : "\(process.commandLine) (pid \(process.pid))"
                let version = process.pythonVersion.isEmpty ? "" : "Python \(process.pythonVersion)"
                frameTable.append(TableFrame(kind: Kind.process.rawValue, name: string(label), file: string(version),
                                             line: 0))
            }
        }
        let firstProfileFrame = frameTable.count
        for profileFrame in profile.frames {
            frameTable.append(TableFrame(kind: Self.kind(profileFrame.kind).rawValue, name: string(profileFrame.name),
                                         file: string(profileFrame.file), line: profileFrame.line))
        }

        // Sort keys: a container level's key is its position among the containers, a process level's is the
        // containers' count plus its position among the processes, a frame's is both counts plus its rank in
        // name, file, line order. Sorting the stacks by their keys lists the tree's paths in preorder with
        // children in that order, so the tree is built without a map per node. Keys and table frames happen
        // to be in the same order up to the profile's frames (the table starts with the root).
        let frameRanks = Self.ranks(profile.frames)
        let levelCount = containers.count + (perProcess ? processes.count : 0)
        var keyToTableFrame = [Int32](repeating: 0, count: levelCount + profile.frames.count)
        for position in 0..<levelCount { keyToTableFrame[position] = Int32(1 + position) }
        for (frameIndex, rank) in frameRanks.enumerated() {
            keyToTableFrame[levelCount + Int(rank)] = Int32(firstProfileFrame + frameIndex)
        }

        // The levels above each process's stacks, by the process's index in the profile.
        let containerKey = Dictionary(uniqueKeysWithValues: containers.enumerated().map { ($1, Int32($0)) })
        var levels = [[Int32]](repeating: [], count: profile.processes.count)
        for (position, index) in sampled.enumerated() {
            let process = profile.processes[Int(index)]
            if let key = containerKey[process.containerID] { levels[Int(index)].append(key) }
            if perProcess { levels[Int(index)].append(Int32(containers.count + position)) }
        }

        // Samples, or nanoseconds in modes with intervals, per stack or per process and stack; then each path's
        // total in the unit the page reads (`unit`), microseconds rounded once per path.
        let weighs = profile.mode.hasIntervals
        func amount(_ sample: Sample) -> UInt64 { weighs ? sample.weight : 1 }
        func inPageUnit(_ amount: UInt64) -> Int { Int(weighs ? (amount + 500) / 1000 : amount) }
        var paths: [(keys: [Int32], total: Int)] = []
        if levelCount > 0 {
            var counts: [Int: UInt64] = [:]
            for sample in profile.samples {
                counts[Int(sample.process) * profile.stacks.count + Int(sample.stack), default: 0] += amount(sample)
            }
            paths.reserveCapacity(counts.count)
            for (key, summed) in counts where inPageUnit(summed) > 0 {
                let stack = profile.stacks[key % profile.stacks.count]
                var keys = levels[key / profile.stacks.count]
                keys.reserveCapacity(keys.count + stack.count)
                for frameIndex in stack { keys.append(Int32(levelCount) + frameRanks[Int(frameIndex)]) }
                paths.append((keys, inPageUnit(summed)))
            }
        } else {
            var counts = [UInt64](repeating: 0, count: profile.stacks.count)
            for sample in profile.samples { counts[Int(sample.stack)] += amount(sample) }
            for (stackIndex, summed) in counts.enumerated() where inPageUnit(summed) > 0 {
                paths.append((profile.stacks[stackIndex].map { frameRanks[Int($0)] }, inPageUnit(summed)))
            }
        }
        paths.sort { Self.precedes($0.keys, $1.keys) }

        frame = [0]
        depth = [0]
        total = [0]
        let nodeEstimate = paths.reduce(0) { $0 + $1.keys.count } / 2 + 1
        frame.reserveCapacity(nodeEstimate)
        depth.reserveCapacity(nodeEstimate)
        total.reserveCapacity(nodeEstimate)
        // openPath[d] is the node at depth d on the previous path; a path shares the nodes of its common
        // prefix with the previous one (paths are distinct, and sorted) and adds the rest as new nodes.
        var openPath: [Int] = [0]
        var previous: [Int32] = []
        for path in paths {
            let keys = path.keys
            var common = 0
            let shorter = min(previous.count, keys.count)
            while common < shorter, previous[common] == keys[common] { common += 1 }
            openPath.removeSubrange((common + 1)...)
            for position in common..<keys.count {
                openPath.append(frame.count)
                frame.append(keyToTableFrame[Int(keys[position])])
                depth.append(Int32(position + 1))
                total.append(0)
            }
            for node in openPath { total[node] += path.total }
            previous = keys
        }
    }

    private mutating func string(_ text: String) -> Int32 {
        stringTable.intern(text)
    }

    private static func kind(_ kind: Frame.Kind) -> Kind {
        switch kind {
        case .python: .python
        case .native: .native
        case .kernel: .kernel
        case .marker: .marker
        }
    }

    /// Each frame's position when the frames are sorted by name, file, line and kind.
    private static func ranks(_ frames: [Frame]) -> [Int32] {
        let order = frames.indices.sorted { a, b in
            let x = frames[a], y = frames[b]
            if x.name != y.name { return x.name < y.name }
            if x.file != y.file { return x.file < y.file }
            if x.line != y.line { return x.line < y.line }
            return x.kind.rawValue < y.kind.rawValue
        }
        var ranks = [Int32](repeating: 0, count: frames.count)
        for (rank, frameIndex) in order.enumerated() { ranks[frameIndex] = Int32(rank) }
        return ranks
    }

    /// Lexicographic order; a path comes before the longer paths it is a prefix of.
    private static func precedes(_ a: [Int32], _ b: [Int32]) -> Bool {
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                let shorter = min(a.count, b.count)
                var position = 0
                while position < shorter {
                    if a[position] != b[position] { return a[position] < b[position] }
                    position += 1
                }
                return a.count < b.count
            }
        }
    }
}
