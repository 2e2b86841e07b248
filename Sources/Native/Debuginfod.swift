import CSystem
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Debug files by build ID from the debuginfod servers `DEBUGINFOD_URLS` names, through elfutils' libdebuginfod (loaded
/// when first needed; its on-disk cache, `DEBUGINFOD_CACHE_PATH` or `~/.cache/debuginfod_client`, keeps what arrived
/// for the next run). Asking never blocks: `request` queues a fetch on a thread of its own, one file at a time, each
/// given up after `perFileLimit` seconds; `debugFile(for:waitingUntil:)` takes what has arrived, waiting at most until
/// its deadline. What a server sends is treated as hostile: it is read as any ELF file (bounded), and used only if
/// its build ID is the one asked for. Thread-safe.
public final class DebuginfodClient: @unchecked Sendable {
    public enum Outcome: Equatable, Sendable {
        case pending
        case found(path: String)
        /// No server has it, or what came was not the file asked for, or the time limit passed: the reason.
        case failed(String)
    }

    /// The servers, as `DEBUGINFOD_URLS` lists them (space-separated).
    public let urls: [String]
    /// Seconds one file may take before it is given up.
    public let perFileLimit: Double

    private let lock = Lock()
    private var outcomes: [[UInt8]: Outcome] = [:]
    private var opened: [[UInt8]: ELFFile] = [:]
    private let queue = DispatchQueue(label: "pybpfprof-debuginfod")
    /// Read by the C progress callback of the fetch in flight: set to give it up (`cancelAll`).
    private let cancelFlag = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    /// nil when `DEBUGINFOD_URLS` is unset or holds no URL: no server to ask.
    public convenience init?(environment: [String: String], perFileLimit: Double = 30) {
        let urls = (environment["DEBUGINFOD_URLS"] ?? "").split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            .map(String.init)
        guard !urls.isEmpty else { return nil }
        self.init(urls: urls, perFileLimit: perFileLimit)
    }

    init(urls: [String], perFileLimit: Double) {
        self.urls = urls
        self.perFileLimit = perFileLimit
        cancelFlag.initialize(to: 0)
    }

    deinit {
        cancelFlag.deallocate()
    }

    /// Why the servers cannot be asked on this machine (libdebuginfod.so.1 is not installed), or nil.
    public static var unavailableReason: String? {
        var why = [CChar](repeating: 0, count: 256)
        guard csystem_debuginfod_load(&why, why.count) == 0 else { return nil }
        return String(decoding: why.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Queues a fetch of `buildID`'s debug file unless it was asked for before. Returns at once.
    public func request(_ buildID: [UInt8]) {
        guard !buildID.isEmpty, buildID.count <= 64 else { return }
        lock.lock()
        let isNew = outcomes[buildID] == nil
        if isNew { outcomes[buildID] = .pending }
        lock.unlock()
        guard isNew else { return }
        queue.async { [self] in
            let outcome = fetch(buildID)
            lock.lock()
            outcomes[buildID] = outcome.0
            if let file = outcome.1 { opened[buildID] = file }
            lock.unlock()
        }
    }

    /// The debug file of `buildID` if it has arrived, waiting for it (when it was requested) until `deadline`
    /// (CLOCK_MONOTONIC nanoseconds; nil: not at all).
    public func debugFile(for buildID: [UInt8], waitingUntil deadline: UInt64? = nil) -> ELFFile? {
        while true {
            lock.lock()
            let outcome = outcomes[buildID]
            let file = opened[buildID]
            lock.unlock()
            guard outcome == .pending, let deadline, Self.monotonicNanoseconds() < deadline else { return file }
            usleep(10_000)
        }
    }

    /// Every build ID asked for, with what became of it.
    public var outcomesByBuildID: [[UInt8]: Outcome] {
        lock.lock()
        defer { lock.unlock() }
        return outcomes
    }

    /// Gives up the fetch in flight and every queued one: for the end of a run that has waited long enough.
    public func cancelAll() {
        cancelFlag.pointee = 1
    }

    private func fetch(_ buildID: [UInt8]) -> (Outcome, ELFFile?) {
        if cancelFlag.pointee != 0 { return (.failed("given up"), nil) }
        let deadline = Self.monotonicNanoseconds() + UInt64(perFileLimit * 1e9)
        var path: UnsafeMutablePointer<CChar>?
        let result = buildID.withUnsafeBufferPointer { bytes in
            csystem_debuginfod_find_debuginfo(bytes.baseAddress, Int32(bytes.count), deadline, cancelFlag, &path)
        }
        defer { free(path) }
        guard result >= 0 else {
            switch -result {
            case ENOENT: return (.failed("no server has it"), nil)
            case ETIME: return (.failed("no answer within \(Int(perFileLimit)) s"), nil)
            case ECANCELED: return (.failed("given up"), nil)
            case ENOSYS: return (.failed(Self.unavailableReason ?? "no server set"), nil)
            default: return (.failed(String(cString: strerror(-result))), nil)
            }
        }
        close(result)
        guard let path else { return (.failed("libdebuginfod gave no path"), nil) }
        let cached = String(cString: path)
        // The file is the server's: read as any hostile ELF file, and only the one asked for is taken.
        guard let file = try? ELFFile(path: cached) else { return (.failed("not an ELF file: \(cached)"), nil) }
        guard file.buildID == buildID else { return (.failed("build ID differs: \(cached)"), nil) }
        return (.found(path: cached), file)
    }

    public static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}
