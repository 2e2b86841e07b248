import Foundation

/// Debian's Chromium, run headless on a flame graph page pybpfprof wrote, to check the page in a real browser
/// without npm or a WebDriver: `selfTest` loads a copy of the page with the tests' self-test in it
/// (flamegraph-selftest.js), which drives the page through its event handlers and writes a JSON report into
/// `<pre id="selftest">`, which `--dump-dom` prints once the page has settled.
public enum HeadlessChromium {
    /// Debian's launcher script: it adds Debian's default flags, which the page must live with too.
    public static let executable = "/usr/bin/chromium"

    public struct Failure: Error, CustomStringConvertible {
        public var description: String

        public init(_ description: String) {
            self.description = description
        }
    }

    /// One page load: what Chromium printed and how long it took.
    public struct PageLoad {
        public var commandLine: [String]
        /// The DOM after the page's scripts ran, serialized (`--dump-dom`).
        public var dom: String
        public var standardError: String
        public var seconds: Double

        /// The page's console messages, as Chromium logs them with `--enable-logging=stderr`:
        /// `[...:INFO:CONSOLE:12] "message", source: file:///... (12)`. Errors are logged at the same level
        /// as any other message, so they are told apart by their text.
        public var consoleMessages: [String] {
            standardError.split(separator: "\n").map(String.init).filter { $0.contains(":CONSOLE") }
        }

        /// Console messages that report an error: an uncaught exception or rejection, or "error" anywhere.
        public var consoleErrors: [String] {
            consoleMessages.filter {
                $0.contains("Uncaught") || $0.range(of: "error", options: .caseInsensitive) != nil
            }
        }

        /// The JSON object the self-test wrote into `<pre id="selftest">`: the last one in the DOM, since the
        /// self-test's own text, in the page's script, names it too.
        public func selfTestReport() throws -> [String: Any] {
            let opening = "<pre id=\"selftest\">"
            guard let start = dom.range(of: opening, options: .backwards),
                  let end = dom.range(of: "</pre>", range: start.upperBound..<dom.endIndex)
            else {
                throw Failure("the dumped DOM has no <pre id=\"selftest\"> element; Chromium's stderr:\n"
                    + standardError.suffix(4000))
            }
            let text = Self.unescapeText(String(dom[start.upperBound..<end.lowerBound]))
            guard !text.isEmpty else {
                throw Failure("the self-test wrote nothing (does the page's script parse?); console:\n"
                    + consoleMessages.joined(separator: "\n"))
            }
            guard let report = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                throw Failure("the self-test report is not a JSON object: \(text.prefix(2000))")
            }
            return report
        }

