/// A function found for a native code address: its demangled name and how far into it the address is.
public struct NativeSymbol: Hashable, Sendable {
    public let name: String
    /// The address minus the function symbol's value.
    public let offset: UInt64

    public init(name: String, offset: UInt64) {
        self.name = name
        self.offset = offset
    }
}

/// Opens an ELF file again: what a `NativeFileSymbolizer` reads only when first needed (its FDE ranges) comes from it.
public typealias ELFFileOpener = @Sendable () throws -> ELFFile

/// Names the functions of one ELF file, from its own `.symtab` and `.dynsym` and, when the file is stripped or its
/// separate debug file knows more functions, from that debug file's `.symtab` (see `DebugFileLocator`). Where no
/// symbol covers an address, `unnamedFunctionStart(containing:)` gives the start of the FDE that does.
///
/// The symbols are read at init; only the symbol tables are kept, not the files' contents. The FDE ranges are read
/// on the first address no symbol covers, from the file opened again: most files a profile maps have their samples
/// named by symbols, and a large library has 100,000+ FDEs. Thread-safe: the tables are immutable, and the cache of
/// demangled names and the FDE ranges are lock-protected.
public final class NativeFileSymbolizer: @unchecked Sendable {
    /// The file's path inside `root`.
    public let path: String
    public let root: String
    public let buildID: [UInt8]?
    /// The separate debug file whose symbols are used (including `root`), or nil if there is none or the file's
    /// own symbol table has at least as many functions.
    public let debugFilePath: String?

    /// Consulted in order: the debug file's functions first when it is used, then the file's own (whose `.dynsym`
    /// may still name what a partial debug file lacks).
    private let indexes: [FunctionIndex]
    /// Code the compiler split off `splitFunctions` that no symbol names (a stripped file): `NAME.cold`, found by
    /// `SplitFunctionParts`. Consulted after the symbol tables.
    private let splitParts: [(range: Range<UInt64>, name: String)]
    private let lock = Lock()
    private var demangledNames: [NameKey: String] = [:]

    /// The `.eh_frame` section header of the file read at init, and its build ID (`buildID`): a file opened again must
    /// have both, so that a file replaced at its path since (a package upgrade) is not taken for it. Nil: no FDEs.
    private let ehFrame: ELFSection?
    /// Held while the ranges are read, so that one thread reads them and the others wait for its result; not `lock`,
    /// so that symbol lookups meanwhile do not wait. Guards `reopen` and `frameDescriptions`.
    private let frameDescriptionLock = Lock()
    /// How to open the file again for its FDE ranges; the latest offered (`offerReopening`) replaces the one before.
    private var reopen: ELFFileOpener?
    private var frameDescriptions: FrameDescriptionState = .notRead

    private enum FrameDescriptionState {
        /// Not read yet, or the file could not be opened again (its process may have exited): tried again on the next
        /// address no symbol covers, with the latest `reopen`.
        case notRead
        case read(FrameDescriptionRanges)
        /// The file opened again was another file, or its `.eh_frame` did not parse: addresses no symbol covers keep
        /// their own address as their name, as when there is no `.eh_frame`.
        case unusable
    }

    private struct NameKey: Hashable {
        let index: Int
        let entry: Int
    }

    /// Reads the file at `path` inside `root` and looks for its debug file. Throws `ELFError` if the file cannot
    /// be read or is not an ELF64 x86_64 file; a missing or unusable debug file is not an error. The FDE ranges are
    /// read from the same path when first needed.
    public convenience init(path: String, root: String = "/", splitFunctions: Set<String> = []) throws {
        self.init(file: try ELFFile(path: path, inRoot: root), path: path, root: root, splitFunctions: splitFunctions,
                  reopen: { try ELFFile(path: path, inRoot: root) })
    }

