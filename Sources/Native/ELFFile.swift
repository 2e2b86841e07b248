/// A read-only view of an ELF64 little-endian x86_64 file (executable, shared library or separate debug file).
///
/// The whole file is read into memory once; its header tables are validated at init (see `ELFLayout`), and
/// everything else (symbols, notes, segment contents) is decoded on demand with bounds checks, because the
/// file may come from a container and be hostile. Immutable after init except for the lazily built symbol
/// index, which is lock-protected, so instances can be shared between threads.
public final class ELFFile: @unchecked Sendable {
    /// The file this was read from, or nil when built from bytes.
    public let path: String?
    /// `e_type`: `typeExecutable` (`ET_EXEC`, fixed addresses) or `typeShared` (`ET_DYN`, PIE or shared library).
    public let type: UInt16
    public let sections: [ELFSection]
    public let programHeaders: [ELFProgramHeader]

    public static let typeExecutable: UInt16 = 2
    public static let typeShared: UInt16 = 3

    let fileBytes: [UInt8]
    let symbolIndex = LazySymbolIndex()

    /// The largest file accepted. Far above any real interpreter or library (libpython with debug info is ~30 MB,
    /// the largest CUDA libraries ~2 GB); the whole file is read into memory.
    public static let maximumFileSize = 4 << 30

    /// Reads the file at `path`; throws `ELFError` if it cannot be read, is not a regular file, is larger than
    /// `maximumFileSize`, or is not a well-formed ELF64 little-endian x86_64 file.
    public convenience init(path: String) throws {
        try self.init(path: path) { try FileReading.contents(of: path, regularFileOnly: true, maximumSize: Self.maximumFileSize) }
    }

    /// Reads the file at `path` inside `root` (a container's `/proc/PID/root`), never outside it (see `openInRoot`);
    /// `path` becomes root + path. Throws as `init(path:)`.
    public convenience init(path: String, inRoot root: String) throws {
        try self.init(path: pathInRoot(path, root: root)) {
            try FileReading.contents(of: path, inRoot: root, regularFileOnly: true, maximumSize: Self.maximumFileSize)
        }
    }

    private convenience init(path: String, reading read: () throws -> [UInt8]) throws {
        let bytes: [UInt8]
        do {
            bytes = try read()
        } catch let error as FileReadError {
            throw ELFError("cannot read ELF file: \(error)")
        }
        let layout: ELFLayout
        do {
            layout = try ELFLayout(parsing: bytes)
        } catch let error as ELFError {
            throw ELFError("\(path): \(error)")
        }
        self.init(path: path, bytes: bytes, layout: layout)
    }

    public convenience init(bytes: [UInt8]) throws {
        self.init(path: nil, bytes: bytes, layout: try ELFLayout(parsing: bytes))
    }

    private init(path: String?, bytes: [UInt8], layout: ELFLayout) {
        self.path = path
        self.fileBytes = bytes
        self.type = layout.type
        self.sections = layout.sections
        self.programHeaders = layout.programHeaders
    }

    /// The `PT_LOAD` segments: what the loader maps, in file order.
    public var loadSegments: [ELFProgramHeader] {
        programHeaders.filter { $0.type == ELFProgramHeader.typeLoad }
    }

    /// The first section with this name (names are not unique in general, but are for the ones we look up).
    public func section(named name: String) -> ELFSection? {
        sections.first { $0.name == name }
    }

    /// The section's bytes as stored in the file; nil for sections without file data (`SHT_NOBITS`, e.g. `.bss`)
    /// or a section whose range is not inside the file.
    public func data(of section: ELFSection) -> ArraySlice<UInt8>? {
        guard section.hasFileData,
              let range = Bounds.range(offset: section.offset, count: section.size, within: fileBytes.count)
        else { return nil }
        return fileBytes[range]
    }

    /// The `count` bytes the file provides at link-time virtual address `address`, found through the `PT_LOAD`
    /// segments. Nil if any of them is not backed by the file (e.g. `.bss`, which is zero-filled at load time,
    /// or an address outside every segment).
    public func bytes(atVirtualAddress address: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0 else { return nil }
        for segment in loadSegments where address >= segment.virtualAddress {
            let offsetInSegment = address - segment.virtualAddress
            let (endInSegment, overflow) = offsetInSegment.addingReportingOverflow(UInt64(count))
            guard !overflow, endInSegment <= segment.fileSize else { continue }
            let (fileOffset, fileOffsetOverflow) = segment.offset.addingReportingOverflow(offsetInSegment)
            guard !fileOffsetOverflow,
                  let range = Bounds.range(offset: fileOffset, count: UInt64(count), within: fileBytes.count)
            else { return nil }
            return Array(fileBytes[range])
        }
        return nil
    }
}
