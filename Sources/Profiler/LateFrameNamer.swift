import Native
import ProfileModel

/// Names, when a profile is written, the native frames that no symbol named while it was recorded (`Frame.unnamed`:
/// a stripped file's function, known by its file's build ID and its address): from debug files found by build ID in
/// directories laid out as /usr/lib/debug is (`--debug-dir`; `report` adds this machine's /usr/lib/debug), then from
/// debuginfod. A recording asks debuginfod as soon as such a frame appears (`notice`), so the answer has the whole
/// recording to arrive; what has not arrived by the deadline given to `name` stays unnamed (`report` of the saved
/// recording can name it later). Thread-safe.
public final class LateFrameNamer: @unchecked Sendable {
    private let debugDirectories: [String]
    private let debuginfod: DebuginfodClient?
    private let lock = Lock()
    /// Debug files found in the directories, by build ID; nil: looked for and not there.
    private var local: [[UInt8]: NativeFileSymbolizer?] = [:]
    /// Debug files debuginfod gave, indexed once (a rotating recording names every period's frames).
    private var fetched: [[UInt8]: NativeFileSymbolizer] = [:]

    public init(debugDirectories: [String], debuginfod: DebuginfodClient?) {
        self.debugDirectories = debugDirectories
        self.debuginfod = debuginfod
    }

    /// Whether there is anywhere to look.
    public var hasSources: Bool { !debugDirectories.isEmpty || debuginfod != nil }

    /// A frame no symbol named was recorded: its file's debug file is asked of debuginfod now, in the background,
    /// unless the directories have it.
    public func notice(_ code: UnnamedNativeCode) {
        guard let debuginfod, localSymbolizer(code.buildID) == nil else { return }
        debuginfod.request(code.buildID)
    }

    /// `profile` with the frames the debug files name renamed, waiting for debuginfod's answers at most until
    /// `deadline` (CLOCK_MONOTONIC nanoseconds; nil: only what has arrived), and what was found. `final`: the last
    /// profile of the run, after which what debuginfod has not sent is given up (a period of `record --rotate` is
    /// not: later periods get the names that arrive later).
    public func name(_ profile: Profile, waitingUntil deadline: UInt64?, final: Bool = true) -> (Profile, LateNaming) {
        var (renamer, outcome) = renamer(for: profile.frames, waitingUntil: deadline, final: final)
        guard !renamer.isEmpty else { return (profile, outcome) }
        var named = 0
        let renamed = profile.renamingFrames { frame in
            let renamed = renamer.rename(frame)
            if renamed != nil { named += 1 }
            return renamed
        }
        outcome.namedFrames = named
        return (renamed, outcome)
    }

    /// `frames` with those the debug files name renamed (`dump`), as `name` does.
    public func name(_ frames: [Frame], waitingUntil deadline: UInt64?) -> ([Frame], LateNaming) {
        var (renamer, outcome) = renamer(for: frames, waitingUntil: deadline, final: true)
        let renamed = frames.map { frame in renamer.rename(frame) ?? frame }
        outcome.namedFrames = zip(frames, renamed).filter { $0.0.unnamed != nil && $0.1.unnamed == nil }.count
        return (renamed, outcome)
    }

    /// Those of `frames` (by any index) that the debug files found or arrived so far name, renamed; without waiting or
    /// giving anything up (`top` asks at every refresh).
    public func namesArrived(_ frames: [Int32: Frame]) -> [Int32: Frame] {
        let (renamer, _) = renamer(for: Array(frames.values), waitingUntil: nil, final: false)
        guard !renamer.isEmpty else { return [:] }
        return frames.compactMapValues { renamer.rename($0) }
    }