    /// For a file already read, e.g. through `/proc/PID/map_files/…`, which is the exact file a process maps even
    /// when it was deleted or replaced since. `path` (inside `root`) is where to look for the debug file by
    /// `.gnu_debuglink`. Of the functions named in `splitFunctions` that the file defines, the parts the compiler
    /// split off and no symbol names are named `NAME.cold` (CPython's eval loop in a stripped distribution build).
    /// `reopen` opens the file again for its FDE ranges, on the first address no symbol covers; the file it opens
    /// must have `file`'s build ID and `.eh_frame` section header, else the ranges are not used. Without it (until
    /// `offerReopening`), `unnamedFunctionStart(containing:)` is nil.
    /// `debugDirectories`: the user's directories of debug files by build ID (`--debug-dir`), after the root's own.
    public init(file: ELFFile, path: String, root: String = "/", splitFunctions: Set<String> = [], reopen: ELFFileOpener? = nil,
                debugDirectories: [String] = []) {
        self.path = path
        self.root = root
        self.buildID = file.buildID
        self.ehFrame = file.section(named: ".eh_frame")
        self.reopen = reopen
        let own = FunctionIndex(file: file)
        let hasOwnSymbolTable = file.sections.contains { $0.type == ELFSection.typeSymbolTable }
        var indexes = [own]
        var debugFilePath: String?
        if let debug = DebugFileLocator.locate(for: file, path: path, root: root, debugDirectories: debugDirectories) {
            let debugIndex = FunctionIndex(file: debug.file)
            if !hasOwnSymbolTable || debugIndex.entries.count > own.entries.count {
                debugFilePath = debug.path
                indexes = [debugIndex, own]
            }
        }
        self.debugFilePath = debugFilePath
        self.indexes = indexes
        var splitParts: [(range: Range<UInt64>, name: String)] = []
        if !splitFunctions.isEmpty {
            for entry in own.entries where splitFunctions.contains(entry.symbol.name) {
                for part in SplitFunctionParts.find(in: file, entry: entry.symbol.value)
                where !indexes.contains(where: { $0.entry(containing: part.lowerBound) != nil }) {
                    splitParts.append((part, entry.symbol.name + ".cold"))
                }
            }
        }
        self.splitParts = splitParts
    }

    /// The function containing link-time virtual address `address` (runtime address minus the load bias), with
    /// its name demangled; nil if no function symbol covers the address.
    public func symbol(at address: UInt64) -> NativeSymbol? {
        for (indexNumber, index) in indexes.enumerated() {
            guard let entryNumber = index.entry(containing: address) else { continue }
            let symbol = index.entries[entryNumber].symbol
            let name = demangledName(NameKey(index: indexNumber, entry: entryNumber), symbol.name)
            return NativeSymbol(name: name, offset: address - symbol.value)
        }
        if let part = splitParts.first(where: { $0.range.contains(address) }) {
            return NativeSymbol(name: part.name, offset: address - part.range.lowerBound)
        }
        return nil
    }

    /// Where the function containing link-time address `address` starts when no symbol names it (`symbol(at:)` is
    /// nil): the start of the FDE that covers the address. Nil if no FDE covers it (padding, code without call frame
    /// information) or the FDE ranges cannot be read (see `init(file:path:root:splitFunctions:reopen:)`). The first
    /// call that can open the file again reads them.
    public func unnamedFunctionStart(containing address: UInt64) -> UInt64? {
        frameDescriptionRanges()?.range(containing: address)?.start
    }

    /// Another way to open the file again for its FDE ranges, used from now on instead of the one given before: that
    /// one may stop working (`/proc/PID/map_files/…` of a process that has exited) before any address needs the ranges,
    /// and the symbolizer is shared by every process mapping the file. Nothing changes once they are read.
    public func offerReopening(_ reopen: @escaping ELFFileOpener) {
        frameDescriptionLock.lock()
        defer { frameDescriptionLock.unlock() }
        if case .notRead = frameDescriptions { self.reopen = reopen }
    }

    /// The FDE ranges, read on the first call that can open the file; nil when they cannot be had.
    private func frameDescriptionRanges() -> FrameDescriptionRanges? {
        guard let ehFrame else { return nil }
        frameDescriptionLock.lock()
        defer { frameDescriptionLock.unlock() }
        if case .notRead = frameDescriptions, let reopen, let file = try? reopen() {
            if file.buildID == buildID, file.section(named: ".eh_frame") == ehFrame,
               let ranges = try? FrameDescriptionRanges(elf: file) {
                frameDescriptions = .read(ranges)
            } else {
                frameDescriptions = .unusable
            }
        }
        if case .read(let ranges) = frameDescriptions { return ranges }
        return nil
    }

