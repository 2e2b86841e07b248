import Foundation

/// Shared by the format tests and the integration tests (a test target cannot import another).
///
/// Checks a Firefox Profiler processed profile (pinned at `preprocessedProfileVersion` 57, see
/// docs/FORMATS.md) the way the profiler relies on it being built, since it has no validator of its own
/// and no published schema: its flow/TypeScript types (`src/types/profile.js`) say which fields exist and
/// what they index, and its code assumes the rest (e.g. `prefix < stackIndex`, "as the StackTable is
/// ordered", in `profile-data` and `transforms`; a "grey" default category with a first subcategory,
/// `CHANGELOG-formats.md` version 53). Checked:
/// - `meta`: the pinned `preprocessedProfileVersion` and `version`, `interval` > 0, `startTime`,
///   `processType`, `product`, `stackwalk` 0 or 1, `markerSchema`; `categories`, each with a palette
///   color and at least one subcategory, and at least one grey;
/// - exactly one string table, `shared.stringArray`, all strings, and no thread with its own
///   `stringArray` (the pre-56 place);
/// - `libs`, `threads`, and `pages`, `counters`, `profilerOverhead` when present, are arrays;
/// - every thread: its required fields and their types, `pid` a string; (pid, tid) unique across threads;
/// - every table (`samples`, `stackTable`, `frameTable`, `funcTable`, `resourceTable`, `nativeSymbols`,
///   `markers`): each column of its version present, an array exactly `length` long;
/// - every index in range: `samples.stack` (or null), `stackTable.frame`, `stackTable.prefix` (null or
///   below its own index), `frameTable.func`, `frameTable.category` (null or a category) and
///   `subcategory` (that category's, non-null when the category is), `frameTable.nativeSymbol`,
///   `funcTable.name` and `fileName` (strings), `funcTable.resource` (-1 or a resource),
///   `resourceTable.name`/`host` (strings) and `lib` (a lib), `nativeSymbols.libIndex`/`name`,
///   `markers.name` and `category`;
/// - sample times (`time`, or `timeDeltas` summed) finite and non-decreasing within each thread; `weight`
///   null or one number per sample; `weightType` one of the profiler's; at least one sample per thread
///   (`docs-developer/custom-importer.md`).
public enum FirefoxProfileChecker {
    /// The versions pybpfprof pins (docs/FORMATS.md).
    public static let processedProfileVersion = 57
    public static let geckoProfileVersion = 31
    /// `CategoryColor` in the profiler's `src/types/profile.js`.
    public static let categoryColors: Set<String> = [
        "transparent", "purple", "green", "orange", "yellow", "lightblue", "blue", "brown", "magenta", "red",
        "lightred", "darkgrey", "grey",
    ]

    public struct CheckError: Error, CustomStringConvertible {
        public var description: String
    }

    /// One frame as the document describes it.
    public struct ReadFrame: Hashable, CustomStringConvertible {
        public var name: String
        /// `funcTable.fileName`; "" when null.
        public var file: String
        /// `frameTable.line`; 0 when null.
        public var line: Int
        /// The name of the frame's category; "" when null.
        public var category: String
        /// `funcTable.lineNumber`; 0 when null.
        public var functionLine: Int

        public init(name: String, file: String, line: Int, category: String, functionLine: Int) {
            self.name = name
            self.file = file
            self.line = line
            self.category = category
            self.functionLine = functionLine
        }

        public var description: String {
            let location = file.isEmpty ? "" : line == 0 ? " (\(file))" : " (\(file):\(line))"
            return "\(name)\(location) [\(category)]"
        }
    }

    public struct ReadThread {
        public var pid: String
        public var tid: Int
        public var name: String
        public var processName: String?
        public var isMainThread: Bool
        /// Milliseconds after `meta.startTime`, one per sample.
        public var times: [Double]
        /// One stack per sample, root first, read by walking `stackTable.prefix`; empty for a null stack.
        public var stacks: [[ReadFrame]]
    }

    public struct ReadProfile {
        public var meta: [String: Any]
        public var startTime: Double
        public var interval: Double
        public var categories: [(name: String, color: String)]
        public var stringArray: [String]
        public var threads: [ReadThread]
    }

