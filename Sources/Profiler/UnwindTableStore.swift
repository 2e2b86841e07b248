import CBPF
import Dispatch
import CPython
import Native

/// The unwind rows of every file the profiled processes map, in the BPF array `unwind_rows`: each file's table is
/// compiled once (keyed by device and inode), written back to back into the memory-mapped array, and shared by every
/// process that maps the file. The array's size is the memory bound; a file that does not fit gets no table (its
/// frames fall back to frame pointers, counted) and is reported.
///
/// Rows are never freed: a recording's files are few and usually stay mapped. Not thread-safe: used from one thread at
/// a time (the native table loader's queue), which reads new files on every core (`loadNew`).
final class UnwindTableStore {
    /// Where a file's rows are, and the link-time address their addresses are relative to.
    struct Placement: Equatable {
        var firstRow: UInt32
        var rowCount: UInt32
        var linkTimeBase: UInt64
    }

    /// Identifies a file across processes (and mount namespaces): what /proc/PID/maps prints.
    struct FileKey: Hashable {
        var device: String
        var inode: UInt64
    }

    /// `capacity` rows of `unwind_row`: the mmap-ed BPF array (or any memory, in tests).
    private let rows: UnsafeMutableRawPointer
    let capacity: Int
    private(set) var usedRows = 0
    /// Files with a table loaded.
    private var placements: [FileKey: Placement] = [:]
    /// Files left without a table, and why (no call frame information, unreadable, no room).
    private(set) var filesWithoutTable: [String: String] = [:]
    private(set) var filesLoaded = 0
    /// Rows whose rule the BPF unwinder cannot apply (they stop the unwind there, counted in BPF).
    private(set) var unsupportedRows = 0

    /// The user's directories of debug files by build ID (`--debug-dir`), for the symbolizers.
    private let debugDirectories: [String]
    /// Tables compiled earlier, by this or another recording; nil when not used.
    let cache: UnwindTableCache?
    /// Why the cache asked for is not used.
    let cacheProblem: String?

    init(rows: UnsafeMutableRawPointer, capacity: Int, debugDirectories: [String] = [],
         cache: (cache: UnwindTableCache?, problem: String?) = (nil, nil)) {
        self.rows = rows
        self.capacity = capacity
        self.debugDirectories = debugDirectories
        self.cache = cache.cache
        self.cacheProblem = cache.problem
    }

    /// The load layout and symbols of each file read, so that a rescan or another process mapping the same file
    /// does not read it again. Only these small parts are kept: the `ELFFile`, with its open descriptor and the
    /// sections it read, is released once they are built. A file that could not be opened is not remembered: the next
    /// process mapping it may be readable (a short-lived process can exit between mapping it and our reading it).
    private var layouts: [FileKey: ELFLoadLayout] = [:]
    private var symbolizers: [FileKey: NativeFileSymbolizer] = [:]

    /// A file a process maps, as `layout` and `loadNew` take it: `root` is the process's root directory, inside which
    /// its debug files are looked for.
    struct MappedFile {
        var key: FileKey
        var path: String
        var root: String
        var open: ELFFileOpener
    }

    /// The load layout of file `key`; the first time, `open` reads the file, its unwind table is loaded and its
    /// symbols indexed (as `loadNew` does). The symbolizer keeps `open` to read the file's FDE ranges if one of its
    /// addresses turns out to have no symbol (it checks that what it opens then is the same file); each later process
    /// mapping the file offers its own `open`, which still works when the first process has exited.
    func layout(_ key: FileKey, path: String, root: String, open: @escaping ELFFileOpener) -> ELFLoadLayout? {
        if let known = layouts[key] {
            symbolizers[key]?.offerReopening(open)
            return known
        }
        loadNew([MappedFile(key: key, path: path, root: root, open: open)])
        return layouts[key]
    }

    /// Reads the files not read yet, each on its own core (a process that imported numpy and onnxruntime maps dozens):
    /// opens it, takes its table from the cache or compiles it, and indexes its symbols. Then places the tables in the
    /// array one after the other, in the order given.
    func loadNew(_ files: [MappedFile]) {
        var seen = Set(layouts.keys)
        let new = files.filter { seen.insert($0.key).inserted }
        guard !new.isEmpty else { return }
        let prepared = UnsafeMutableBufferPointer<PreparedFile?>.allocate(capacity: new.count)
        prepared.initialize(repeating: nil)
        defer {
            _ = prepared.deinitialize()
            prepared.deallocate()
        }
        let (cache, debugDirectories) = (self.cache, self.debugDirectories)
        DispatchQueue.concurrentPerform(iterations: new.count) { index in
            prepared[index] = Self.prepare(new[index], cache: cache, debugDirectories: debugDirectories)
        }
        for (file, result) in zip(new, prepared) {
            guard let result else {
                filesWithoutTable[file.path] = "cannot be opened"
                continue
            }
            filesWithoutTable[file.path] = nil
            layouts[file.key] = result.layout
            symbolizers[file.key] = result.symbolizer
            placements[file.key] = place(result.table, path: file.path)
        }
    }

    /// What reading one file gives; nil if it cannot be opened.
    private struct PreparedFile {
        var layout: ELFLoadLayout
        var symbolizer: NativeFileSymbolizer
        var table: Result<UnwindTableCache.Entry, Error>
    }

