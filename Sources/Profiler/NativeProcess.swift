import BPFKit
import CBPF
import CPython
import FoundationEssentials
import Native

/// One executable mapping of a profiled process, as the unwinder and the symbolizer need it.
struct ExecutableMapping {
    var start: UInt64
    var end: UInt64
    /// As /proc/PID/maps prints it: in the process's mount namespace; empty for anonymous memory.
    var path: String
    var file: UnwindTableStore.FileKey?
    /// Runtime address minus link-time address; nil when unknown (anonymous memory, unreadable file).
    var bias: UInt64?
    var table: UnwindTableStore.Placement?
    /// The file's symbols, read when the mapping was found (the process may be gone when its samples are read).
    var symbolizer: NativeFileSymbolizer?
    /// Code of the interpreter itself (libpython, or the python executable): hidden in the default view.
    var isInterpreter: Bool
}

/// What the profiler knows about one process's executable mappings: the BPF map value the native unwinder
/// searches (`struct process_mappings`), and the mapping of each address for symbolization. Rebuilt when the
/// process maps new code (dlopen, an extension module imported later), which the BPF program reports as an
/// address in no known mapping.
struct NativeProcess {
    let pid: Int32
    /// Sorted by start; at most EXEC_MAPPINGS_MAX (the lowest addresses win beyond that, the rest are reported).
    private(set) var mappings: [ExecutableMapping] = []
    private(set) var droppedMappings = 0
    /// The maps text this was built from: a rescan that reads the same text changes nothing.
    private(set) var mapsText = ""

    /// Reads /proc/PID/maps and loads the unwind table of every executable file it maps (once per file).
    /// `interpreterFile` is the path (as in maps) of the file holding the interpreter, nil for a native process.
    init(pid: Int32, interpreterFile: String?, store: UnwindTableStore) throws {
        self.pid = pid
        try refresh(interpreterFile: interpreterFile, store: store)
    }

    /// Mappings as given, not read from the process (tests).
    init(pid: Int32, mappings: [ExecutableMapping]) {
        self.pid = pid
        self.mappings = mappings
    }

    /// Re-reads the maps; returns false when nothing changed.
    @discardableResult
    mutating func refresh(interpreterFile: String?, store: UnwindTableStore) throws -> Bool {
        let text = try KernelFile.text("/proc/\(pid)/maps")
        guard text != mapsText else { return false }
        mapsText = text
        let all = MemoryMapping.parse(text)
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
        var byPath: [String: [MemoryMapping]] = [:]
        for mapping in all where mapping.inode != 0 { byPath[mapping.path, default: []].append(mapping) }

        // Every new file first, read in parallel; the loop below then finds each one read.
        let pid = self.pid
        store.loadNew(all.filter { $0.executable && $0.inode != 0 }.map { mapping in
            UnwindTableStore.MappedFile(key: UnwindTableStore.FileKey(device: mapping.device, inode: mapping.inode), path: mapping.path,
                                        root: "/proc/\(pid)/root") {
                try InterpreterLocator.openMappedFile(pid: pid, path: mapping.path, mapping: mapping)
            }
        })
        var result: [ExecutableMapping] = []
        for mapping in all where mapping.executable {
            var entry = ExecutableMapping(
                start: mapping.start, end: mapping.end, path: mapping.path, file: nil, bias: nil, table: nil, symbolizer: nil,
                isInterpreter: interpreterFile != nil && (mapping.path == interpreterFile || mapping.path == executable))
            if mapping.path == VirtualDSO.path, let vdso = VirtualDSO.image {
                // Every process of this kernel maps the same vDSO image as we do.
                entry.file = VirtualDSO.fileKey
                entry.bias = store.layout(VirtualDSO.fileKey, path: mapping.path, root: "/") { vdso }?.loadBias(mappings: [mapping])
            } else if mapping.inode != 0 {
                let key = UnwindTableStore.FileKey(device: mapping.device, inode: mapping.inode)
                entry.file = key
                // Kept by the file's symbolizer, which may open the file again later: the pid, not `self`.
                let layout = store.layout(key, path: mapping.path, root: "/proc/\(pid)/root") {
                    try InterpreterLocator.openMappedFile(pid: pid, path: mapping.path, mapping: mapping)
                }
                entry.bias = layout?.loadBias(mappings: byPath[mapping.path] ?? [mapping])
            }
            if let file = entry.file, entry.bias != nil {
                entry.table = store.placement(for: file)
                entry.symbolizer = store.symbolizer(for: file)
            }
            result.append(entry)
        }
        result.sort { $0.start < $1.start }
        droppedMappings = max(0, result.count - Int(EXEC_MAPPINGS_MAX))
        mappings = Array(result.prefix(Int(EXEC_MAPPINGS_MAX)))
        return true
    }

    /// The mapping holding `address`.
    func mapping(containing address: UInt64) -> ExecutableMapping? {
        guard let index = mappings.lastIndex(withKeyAtMost: address, key: \.start), address < mappings[index].end else { return nil }
        return mappings[index]
    }

    /// The entries of the `process_mappings` map value, in its order.
    func execMappings() -> [exec_mapping] {
        mappings.map { mapping in
            var entry = exec_mapping()
            entry.start = mapping.start
            entry.end = mapping.end
            if let table = mapping.table, let bias = mapping.bias {
                entry.table_base = bias &+ table.linkTimeBase
                entry.first_row = table.firstRow
                entry.row_count = table.rowCount
            }
            return entry
        }
    }

    /// The `process_mappings` map value.
    func bpfValue() -> [UInt8] {
        let entries = execMappings()
        var bytes = [UInt8](repeating: 0, count: MemoryLayout<process_mappings>.size)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(entries.count), toByteOffset: 0, as: UInt32.self)
            let entriesOffset = MemoryLayout<process_mappings>.offset(of: \process_mappings.mappings)!
            for (index, entry) in entries.enumerated() {
                raw.storeBytes(of: entry, toByteOffset: entriesOffset + index * MemoryLayout<exec_mapping>.stride, as: exec_mapping.self)
            }
        }
        return bytes
    }
}

/// The kernel's vDSO (clock_gettime, gettimeofday), which has no file: the same image is mapped into every process,
/// ours included, so its unwind table and symbols come from our own copy.
enum VirtualDSO {
    static let path = "[vdso]"
    static let fileKey = UnwindTableStore.FileKey(device: "vdso", inode: 0)

    static let image: ELFFile? = {
        guard let text = try? KernelFile.text("/proc/self/maps"),
              let mapping = MemoryMapping.parse(text).first(where: { $0.path == path }),
              let base = UnsafeRawPointer(bitPattern: UInt(mapping.start))
        else { return nil }
        let bytes = [UInt8](UnsafeRawBufferPointer(start: base, count: Int(mapping.end - mapping.start)))
        return try? ELFFile(bytes: bytes)
    }()
}