    /// The ways `document` breaks the format, one line each (`threads[1].stackTable.prefix[4]: 7 is not
    /// below 4`); empty when it has none. At most `limit` lines.
    public static func problems(in document: [UInt8], limit: Int = 50) -> [String] {
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(document))
        } catch {
            return ["not JSON: \(error)"]
        }
        var checker = Checker(limit: limit)
        checker.checkProfile(json)
        return checker.problems
    }

    /// The document's threads, read back; throws when `problems(in:)` finds any.
    public static func read(_ document: [UInt8]) throws -> ReadProfile {
        let problems = problems(in: document)
        guard problems.isEmpty else {
            throw CheckError(description: "the profile breaks the format:\n" + problems.joined(separator: "\n"))
        }
        let root = try JSONSerialization.jsonObject(with: Data(document)) as! [String: Any]
        let meta = root["meta"] as! [String: Any]
        let categories = (meta["categories"] as! [[String: Any]]).map { ($0["name"] as! String, $0["color"] as! String) }
        let strings = (root["shared"] as! [String: Any])["stringArray"] as! [String]
        let threads = (root["threads"] as! [[String: Any]]).map { thread in
            readThread(thread, strings: strings, categories: categories.map(\.0))
        }
        return ReadProfile(
            meta: meta, startTime: (meta["startTime"] as! NSNumber).doubleValue,
            interval: (meta["interval"] as! NSNumber).doubleValue, categories: categories, stringArray: strings,
            threads: threads)
    }

    private static func readThread(_ thread: [String: Any], strings: [String], categories: [String]) -> ReadThread {
        let samples = thread["samples"] as! [String: Any]
        let stackTable = thread["stackTable"] as! [String: Any]
        let frameTable = thread["frameTable"] as! [String: Any]
        let funcTable = thread["funcTable"] as! [String: Any]
        let stackFrame = stackTable["frame"] as! [Any]
        let stackPrefix = stackTable["prefix"] as! [Any]
        let frameFunc = frameTable["func"] as! [Any]
        let frameLine = frameTable["line"] as! [Any]
        let frameCategory = frameTable["category"] as! [Any]
        let funcName = funcTable["name"] as! [Any]
        let funcFile = funcTable["fileName"] as! [Any]
        let funcLine = funcTable["lineNumber"] as! [Any]

        func frame(_ index: Int) -> ReadFrame {
            let function = integer(frameFunc[index])!
            return ReadFrame(
                name: strings[integer(funcName[function])!],
                file: integer(funcFile[function]).map { strings[$0] } ?? "",
                line: integer(frameLine[index]) ?? 0,
                category: integer(frameCategory[index]).map { categories[$0] } ?? "",
                functionLine: integer(funcLine[function]) ?? 0)
        }
        var stackCache: [Int: [ReadFrame]] = [:]
        func stack(_ index: Int) -> [ReadFrame] {
            if let known = stackCache[index] { return known }
            var frames: [ReadFrame] = []
            var node: Int? = index
            while let current = node {
                frames.append(frame(integer(stackFrame[current])!))
                node = integer(stackPrefix[current])
            }
            frames.reverse()
            stackCache[index] = frames
            return frames
        }
        return ReadThread(
            pid: thread["pid"] as! String, tid: integer(thread["tid"]) ?? -1, name: thread["name"] as! String,
            processName: thread["processName"] as? String, isMainThread: thread["isMainThread"] as! Bool,
            times: sampleTimes(samples)!,
            stacks: (samples["stack"] as! [Any]).map { integer($0).map(stack) ?? [] })
    }

    // MARK: - JSON values

    /// The type JSONSerialization gives `true` and `false`, which `as? Bool` cannot tell from 1 and 0.
    private static let booleanType: ObjectIdentifier = {
        let values = try! JSONSerialization.jsonObject(with: Data("[true]".utf8)) as! [Any]
        return ObjectIdentifier(type(of: values[0]))
    }()

    static func isBoolean(_ value: Any?) -> Bool {
        guard let value, value is NSNumber else { return false }
        return ObjectIdentifier(type(of: value)) == booleanType
    }

    static func number(_ value: Any?) -> Double? {
        guard let value, !isBoolean(value), let number = value as? NSNumber else { return nil }
        let double = number.doubleValue
        return double.isFinite ? double : nil
    }

    static func integer(_ value: Any?) -> Int? {
        guard let double = number(value), double == double.rounded(), abs(double) < 9e15 else { return nil }
        return Int(double)
    }

    static func isNull(_ value: Any?) -> Bool { value is NSNull }

    /// The sample times in milliseconds: `time`, or `timeDeltas` summed; nil when neither is a list of numbers.
    static func sampleTimes(_ samples: [String: Any]) -> [Double]? {
        if let times = samples["time"] as? [Any] {
            let numbers = times.compactMap(number)
            return numbers.count == times.count ? numbers : nil
        }
        guard let deltas = samples["timeDeltas"] as? [Any] else { return nil }
        var time = 0.0
        var times: [Double] = []
        for delta in deltas {
            guard let delta = number(delta) else { return nil }
            time += delta
            times.append(time)
        }
        return times
    }

    // MARK: - Checks

    private struct Checker {
        let limit: Int
        var problems: [String] = []
        var stringCount = 0
        var libCount = 0
        var categories: [(name: String, subcategoryCount: Int)] = []

        init(limit: Int) {
            self.limit = limit
        }

        mutating func fail(_ path: String, _ message: String) {
            if problems.count < limit { problems.append("\(path): \(message)") }
        }

        mutating func object(_ value: Any?, _ path: String) -> [String: Any]? {
            guard let object = value as? [String: Any] else {
                fail(path, value == nil ? "missing" : "not an object")
                return nil
            }
            return object
        }

        mutating func array(_ value: Any?, _ path: String) -> [Any]? {
            guard let array = value as? [Any] else {
                fail(path, value == nil ? "missing" : "not an array")
                return nil
            }
            return array
        }

        mutating func requireNumber(_ value: Any?, _ path: String) {
            if FirefoxProfileChecker.number(value) == nil { fail(path, "\(describe(value)) is not a number") }
        }

        mutating func requireNumberOrNull(_ value: Any?, _ path: String) {
            if !FirefoxProfileChecker.isNull(value) { requireNumber(value, path) }
        }

        mutating func requireString(_ value: Any?, _ path: String) {
            if !(value is String) { fail(path, "\(describe(value)) is not a string") }
        }

        mutating func requireBoolean(_ value: Any?, _ path: String) {
            if !FirefoxProfileChecker.isBoolean(value) { fail(path, "\(describe(value)) is not a boolean") }
        }

        func describe(_ value: Any?) -> String {
            guard let value else { return "missing" }
            if FirefoxProfileChecker.isNull(value) { return "null" }
            if let string = value as? String { return "\"\(string.prefix(40))\"" }
            return "\(value)".prefix(40).description
        }

        /// Each index in `column` (at `path`) is an integer in 0..<count, or null when `nullable`, or one
        /// of `allowed`.
        mutating func checkIndices(
            _ column: [Any], _ path: String, count: Int, what: String, nullable: Bool = false, allowed: Set<Int> = []
        ) {
            for (position, value) in column.enumerated() {
                if nullable, FirefoxProfileChecker.isNull(value) { continue }
                guard let index = FirefoxProfileChecker.integer(value) else {
                    fail("\(path)[\(position)]", "\(describe(value)) is not an index")
                    continue
                }
                if allowed.contains(index) { continue }
                if index < 0 || index >= count {
                    fail("\(path)[\(position)]", "\(index) is out of range of the \(count) \(what)")
                }
            }
        }

        /// The table at `path` with every one of `columns` an array of its `length`.
        mutating func table(_ value: Any?, _ path: String, columns: [String]) -> (length: Int, columns: [String: [Any]])? {
            guard let table = object(value, path) else { return nil }
            guard let length = FirefoxProfileChecker.integer(table["length"]), length >= 0 else {
                fail("\(path).length", "\(describe(table["length"])) is not a length")
                return nil
            }
            var found: [String: [Any]] = [:]
            for column in columns {
                guard let values = array(table[column], "\(path).\(column)") else { continue }
                if values.count != length {
                    fail("\(path).\(column)", "\(values.count) entries, but length is \(length)")
                    continue
                }
                found[column] = values
            }
            return found.count == columns.count ? (length, found) : nil
        }

        mutating func checkProfile(_ json: Any) {
            guard let root = object(json, "profile") else { return }
            if let shared = object(root["shared"], "shared"), let strings = array(shared["stringArray"], "shared.stringArray") {
                for (index, string) in strings.enumerated() where !(string is String) {
                    fail("shared.stringArray[\(index)]", "\(describe(string)) is not a string")
                }
                stringCount = strings.count
            }
            if let libs = array(root["libs"], "libs") {
                libCount = libs.count
                for (index, lib) in libs.enumerated() {
                    guard let lib = object(lib, "libs[\(index)]") else { continue }
                    for field in ["arch", "name", "path", "debugName", "debugPath", "breakpadId"] {
                        requireString(lib[field], "libs[\(index)].\(field)")
                    }
                    if !FirefoxProfileChecker.isNull(lib["codeId"]) { requireString(lib["codeId"], "libs[\(index)].codeId") }
                }
            }
            if let meta = object(root["meta"], "meta") { checkMeta(meta) }
            for field in ["pages", "counters", "profilerOverhead"] where root[field] != nil {
                _ = array(root[field], field)
            }
            guard let threads = array(root["threads"], "threads") else { return }
            var seen: [String: Int] = [:]
            for (index, thread) in threads.enumerated() {
                guard let thread = object(thread, "threads[\(index)]") else { continue }
                checkThread(thread, "threads[\(index)]")
                let key = "pid \(describe(thread["pid"])) tid \(describe(thread["tid"]))"
                if let earlier = seen[key] {
                    fail("threads[\(index)]", "\(key) is also threads[\(earlier)]")
                } else {
                    seen[key] = index
                }
            }
        }

        mutating func checkMeta(_ meta: [String: Any]) {
            let pinned = [
                ("preprocessedProfileVersion", FirefoxProfileChecker.processedProfileVersion),
                ("version", FirefoxProfileChecker.geckoProfileVersion),
            ]
            for (field, version) in pinned where FirefoxProfileChecker.integer(meta[field]) != version {
                fail("meta.\(field)", "\(describe(meta[field])), expected the pinned \(version)")
            }
            if let interval = FirefoxProfileChecker.number(meta["interval"]) {
                if interval <= 0 { fail("meta.interval", "\(interval) is not positive") }
            } else {
                fail("meta.interval", "\(describe(meta["interval"])) is not a number")
            }
            requireNumber(meta["startTime"], "meta.startTime")
            requireNumber(meta["processType"], "meta.processType")
            requireString(meta["product"], "meta.product")
            if let stackwalk = FirefoxProfileChecker.integer(meta["stackwalk"]), stackwalk == 0 || stackwalk == 1 {
            } else {
                fail("meta.stackwalk", "\(describe(meta["stackwalk"])) is not 0 or 1")
            }
            _ = array(meta["markerSchema"], "meta.markerSchema")
            for field in ["endTime", "profilingStartTime", "profilingEndTime"] where meta[field] != nil {
                requireNumber(meta[field], "meta.\(field)")
            }
            // Optional in the format, but without them the profiler substitutes Firefox's own list, which
            // the frames' category indices do not refer to.
            guard let categories = array(meta["categories"], "meta.categories") else { return }
            for (index, category) in categories.enumerated() {
                let path = "meta.categories[\(index)]"
                guard let category = object(category, path) else {
                    self.categories.append(("", 0))
                    continue
                }
                requireString(category["name"], "\(path).name")
                if let color = category["color"] as? String {
                    if !FirefoxProfileChecker.categoryColors.contains(color) {
                        fail("\(path).color", "\"\(color)\" is not in the profiler's palette")
                    }
                } else {
                    fail("\(path).color", "\(describe(category["color"])) is not a string")
                }
                let subcategories = array(category["subcategories"], "\(path).subcategories") ?? []
                if subcategories.isEmpty { fail("\(path).subcategories", "empty; subcategory 0 must exist") }
                for (position, subcategory) in subcategories.enumerated() {
                    requireString(subcategory, "\(path).subcategories[\(position)]")
                }
                self.categories.append((category["name"] as? String ?? "", subcategories.count))
            }
            if !categories.contains(where: { ($0 as? [String: Any])?["color"] as? String == "grey" }) {
                fail("meta.categories", "no grey category, which the profiler needs as its default category")
            }
        }

        mutating func checkThread(_ thread: [String: Any], _ path: String) {
            if thread["stringArray"] != nil {
                fail("\(path).stringArray", "a thread's own string table; version 56+ has one, shared.stringArray")
            }
            requireString(thread["processType"], "\(path).processType")
            requireNumber(thread["processStartupTime"], "\(path).processStartupTime")
            requireNumberOrNull(thread["processShutdownTime"], "\(path).processShutdownTime")
            requireNumber(thread["registerTime"], "\(path).registerTime")
            requireNumberOrNull(thread["unregisterTime"], "\(path).unregisterTime")
            _ = array(thread["pausedRanges"], "\(path).pausedRanges")
            requireString(thread["name"], "\(path).name")
            requireBoolean(thread["isMainThread"], "\(path).isMainThread")
            if thread["processName"] != nil { requireString(thread["processName"], "\(path).processName") }
            requireString(thread["pid"], "\(path).pid")
            if !(thread["tid"] is String) && FirefoxProfileChecker.number(thread["tid"]) == nil {
                fail("\(path).tid", "\(describe(thread["tid"])) is neither a number nor a string")
            }

            let resources = table(thread["resourceTable"], "\(path).resourceTable", columns: ["lib", "name", "host", "type"])
            if let resources {
                checkIndices(resources.columns["lib"]!, "\(path).resourceTable.lib", count: libCount, what: "libs",
                             nullable: true)
                checkIndices(resources.columns["name"]!, "\(path).resourceTable.name", count: stringCount, what: "strings")
                checkIndices(resources.columns["host"]!, "\(path).resourceTable.host", count: stringCount, what: "strings",
                             nullable: true)
                // resourceTypes: unknown, library, addon, webhost, otherhost, url.
                checkIndices(resources.columns["type"]!, "\(path).resourceTable.type", count: 6, what: "resource types")
            }

            let symbols = table(thread["nativeSymbols"], "\(path).nativeSymbols",
                                columns: ["libIndex", "address", "name", "functionSize"])
            if let symbols {
                checkIndices(symbols.columns["libIndex"]!, "\(path).nativeSymbols.libIndex", count: libCount, what: "libs")
                checkIndices(symbols.columns["name"]!, "\(path).nativeSymbols.name", count: stringCount, what: "strings")
                for (position, address) in symbols.columns["address"]!.enumerated() {
                    requireNumber(address, "\(path).nativeSymbols.address[\(position)]")
                }
            }

            let funcs = table(thread["funcTable"], "\(path).funcTable",
                              columns: ["name", "isJS", "relevantForJS", "resource", "fileName", "lineNumber", "columnNumber"])
            if let funcs {
                checkIndices(funcs.columns["name"]!, "\(path).funcTable.name", count: stringCount, what: "strings")
                checkIndices(funcs.columns["fileName"]!, "\(path).funcTable.fileName", count: stringCount, what: "strings",
                             nullable: true)
                checkIndices(funcs.columns["resource"]!, "\(path).funcTable.resource", count: resources?.length ?? 0,
                             what: "resources", allowed: [-1])
                for column in ["isJS", "relevantForJS"] {
                    for (position, value) in funcs.columns[column]!.enumerated() {
                        requireBoolean(value, "\(path).funcTable.\(column)[\(position)]")
                    }
                }
                for column in ["lineNumber", "columnNumber"] {
                    for (position, value) in funcs.columns[column]!.enumerated() {
                        requireLineOrNull(value, "\(path).funcTable.\(column)[\(position)]")
                    }
                }
            }

            let frames = table(thread["frameTable"], "\(path).frameTable", columns: [
                "address", "inlineDepth", "category", "subcategory", "func", "nativeSymbol", "innerWindowID", "line", "column",
            ])
            if let frames {
                let column = frames.columns
                checkIndices(column["func"]!, "\(path).frameTable.func", count: funcs?.length ?? 0, what: "funcs")
                checkIndices(column["nativeSymbol"]!, "\(path).frameTable.nativeSymbol", count: symbols?.length ?? 0,
                             what: "native symbols", nullable: true)
                checkIndices(column["category"]!, "\(path).frameTable.category", count: categories.count, what: "categories",
                             nullable: true)
                for position in 0..<frames.length {
                    let framePath = "\(path).frameTable"
                    if let address = FirefoxProfileChecker.integer(column["address"]![position]) {
                        if address < -1 { fail("\(framePath).address[\(position)]", "\(address) is negative and not -1") }
                    } else {
                        fail("\(framePath).address[\(position)]", "\(describe(column["address"]![position])) is not an address")
                    }
                    if let depth = FirefoxProfileChecker.integer(column["inlineDepth"]![position]), depth >= 0 {
                    } else {
                        fail("\(framePath).inlineDepth[\(position)]",
                             "\(describe(column["inlineDepth"]![position])) is not a depth")
                    }
                    requireNumberOrNull(column["innerWindowID"]![position], "\(framePath).innerWindowID[\(position)]")
                    requireLineOrNull(column["line"]![position], "\(framePath).line[\(position)]")
                    requireLineOrNull(column["column"]![position], "\(framePath).column[\(position)]")
                    // A frame with a category needs a subcategory of that category; without one, it is ignored.
                    let subcategory = column["subcategory"]![position]
                    guard let category = FirefoxProfileChecker.integer(column["category"]![position]),
                          category >= 0, category < categories.count else { continue }
                    guard let index = FirefoxProfileChecker.integer(subcategory) else {
                        fail("\(framePath).subcategory[\(position)]",
                             "\(describe(subcategory)) is not a subcategory, and the frame has category \(category)")
                        continue
                    }
                    if index < 0 || index >= categories[category].subcategoryCount {
                        fail("\(framePath).subcategory[\(position)]", "\(index) is out of range of category "
                            + "\(category)'s \(categories[category].subcategoryCount) subcategories")
                    }
                }
            }

            let stacks = table(thread["stackTable"], "\(path).stackTable", columns: ["frame", "prefix"])
            if let stacks {
                checkIndices(stacks.columns["frame"]!, "\(path).stackTable.frame", count: frames?.length ?? 0, what: "frames")
                for (position, value) in stacks.columns["prefix"]!.enumerated() {
                    if FirefoxProfileChecker.isNull(value) { continue }
                    guard let prefix = FirefoxProfileChecker.integer(value) else {
                        fail("\(path).stackTable.prefix[\(position)]", "\(describe(value)) is not an index")
                        continue
                    }
                    if prefix < 0 || prefix >= position {
                        fail("\(path).stackTable.prefix[\(position)]", "\(prefix) is not below \(position): a prefix "
                            + "must come before its stack")
                    }
                }
            }

            checkSamples(thread["samples"], "\(path).samples", stackCount: stacks?.length ?? 0)

            let markers = table(thread["markers"], "\(path).markers",
                                columns: ["data", "name", "startTime", "endTime", "phase", "category"])
            if let markers {
                checkIndices(markers.columns["name"]!, "\(path).markers.name", count: stringCount, what: "strings")
                checkIndices(markers.columns["category"]!, "\(path).markers.category", count: categories.count,
                             what: "categories")
                checkIndices(markers.columns["phase"]!, "\(path).markers.phase", count: 4, what: "marker phases")
                for column in ["startTime", "endTime"] {
                    for (position, value) in markers.columns[column]!.enumerated() {
                        requireNumberOrNull(value, "\(path).markers.\(column)[\(position)]")
                    }
                }
            }
        }

        mutating func requireLineOrNull(_ value: Any?, _ path: String) {
            if FirefoxProfileChecker.isNull(value) { return }
            guard let line = FirefoxProfileChecker.integer(value), line >= 0 else {
                fail(path, "\(describe(value)) is neither null nor a line number")
                return
            }
        }

        mutating func checkSamples(_ value: Any?, _ path: String, stackCount: Int) {
            let hasTime = (value as? [String: Any])?["time"] != nil
            let timeColumn = hasTime ? "time" : "timeDeltas"
            guard let samples = table(value, path, columns: ["stack", timeColumn]) else { return }
            checkIndices(samples.columns["stack"]!, "\(path).stack", count: stackCount, what: "stacks", nullable: true)
            // docs-developer/custom-importer.md: "the profile formats will assume that there is at least one
            // sample in a thread".
            if samples.length == 0 { fail(path, "no samples; the profiler assumes a thread has at least one") }
            let object = value as! [String: Any]
            if let times = FirefoxProfileChecker.sampleTimes(object) {
                for position in times.indices.dropFirst() where times[position] < times[position - 1] {
                    fail("\(path).\(timeColumn)[\(position)]", "sample time \(times[position]) ms is before the previous "
                        + "sample's \(times[position - 1]) ms")
                }
            } else {
                fail("\(path).\(timeColumn)", "not a list of finite numbers")
            }
            if let weight = object["weight"] {
                if !FirefoxProfileChecker.isNull(weight) {
                    if let weights = array(weight, "\(path).weight") {
                        if weights.count != samples.length {
                            fail("\(path).weight", "\(weights.count) entries, but length is \(samples.length)")
                        }
                        for (position, value) in weights.enumerated() { requireNumber(value, "\(path).weight[\(position)]") }
                    }
                }
            } else {
                fail("\(path).weight", "missing (null when every sample weighs 1)")
            }
            if let weightType = object["weightType"] as? String {
                if !["samples", "tracing-ms", "bytes"].contains(weightType) {
                    fail("\(path).weightType", "\"\(weightType)\" is not samples, tracing-ms or bytes")
                }
            } else {
                fail("\(path).weightType", "\(describe(object["weightType"])) is not a weight type")
            }
        }
    }
}