    /// The debug files of the unnamed frames among `frames`, found or fetched by `deadline`.
    private func renamer(for frames: [Frame], waitingUntil deadline: UInt64?, final: Bool) -> (FrameRenamer, LateNaming) {
        var outcome = LateNaming()
        var symbolizers: [[UInt8]: NativeFileSymbolizer] = [:]
        let buildIDs = Set(frames.compactMap { $0.unnamed?.buildID })
        outcome.files = buildIDs.count
        outcome.unnamedFrames = Set(frames.filter { $0.unnamed != nil }).count
        outcome.searched = hasSources
        guard hasSources, !buildIDs.isEmpty else { return (FrameRenamer(symbolizers: [:]), outcome) }
        for buildID in buildIDs {
            if let symbolizer = localSymbolizer(buildID) {
                symbolizers[buildID] = symbolizer
                outcome.foundInDirectories += 1
            } else if let debuginfod {
                debuginfod.request(buildID)
            }
        }
        if let debuginfod {
            for buildID in buildIDs where symbolizers[buildID] == nil {
                if let symbolizer = fetchedSymbolizer(buildID, from: debuginfod, waitingUntil: deadline) {
                    symbolizers[buildID] = symbolizer
                    outcome.foundByDebuginfod += 1
                }
            }
            // What is still on its way is given up: the profile is written without it.
            if final { debuginfod.cancelAll() }
            let outcomes = debuginfod.outcomesByBuildID
            for buildID in buildIDs where symbolizers[buildID] == nil {
                switch outcomes[buildID] {
                case .failed(let reason)?: outcome.debuginfodFailures[reason, default: 0] += 1
                case .pending?, nil: outcome.debuginfodFailures["not arrived by the time the profile was written", default: 0] += 1
                case .found?: break
                }
            }
        }
        return (FrameRenamer(symbolizers: symbolizers), outcome)
    }

    /// Names an unnamed frame from its file's debug file, if there is one and it names the address.
    private struct FrameRenamer {
        let symbolizers: [[UInt8]: NativeFileSymbolizer]

        var isEmpty: Bool { symbolizers.isEmpty }

        func rename(_ frame: Frame) -> Frame? {
            guard let code = frame.unnamed, let symbolizer = symbolizers[code.buildID],
                  let symbol = symbolizer.symbol(at: code.address) else { return nil }
            var renamed = frame
            renamed.name = NativeNames.withoutSymbolVersion(symbol.name)
                + (frame.name.hasSuffix(NativeNames.framePointerSuffix) ? NativeNames.framePointerSuffix : "")
            renamed.unnamed = nil
            return renamed
        }
    }

    private func fetchedSymbolizer(_ buildID: [UInt8], from debuginfod: DebuginfodClient, waitingUntil deadline: UInt64?)
        -> NativeFileSymbolizer?
    {
        if let known = lock.withLock({ fetched[buildID] }) { return known }
        guard let file = debuginfod.debugFile(for: buildID, waitingUntil: deadline) else { return nil }
        let symbolizer = NativeFileSymbolizer(file: file, path: file.path ?? "")
        lock.withLock { fetched[buildID] = symbolizer }
        return symbolizer
    }

    private func localSymbolizer(_ buildID: [UInt8]) -> NativeFileSymbolizer? {
        guard !debugDirectories.isEmpty else { return nil }
        lock.lock()
        if let known = local[buildID] {
            lock.unlock()
            return known
        }
        lock.unlock()
        let symbolizer = DebugFileLocator.debugFile(buildID: buildID, in: debugDirectories)
            .map { NativeFileSymbolizer(file: $0.file, path: $0.path) }
        lock.lock()
        local[buildID] = symbolizer
        lock.unlock()
        return symbolizer
    }
}

/// What `LateFrameNamer.name` did: for the recording's summary.
public struct LateNaming: Sendable, Equatable {
    /// Distinct frames no symbol named, and the distinct files (build IDs) they are in.
    public var unnamedFrames = 0
    public var files = 0
    public var namedFrames = 0
    public var foundInDirectories = 0
    public var foundByDebuginfod = 0
    /// Files debuginfod did not give, by reason.
    public var debuginfodFailures: [String: Int] = [:]
    /// Whether there was anywhere to look (debug directories, debuginfod).
    public var searched = false

    public init() {}

    /// One line for the summary: nil when there was nothing to name.
    public var summaryLine: String? {
        guard searched, files > 0 else { return nil }
        var line = "names from debug files: \(namedFrames) of \(unnamedFrames) unnamed native frame\(unnamedFrames == 1 ? "" : "s") "
            + "named; debug files found for \(foundInDirectories + foundByDebuginfod) of the \(files) file\(files == 1 ? "" : "s") they are in"
        var sources: [String] = []
        if foundInDirectories > 0 { sources.append("\(foundInDirectories) in debug directories") }
        if foundByDebuginfod > 0 { sources.append("\(foundByDebuginfod) from debuginfod") }
        if !sources.isEmpty { line += " (" + sources.joined(separator: ", ") + ")" }
        if !debuginfodFailures.isEmpty {
            line += "; debuginfod: " + debuginfodFailures.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                .joined(separator: ", ")
        }
        return line
    }
}
