/// A read-only view of an ELF64 little-endian x86_64 file (executable, shared library or separate debug file).
///
/// Only the parts used are read, with `pread`, never the whole file: a host's CUDA or PyTorch libraries are 1-2 GB,
/// mostly code and GPU images, where the profiler needs a few MB of symbols and call frame information. The ELF
/// header, the header tables and the section name table are read and validated at init (see `ELFLayout`); section
/// contents are read on first use and kept (symbol tables, `.eh_frame`), or read per call (`bytes(atVirtualAddress:
/// count:)`), each read bounded by `maximumSectionSize` and all of them by `maximumBytesRead`, because the file may come
/// from a container and be hostile. Everything read is decoded with bounds checks.
///
/// The file stays open until this object is released, rather than being read eagerly and closed at init: what is
/// needed depends on the caller (finding the interpreter scans symbols of every mapped file and needs no call frame
/// information; only old interpreters need `.rodata`; split function parts need one function's code), and reading
/// all of it for every file would read much that is not used. Instances are short-lived: the profiler keeps what it
/// derives from a file (`ELFLoadLayout`, symbol and unwind tables) and releases the file, so `--all` over thousands
/// of libraries holds descriptors only for the files being read at the moment, not one per library. Holding one also
/// means every read sees the inode validated at init, even if its path is replaced afterwards; a file truncated
/// afterwards fails the reads past its new end (an error, or nil), never the process (with `mmap`, SIGBUS).
///
/// Thread-safe: `pread` has no shared file position, the kept sections are lock-protected (in `ELFContents`), and
/// so is the lazily built symbol index, so instances can be shared between threads.
public final class ELFFile: @unchecked Sendable {
    /// The file this was read from, or nil when built from bytes.
    public let path: String?
    /// `e_type`: `typeExecutable` (`ET_EXEC`, fixed addresses) or `typeShared` (`ET_DYN`, PIE or shared library).
    public let type: UInt16
    public let sections: [ELFSection]
    public let programHeaders: [ELFProgramHeader]

    public static let typeExecutable: UInt16 = 2
    public static let typeShared: UInt16 = 3

    let contents: ELFContents
    let symbolIndex = LazySymbolIndex()

    /// The largest file accepted: far above any real interpreter or library (the largest CUDA libraries are ~2 GB).
    /// Memory is bounded by `maximumSectionSize` and `maximumBytesRead`; this bounds the reading of a debug file found
    /// by `.gnu_debuglink`, which is read through for its CRC.
    public static let maximumFileSize = 4 << 30

    /// The most bytes read for one section or other piece of a file. The largest real ones are string tables and
    /// `.eh_frame` of big C++ libraries, tens of MB (liblldb's `.strtab` is 30 MB); a symbol table of 1 GB is hostile.
    public static let maximumSectionSize = 256 << 20
    /// The most bytes read from one file in all: a hostile file may declare many sections over the same bytes.
    public static let maximumBytesRead = 1 << 30

    /// Opens the file at `path` and reads its headers; throws `ELFError` if it cannot be read, is not a regular file,
    /// is larger than `maximumFileSize`, or is not a well-formed ELF64 little-endian x86_64 file.
    public convenience init(path: String) throws {
        try self.init(path: path) { try FileReading.openFile(path, regularFileOnly: true, maximumSize: Self.maximumFileSize) }
    }

    /// Opens the file at `path` inside `root` (a container's `/proc/PID/root`), never outside it (see `openInRoot`);
    /// `path` becomes root + path. Throws as `init(path:)`.
    public convenience init(path: String, inRoot root: String) throws {
        try self.init(path: pathInRoot(path, root: root)) {
            try FileReading.openFile(path, inRoot: root, regularFileOnly: true, maximumSize: Self.maximumFileSize)
        }
    }

    /// Reads the headers of a file already opened (by `FileReading`, which refuses what is not a regular file).
    convenience init(file: OpenFile) throws {
        try self.init(path: file.path, contents: ELFContents(file: file))
    }

    private convenience init(path: String, opening open: () throws -> OpenFile) throws {
        let file: OpenFile
        do {
            file = try open()
        } catch let error as FileReadError {
            throw ELFError("cannot read ELF file: \(error)")
        }
        try self.init(file: file)
    }

    /// An ELF file held in memory, e.g. the vDSO image.
    public convenience init(bytes: [UInt8]) throws {
        try self.init(path: nil, contents: ELFContents(bytes: bytes))
    }

    private init(path: String?, contents: ELFContents) throws {
        let layout = try Self.naming(path) { try ELFLayout(reading: contents) }
        self.path = path
        self.contents = contents
        self.type = layout.type
        self.sections = layout.sections
        self.programHeaders = layout.programHeaders
    }

    /// Runs `read`, with its errors as `ELFError`s naming the file.
    private static func naming<Result>(_ path: String?, _ read: () throws -> Result) throws -> Result {
        do {
            return try read()
        } catch let error as ELFError {
            throw path.map { ELFError("\($0): \(error)") } ?? error
        } catch let error as FileReadError {
            throw ELFError("cannot read ELF file: \(error)")
        }
    }

    /// The `PT_LOAD` segments: what the loader maps, in file order.
    public var loadSegments: [ELFProgramHeader] {
        programHeaders.filter { $0.type == ELFProgramHeader.typeLoad }
    }

    /// The first section with this name (names are not unique in general, but are for the ones we look up).
    public func section(named name: String) -> ELFSection? {
        sections.first { $0.name == name }
    }

    /// The section's bytes as stored in the file, read on the first call; nil for sections without file data
    /// (`SHT_NOBITS`, e.g. `.bss`). Throws `ELFError`, naming the file, if the section is larger than
    /// `maximumSectionSize`, would take the bytes read from the file past `maximumBytesRead`, or cannot be read
    /// (e.g. the file was truncated since it was opened).
    public func data(of section: ELFSection) throws -> ArraySlice<UInt8>? {
        try Self.naming(path) { try contents.data(of: section) }
    }

    /// The `count` bytes the file provides at link-time virtual address `address`, found through the `PT_LOAD`
    /// segments. Nil if any of them is not backed by the file (e.g. `.bss`, which is zero-filled at load time,
    /// or an address outside every segment), or if they cannot be read (see `data(of:)`).
    public func bytes(atVirtualAddress address: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0 else { return nil }
        for segment in loadSegments where address >= segment.virtualAddress {
            let offsetInSegment = address - segment.virtualAddress
            let (endInSegment, overflow) = offsetInSegment.addingReportingOverflow(UInt64(count))
            guard !overflow, endInSegment <= segment.fileSize else { continue }
            let (fileOffset, fileOffsetOverflow) = segment.offset.addingReportingOverflow(offsetInSegment)
            guard !fileOffsetOverflow,
                  let bytes = try? contents.read(offset: fileOffset, count: UInt64(count), what: "\(count) bytes at address 0x\(String(address, radix: 16))")
            else { return nil }
            return Array(bytes)
        }
        return nil
    }
}