    /// Reads one file: thread-safe (the cache locks itself; nothing else is shared).
    private static func prepare(_ file: MappedFile, cache: UnwindTableCache?, debugDirectories: [String]) -> PreparedFile? {
        guard let elf = try? file.open() else { return nil }
        return PreparedFile(
            layout: elf.loadLayout,
            symbolizer: NativeFileSymbolizer(file: elf, path: file.path, root: file.root, splitFunctions: EvalLoop.functionNames,
                                             reopen: file.open, debugDirectories: debugDirectories),
            table: Result { try compile(elf, cache: cache) })
    }

    /// The symbols of file `key`, once `layout(_:path:root:open:)` has read it. Thread-safe to use.
    func symbolizer(for key: FileKey) -> NativeFileSymbolizer? {
        symbolizers[key]
    }

    /// Where file `key`'s rows are, if it has a table; `layout(_:path:open:)` loads it.
    func placement(for key: FileKey) -> Placement? {
        placements[key]
    }

    /// Row `index` of the array, as the BPF unwinder reads it; nil past its end.
    func row(at index: UInt32) -> unwind_row? {
        guard Int(index) < capacity else { return nil }
        return rows.load(fromByteOffset: Int(index) * MemoryLayout<unwind_row>.stride, as: unwind_row.self)
    }

    /// Writes a file's rows after those placed so far, if the unwinder can take them and they fit.
    private func place(_ table: Result<UnwindTableCache.Entry, Error>, path: String) -> Placement? {
        let compiled: UnwindTableCache.Entry
        do {
            compiled = try table.get()
        } catch {
            filesWithoutTable[path] = "\(error)"
            return nil
        }
        let count = compiled.rows.count
        guard count > 0 else {
            filesWithoutTable[path] = "no call frame information"
            return nil
        }
        guard count <= Int(UNWIND_ROWS_PER_FILE_MAX) else {
            filesWithoutTable[path] = "\(count) unwind rows, more than the \(UNWIND_ROWS_PER_FILE_MAX) per file the unwinder searches"
            return nil
        }
        guard usedRows + count <= capacity else {
            filesWithoutTable[path] = "no room: \(count) rows needed, \(capacity - usedRows) of \(capacity) left (raise --unwind-memory)"
            return nil
        }
        let destination = rows.advanced(by: usedRows * MemoryLayout<unwind_row>.stride)
            .bindMemory(to: unwind_row.self, capacity: count)
        for (index, row) in compiled.rows.enumerated() {
            if row.cfa_kind == UInt8(UNWIND_UNSUPPORTED.rawValue) { unsupportedRows += 1 }
            destination[index] = row
        }
        let placement = Placement(firstRow: UInt32(usedRows), rowCount: UInt32(count), linkTimeBase: compiled.linkTimeBase)
        usedRows += count
        filesLoaded += 1
        return placement
    }

    /// The file's rows in the BPF form, from the cache or compiled (and then cached). No rows: no call frame
    /// information.
    private static func compile(_ elf: ELFFile, cache: UnwindTableCache?) throws -> UnwindTableCache.Entry {
        let sections = try CallFrameSections(elf: elf)
        let key = cache.map { sections.digest(salt: $0.salt) }
        if let key, let cached = cache?.entry(key) { return cached }
        let table = try UnwindTable(sections: sections)
        let base = table.entries.first?.address ?? 0
        let compiled = UnwindTableCache.Entry(linkTimeBase: base, rows: table.entries.map { row($0, base: base) })
        // Only tables the unwinder can take are worth keeping.
        if let key, !compiled.rows.isEmpty, compiled.rows.count <= Int(UNWIND_ROWS_PER_FILE_MAX) { cache?.store(compiled, key: key) }
        return compiled
    }

    /// The BPF form of one entry. Offsets that do not fit the row's narrow fields become `UNWIND_UNSUPPORTED`: the
    /// unwinder stops there rather than applying a wrong rule.
    static func row(_ entry: UnwindTable.Entry, base: UInt64) -> unwind_row {
        let address = UInt32(entry.address - base)  // the table refuses spans over 4 GiB
        func make(_ kind: unwind_cfa_kind, _ offset: Int32 = 0, rbp: Int8 = 0) -> unwind_row {
            guard let offset = Int16(exactly: offset) else { return make(UNWIND_UNSUPPORTED) }
            return unwind_row(address: address, cfa_offset: offset, cfa_kind: UInt8(kind.rawValue), rbp_offset: rbp)
        }
        guard let rule = entry.rule else { return make(UNWIND_NO_RULE) }
        var rbp: Int8 = 0
        if case let .atCFA(offset) = rule.rbp {
            guard offset % 8 == 0, let slots = Int8(exactly: offset / 8), slots != 0 else { return make(UNWIND_UNSUPPORTED) }
            rbp = slots
        }
        switch rule.cfa {
        case let .rspOffset(offset): return make(UNWIND_CFA_RSP, offset, rbp: rbp)
        case let .rbpOffset(offset): return make(UNWIND_CFA_RBP, offset, rbp: rbp)
        case let .plt(threshold): return make(UNWIND_CFA_PLT, Int32(threshold), rbp: rbp)
        case .endOfStack: return make(UNWIND_END_OF_STACK)
        case .unsupported: return make(UNWIND_UNSUPPORTED)
        }
    }

    var usedBytes: Int { usedRows * MemoryLayout<unwind_row>.stride }
    var capacityBytes: Int { capacity * MemoryLayout<unwind_row>.stride }
}