        /// A text node as the DOM serializer writes it: only `&`, `<`, `>` and U+00A0 are escaped.
        private static func unescapeText(_ text: String) -> String {
            text.replacingOccurrences(of: "&lt;", with: "<")
                .replacingOccurrences(of: "&gt;", with: ">")
                .replacingOccurrences(of: "&nbsp;", with: "\u{00A0}")
                .replacingOccurrences(of: "&amp;", with: "&")
        }
    }

    /// Throws, naming the fix, when Chromium is not installed: the browser tests fail rather than skip.
    public static func requireInstalled() throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw Failure("Debian's Chromium is missing at \(executable): apt-get install chromium "
                + "(Scripts/setup installs it); the flame graph page is tested in it")
        }
    }

    /// Loads a copy of the flame graph page at `page` with the self-test injected, which searches for `term`
    /// (a regular expression, or text) and writes the report `PageLoad.selfTestReport()` reads.
    public static func selfTest(
        page: String, term: String = "", virtualTimeBudget: Int = 10_000, timeout: TimeInterval = 120
    ) throws -> PageLoad {
        let html = try String(contentsOfFile: page, encoding: .utf8)
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("pybpfprof-selftest-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent(URL(fileURLWithPath: page).lastPathComponent)
        try Data(withSelfTest(html).utf8).write(to: copy)
        return try load(page: copy.path, fragment: term.addingPercentEncoding(withAllowedCharacters: .urlFragmentAllowed)
            ?? term, virtualTimeBudget: virtualTimeBudget, timeout: timeout)
    }

    /// The page with flamegraph-selftest.js as the first statements of its script's function, where it sees
    /// the page's state: the page itself ships without it.
    private static func withSelfTest(_ html: String) throws -> String {
        let code = String(decoding: PackageResources.flamegraph_selftest_js, as: UTF8.self)
        // Raw text in the page's <script> element: it must neither end the element nor open a comment in it.
        guard code.range(of: "</script", options: .caseInsensitive) == nil, !code.contains("<!--") else {
            throw Failure("flamegraph-selftest.js holds </script or <!--")
        }
        // The page's script is its last <script> element (the data's `<` are escaped).
        guard let script = html.range(of: "<script>", options: .backwards),
              let function = html.range(of: "\n(function () {\n", range: script.upperBound..<html.endIndex)
        else {
            throw Failure("the page has no <script> that starts with `(function () {` to inject the self-test into")
        }
        var injected = html
        injected.insert(contentsOf: code, at: function.upperBound)
        return injected
    }

    /// Loads `page` with `#fragment` and returns the DOM once the page settled: Chromium runs the page's
    /// timers on virtual time, up to `virtualTimeBudget` milliseconds of it, then dumps the DOM and exits.
    /// Killed, and an error, past `timeout` seconds of real time.
    public static func load(
        page: String, fragment: String, virtualTimeBudget: Int = 10_000, timeout: TimeInterval = 120
    ) throws -> PageLoad {
        try requireInstalled()
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("pybpfprof-chromium-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }

        let url = URL(fileURLWithPath: page).absoluteString + "#" + fragment
        let arguments = [
            "--headless=new",
            // The sandbox needs user namespaces and refuses to run as root; the page is our own file.
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr", "--v=0",
            // A profile of its own: no state from, or lock on, the user's, and nothing left behind.
            "--user-data-dir=\(scratch.appendingPathComponent("profile").path)",
            "--no-first-run",
            "--window-size=1280,900",
            "--virtual-time-budget=\(virtualTimeBudget)",
            "--dump-dom", url,
        ]
        let standardOutput = scratch.appendingPathComponent("stdout")
        let standardError = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: standardOutput.path, contents: nil)
        _ = FileManager.default.createFile(atPath: standardError.path, contents: nil)
        let outputHandle = try FileHandle(forWritingTo: standardOutput)
        let errorHandle = try FileHandle(forWritingTo: standardError)

        // Outputs go to files, so that neither can fill a pipe and stall Chromium while the other is read.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = outputHandle
        process.standardError = errorHandle
        let started = Date()
        do {
            try process.run()
        } catch {
            try? outputHandle.close()
            try? errorHandle.close()
            throw Failure("cannot start \(executable): \(error)")
        }
        try? outputHandle.close()
        try? errorHandle.close()
        let deadline = started.addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        let timedOut = process.isRunning
        if timedOut {
            process.terminate()
            usleep(500_000)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        let load = PageLoad(
            commandLine: [executable] + arguments,
            dom: (try? String(contentsOf: standardOutput, encoding: .utf8)) ?? "",
            standardError: (try? String(contentsOf: standardError, encoding: .utf8)) ?? "",
            seconds: Date().timeIntervalSince(started))
        let commandText = load.commandLine.joined(separator: " ")
        if timedOut {
            throw Failure("`\(commandText)` did not finish within \(timeout) s and was killed; stderr:\n"
                + load.standardError.suffix(4000))
        }
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw Failure("`\(commandText)` ended with status \(process.terminationStatus); stderr:\n"
                + load.standardError.suffix(4000))
        }
        return load
    }
}

/// The data a flame graph page embeds (its `<script type="application/json" id="profile-data">`), read back
/// with Foundation alone, so that tests outside the Exporters module can compute what the page should show.
/// The format is described in Sources/Exporters/FlameGraphHTMLExporter.swift.
public struct EmbeddedFlameGraph {
    public struct Frame: Equatable {
        /// 0 Python, 1 native, 2 kernel, 3 marker, 4 process, 5 the root.
        public var kind: Int
        public var name: String
        public var file: String
        public var line: Int

        public init(kind: Int, name: String, file: String, line: Int) {
            self.kind = kind
            self.name = name
            self.file = file
            self.line = line
        }
    }