    /// Names are demangled when first asked for: a large C++ library has hundreds of thousands of symbols, and a
    /// profile touches few of them.
    private func demangledName(_ key: NameKey, _ mangled: String) -> String {
        lock.lock()
        if let name = demangledNames[key] {
            lock.unlock()
            return name
        }
        lock.unlock()
        let name = Demangler.demangle(mangled)
        lock.lock()
        demangledNames[key] = name
        lock.unlock()
        return name
    }
}

/// One `NativeFileSymbolizer` per file, shared by every process that maps it. Files are identified by device and
/// inode when known (the same library seen through different paths, or in different containers, is read once),
/// else by root and path. Files that cannot be read are remembered as such, so that they are not retried for every
/// address. Holds at most `capacity` files, dropping the least recently used. Thread-safe.
public final class NativeSymbolCache: @unchecked Sendable {
    public static let defaultCapacity = 1024

    public let capacity: Int

    private enum Key: Hashable {
        case file(device: String, inode: UInt64)
        case path(root: String, path: String)
    }

    private struct Entry {
        let symbolizer: NativeFileSymbolizer?
        var lastUse: UInt64
    }

    private let lock = Lock()
    private var entries: [Key: Entry] = [:]
    private var useCounter: UInt64 = 0

    public init(capacity: Int = NativeSymbolCache.defaultCapacity) {
        self.capacity = max(1, capacity)
    }

    /// The number of files (readable or not) held.
    public var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return entries.count
    }

    /// The symbolizer of the file at `path` inside `root`; nil if it cannot be read as an ELF file (also when an
    /// earlier call found so). `device` (`major:minor` as in `/proc/PID/maps`) and `inode` identify the file when
    /// both are given and not those of anonymous memory (`00:00`, inode 0).
    public func symbolizer(path: String, root: String, device: String?, inode: UInt64?) -> NativeFileSymbolizer? {
        let key: Key
        if let device, let inode, inode != 0, device != "00:00" {
            key = .file(device: device, inode: inode)
        } else {
            key = .path(root: root, path: path)
        }
        if let cached = lookUp(key) { return cached.symbolizer }
        // Read outside the lock: a large file takes a while, and other files' lookups need not wait for it.
        let symbolizer = try? NativeFileSymbolizer(path: path, root: root)
        return insert(symbolizer, for: key)
    }

    private func lookUp(_ key: Key) -> Entry? {
        lock.lock()
        defer { lock.unlock() }
        guard var entry = entries[key] else { return nil }
        useCounter += 1
        entry.lastUse = useCounter
        entries[key] = entry
        return entry
    }

    /// Stores `symbolizer` unless another thread stored one for the same key meanwhile; returns the one kept.
    private func insert(_ symbolizer: NativeFileSymbolizer?, for key: Key) -> NativeFileSymbolizer? {
        lock.lock()
        defer { lock.unlock() }
        useCounter += 1
        if var existing = entries[key] {
            existing.lastUse = useCounter
            entries[key] = existing
            return existing.symbolizer
        }
        if entries.count >= capacity, let leastRecent = entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key {
            entries[leastRecent] = nil
        }
        entries[key] = Entry(symbolizer: symbolizer, lastUse: useCounter)
        return symbolizer
    }
}

/// The name of a frame at `address` in the file at `path` that no symbol covers: the file's base name and the
/// link-time address in hex, e.g. `libfoo.so.1+0x1a2b`, so that it can be looked up later with `addr2line`. The
/// profiler passes the start of the function (`NativeFileSymbolizer.unnamedFunctionStart(containing:)`) where an
/// FDE says where that is, so that the name stands for the function, not for one of its instructions.
public func unknownNativeFrameName(path: String, address: UInt64) -> String {
    let baseName = path.split(separator: "/").last.map(String.init) ?? path
    return "\(baseName)+0x\(String(address, radix: 16))"
}
