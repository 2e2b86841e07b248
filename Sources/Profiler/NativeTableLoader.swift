import Dispatch
import Native

/// Reads processes' executable mappings and compiles the unwind tables of their files into the BPF program's
/// array, one job at a time on a queue of its own: compiling the tables of a large library takes long enough that the
/// recording loop, which registers new processes' Python stacks meanwhile, must not wait for it. The only user of the
/// `UnwindTableStore` once sampling has started.
///
/// Re-reading a process's maps (`refreshLater`: its samples reached code loaded after its tables, whose frames stay
/// unwound short until then) goes before the new processes' jobs waiting in the queue: one new process's tables can
/// take a second.
final class NativeTableLoader {
    private let store: UnwindTableStore
    private let queue = DispatchQueue(label: "pybpfprof-native-tables")
    /// Jobs waiting: each block queued runs the first refresh waiting, else the first load.
    private let lock = Lock()
    private var refreshes: [() -> Void] = []
    private var loads: [() -> Void] = []

    init(store: UnwindTableStore) {
        self.store = store
    }

    private func enqueue(_ job: @escaping () -> Void, first: Bool) {
        lock.lock()
        if first { refreshes.append(job) } else { loads.append(job) }
        lock.unlock()
        queue.async { [self] in
            lock.lock()
            let next = refreshes.isEmpty ? loads.removeFirst() : refreshes.removeFirst()
            lock.unlock()
            next()
        }
    }

    /// A process's mappings, its files' tables loaded; waits for the jobs before it.
    func load(pid: Int32, interpreterFile: String?) throws -> NativeProcess {
        try queue.sync { try Self.read(pid: pid, interpreterFile: interpreterFile, store: store) }
    }

    /// As `load`, in the background: `done` runs on the loader's queue.
    func loadLater(pid: Int32, interpreterFile: String?, done: @escaping (Result<NativeProcess, Error>) -> Void) {
        enqueue({ [store] in
            done(Result { try Self.read(pid: pid, interpreterFile: interpreterFile, store: store) })
        }, first: false)
    }

    /// A process registered at its exec (its interpreter is in the executable) is read before the dynamic loader has
    /// mapped its libraries. They are mapped long before its first tables are compiled: the maps are read again then,
    /// so the unwinder gets libc's table with the rest, and the samples taken meanwhile are marked "not loaded yet",
    /// not cut short at an address in no known mapping until a refresh.
    private static func read(pid: Int32, interpreterFile: String?, store: UnwindTableStore) throws -> NativeProcess {
        var process = try NativeProcess(pid: pid, interpreterFile: interpreterFile, store: store)
        _ = try? process.refresh(interpreterFile: interpreterFile, store: store)
        return process
    }

    /// Reads the maps of processes again in the background, and hands each one whose mappings changed to `changed`
    /// (on the loader's queue).
    func refreshLater(_ processes: [(pid: Int32, registration: UInt64, native: NativeProcess, interpreterFile: String?)],
                      changed: @escaping (_ pid: Int32, _ registration: UInt64, NativeProcess) -> Void) {
        enqueue({ [store] in
            for var process in processes {
                guard (try? process.native.refresh(interpreterFile: process.interpreterFile, store: store)) == true else { continue }
                changed(process.pid, process.registration, process.native)
            }
        }, first: true)
    }

    /// What the tables hold, once the jobs queued so far are done.
    func report() -> UnwindTableReport {
        queue.sync {
            UnwindTableReport(
                files: store.filesLoaded, rows: store.usedRows, bytes: store.usedBytes, capacityBytes: store.capacityBytes,
                unsupportedRows: store.unsupportedRows, filesWithoutTable: store.filesWithoutTable,
                filesFromCache: store.cache?.hits ?? 0, cacheEntriesRejected: store.cache?.rejected ?? 0,
                cacheProblem: store.cacheProblem.map { "not used: \($0)" } ?? store.cache?.writeFailure.map { "not written to: \($0)" })
        }
    }
}