    /// The whole JSON document.
    public var document: [String: Any]
    public var frames: [Frame]
    /// Per node, in preorder.
    public var nodeFrame: [Int]
    public var nodeDepth: [Int]
    public var nodeTotal: [Int]

    public var nodeCount: Int { nodeFrame.count }

    public static func read(html: String) throws -> EmbeddedFlameGraph {
        let opening = "<script type=\"application/json\" id=\"profile-data\">"
        guard let start = html.range(of: opening),
              let end = html.range(of: "</script>", range: start.upperBound..<html.endIndex)
        else {
            throw HeadlessChromium.Failure("the page has no \(opening) element")
        }
        let text = html[start.upperBound..<end.lowerBound]
        guard let document = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let strings = document["strings"] as? [String],
              let table = document["frames"] as? [Int],
              let nodes = document["nodes"] as? [String: Any],
              let nodeFrame = nodes["frame"] as? [Int],
              let nodeDepth = nodes["depth"] as? [Int],
              let nodeTotal = nodes["total"] as? [Int]
        else {
            throw HeadlessChromium.Failure("the page's data lacks strings, frames or nodes")
        }
        guard table.count % 4 == 0, nodeFrame.count == nodeDepth.count, nodeFrame.count == nodeTotal.count else {
            throw HeadlessChromium.Failure("the page's frame table or node arrays have inconsistent lengths")
        }
        var frames: [Frame] = []
        frames.reserveCapacity(table.count / 4)
        for position in stride(from: 0, to: table.count, by: 4) {
            guard strings.indices.contains(table[position + 1]), strings.indices.contains(table[position + 2]) else {
                throw HeadlessChromium.Failure("frame \(position / 4) names a string out of the table")
            }
            frames.append(Frame(kind: table[position], name: strings[table[position + 1]],
                                file: strings[table[position + 2]], line: table[position + 3]))
        }
        guard nodeFrame.allSatisfy({ frames.indices.contains($0) }) else {
            throw HeadlessChromium.Failure("a node names a frame out of the table")
        }
        return EmbeddedFlameGraph(document: document, frames: frames, nodeFrame: nodeFrame, nodeDepth: nodeDepth,
                                  nodeTotal: nodeTotal)
    }

    public func frame(ofNode node: Int) -> Frame { frames[nodeFrame[node]] }

    /// Each node's parent; -1 for the root. A node's parent is the nearest earlier node one level up.
    public func parents() -> [Int] {
        var parents = [Int](repeating: -1, count: nodeCount)
        var open: [Int] = []
        for node in 0..<nodeCount {
            let depth = nodeDepth[node]
            open.removeSubrange(min(depth, open.count)...)
            parents[node] = open.last ?? -1
            open.append(node)
        }
        return parents
    }

    /// Each node's samples that are in none of its children.
    public func selfCounts() -> [Int] {
        var counts = nodeTotal
        for (node, parent) in parents().enumerated() where parent >= 0 { counts[parent] -= nodeTotal[node] }
        return counts
    }

    /// The names from the root to `node`, the root's (`all`) left out.
    public func path(ofNode node: Int) -> [String] {
        let parents = parents()
        var names: [String] = []
        var current = node
        while current > 0 {
            names.append(frame(ofNode: current).name)
            current = parents[current]
        }
        return names.reversed()
    }

    /// The page's search, for a plain-text term: the samples under frames (other than the root) whose name or
    /// file contains `term` in any case, each sample counted once, that is, the totals of matched nodes with
    /// no matched ancestor.
    public func matchedSamples(containing term: String) -> Int {
        let matched = frames.map { frame in
            frame.kind != 5 && (frame.name.range(of: term, options: .caseInsensitive) != nil
                || frame.file.range(of: term, options: .caseInsensitive) != nil)
        }
        var samples = 0
        var skipDeeperThan = Int.max
        for node in 0..<nodeCount {
            if nodeDepth[node] > skipDeeperThan { continue }
            skipDeeperThan = Int.max
            if matched[nodeFrame[node]] {
                samples += nodeTotal[node]
                skipDeeperThan = nodeDepth[node]
            }
        }
        return samples
    }
}
