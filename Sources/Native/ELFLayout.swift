/// The parsed and validated header tables of an ELF file: the part of `ELFFile` that is decided at load time.
///
/// Everything later code indexes with is checked here once (table bounds, section data bounds against the file's
/// size, symbol table shapes and sizes), so malformed files are refused up front with a message naming the bad
/// structure, and the lazy accessors on `ELFFile` only have to cope with bad *entries* (for example one symbol's
/// name offset). Only the ELF header, the two header tables and the section name table are read.
struct ELFLayout {
    let type: UInt16
    let sections: [ELFSection]
    let programHeaders: [ELFProgramHeader]

    static let headerSize = 64
    static let sectionHeaderSize = 64
    static let programHeaderSize = 56
    static let symbolSize = 24

    private static let classELF64: UInt8 = 2
    private static let dataLittleEndian: UInt8 = 1
    private static let machineX86_64: UInt16 = 62

    /// `e_shnum`/`e_phnum`/`e_shstrndx` escape values meaning "the real value is in section header 0".
    private static let sectionCountInSectionZero: UInt64 = 0
    private static let programHeaderCountInSectionZero: UInt16 = 0xffff
    private static let sectionIndexInSectionZero: UInt16 = 0xffff

    init(reading contents: ELFContents) throws {
        guard let headerBytes = try contents.read(offset: 0, count: UInt64(Self.headerSize), what: "ELF header"),
              let header = ELFRecord(headerBytes, offset: 0, size: Self.headerSize)
        else {
            throw ELFError("file is \(contents.size) bytes, too short for an ELF header (\(Self.headerSize) bytes)")
        }
        guard header.u8(FileHeaderField.magic) == 0x7f, header.u8(FileHeaderField.magic + 1) == UInt8(ascii: "E"),
              header.u8(FileHeaderField.magic + 2) == UInt8(ascii: "L"), header.u8(FileHeaderField.magic + 3) == UInt8(ascii: "F")
        else {
            let magic = (0..<4).map { String(header.u8(FileHeaderField.magic + $0), radix: 16) }.joined(separator: " ")
            throw ELFError("not an ELF file (magic \(magic), expected 7f 45 4c 46)")
        }
        guard header.u8(FileHeaderField.fileClass) == Self.classELF64 else {
            throw ELFError("ELF class \(header.u8(FileHeaderField.fileClass)) is not ELF64 (2); only 64-bit files are supported")
        }
        guard header.u8(FileHeaderField.dataEncoding) == Self.dataLittleEndian else {
            throw ELFError("ELF data encoding \(header.u8(FileHeaderField.dataEncoding)) is not little-endian (1)")
        }
        guard header.u16(FileHeaderField.machine) == Self.machineX86_64 else {
            throw ELFError("ELF machine \(header.u16(FileHeaderField.machine)) is not x86_64 (\(Self.machineX86_64))")
        }
        type = header.u16(FileHeaderField.type)

        let sectionHeaders = try Self.sectionHeaderRecords(contents, header: header)
        sections = try Self.sections(contents, records: sectionHeaders, header: header)
        programHeaders = try Self.programHeaders(contents, header: header, sectionZero: sectionHeaders.first)
        try Self.validateSymbolTables(sections, maximumSize: contents.maximumReadSize)
    }

    // MARK: Section headers

    private static func sectionHeaderRecords(_ contents: ELFContents, header: ELFRecord) throws -> [ELFRecord] {
        let tableOffset = header.u64(FileHeaderField.sectionHeaderOffset)
        let entrySize = header.u16(FileHeaderField.sectionHeaderEntrySize)
        guard tableOffset != 0 else { return [] }
        guard Int(entrySize) == sectionHeaderSize else {
            throw ELFError("section header entry size is \(entrySize), expected \(sectionHeaderSize)")
        }
        guard let sectionZeroBytes = try contents.read(offset: tableOffset, count: UInt64(sectionHeaderSize), what: "section header 0"),
              let sectionZero = ELFRecord(sectionZeroBytes, offset: 0, size: sectionHeaderSize)
        else {
            throw ELFError("section header table offset \(hex(tableOffset)) is past the end of the file (\(contents.size) bytes)")
        }
        // Files with 0xff00 or more sections store the count in section 0's sh_size.
        var count = UInt64(header.u16(FileHeaderField.sectionHeaderCount))
        if count == sectionCountInSectionZero { count = sectionZero.u64(SectionHeaderField.size) }
        guard let records = try table(contents, offset: tableOffset, count: count, size: sectionHeaderSize, what: "section header table") else {
            throw ELFError(
                "section header table (\(count) entries at offset \(hex(tableOffset))) extends past the end of the file (\(contents.size) bytes)"
            )
        }
        return records
    }

    private static func sections(_ contents: ELFContents, records: [ELFRecord], header: ELFRecord) throws -> [ELFSection] {
        guard let sectionZero = records.first else { return [] }
        // Files with 0xff00 or more sections store the name table index in section 0's sh_link.
        let declaredNameTableIndex = header.u16(FileHeaderField.sectionNameTableIndex)
        let nameTableIndex =
            declaredNameTableIndex == sectionIndexInSectionZero ? sectionZero.u32(SectionHeaderField.link) : UInt32(declaredNameTableIndex)
        let nameTable = try Self.sectionNameTable(contents, records: records, index: nameTableIndex)
        return try records.enumerated().map { index, record in
            let nameOffset = record.u32(SectionHeaderField.name)
            var name = ""
            if let nameTable {
                guard let resolved = nameTable.nulTerminatedString(at: UInt64(nameOffset)) else {
                    throw ELFError(
                        "section \(index) name offset \(nameOffset) does not start a NUL-terminated name inside the section name table (\(nameTable.count) bytes)"
                    )
                }
                name = resolved
            }
            let section = ELFSection(
                index: index, name: name, type: record.u32(SectionHeaderField.type), flags: record.u64(SectionHeaderField.flags),
                address: record.u64(SectionHeaderField.address), offset: record.u64(SectionHeaderField.offset),
                size: record.u64(SectionHeaderField.size), link: record.u32(SectionHeaderField.link),
                info: record.u32(SectionHeaderField.info), addressAlignment: record.u64(SectionHeaderField.addressAlignment),
                entrySize: record.u64(SectionHeaderField.entrySize)
            )
            if section.hasFileData, Bounds.range(offset: section.offset, count: section.size, within: contents.size) == nil {
                throw ELFError(
                    "section \(index) '\(name)' (offset \(hex(section.offset)), size \(hex(section.size))) extends past the end of the file (\(contents.size) bytes)"
                )
            }
            return section
        }
    }

    /// The bytes of `.shstrtab`, or nil if the file declares none (`e_shstrndx` = 0), in which case sections are unnamed.
    private static func sectionNameTable(_ contents: ELFContents, records: [ELFRecord], index: UInt32) throws -> ArraySlice<UInt8>? {
        guard index != 0 else { return nil }
        guard index < records.count else {
            throw ELFError("section name table index \(index) is out of range (\(records.count) sections)")
        }
        let record = records[Int(index)]
        let (type, offset, size) = (
            record.u32(SectionHeaderField.type), record.u64(SectionHeaderField.offset), record.u64(SectionHeaderField.size)
        )
        guard type == ELFSection.typeStringTable else {
            throw ELFError("section name table (section \(index)) has type \(type), not a string table")
        }
        guard let nameTable = try contents.read(offset: offset, count: size, what: "section name table") else {
            throw ELFError(
                "section name table (offset \(hex(offset)), size \(hex(size))) extends past the end of the file (\(contents.size) bytes)"
            )
        }
        return nameTable
    }

    // MARK: Program headers

    private static func programHeaders(_ contents: ELFContents, header: ELFRecord, sectionZero: ELFRecord?) throws -> [ELFProgramHeader] {
        let tableOffset = header.u64(FileHeaderField.programHeaderOffset)
        let entrySize = header.u16(FileHeaderField.programHeaderEntrySize)
        let declaredCount = header.u16(FileHeaderField.programHeaderCount)
        var count = UInt64(declaredCount)
        // Files with 0xffff or more program headers store the count in section 0's sh_info.
        if declaredCount == programHeaderCountInSectionZero, let sectionZero {
            count = UInt64(sectionZero.u32(SectionHeaderField.info))
        }
        guard tableOffset != 0, count != 0 else { return [] }
        guard Int(entrySize) == programHeaderSize else {
            throw ELFError("program header entry size is \(entrySize), expected \(programHeaderSize)")
        }
        guard let records = try table(contents, offset: tableOffset, count: count, size: programHeaderSize, what: "program header table") else {
            throw ELFError(
                "program header table (\(count) entries at offset \(hex(tableOffset))) extends past the end of the file (\(contents.size) bytes)"
            )
        }
        return try records.enumerated().map { index, record in
            let programHeader = ELFProgramHeader(
                type: record.u32(ProgramHeaderField.type), flags: record.u32(ProgramHeaderField.flags),
                offset: record.u64(ProgramHeaderField.offset), virtualAddress: record.u64(ProgramHeaderField.virtualAddress),
                fileSize: record.u64(ProgramHeaderField.fileSize), memorySize: record.u64(ProgramHeaderField.memorySize),
                align: record.u64(ProgramHeaderField.align)
            )
            if Bounds.range(offset: programHeader.offset, count: programHeader.fileSize, within: contents.size) == nil {
                throw ELFError(
                    "program header \(index) (type \(programHeader.type), offset \(hex(programHeader.offset)), file size \(hex(programHeader.fileSize))) extends past the end of the file (\(contents.size) bytes)"
                )
            }
            return programHeader
        }
    }

    // MARK: Symbol tables

    /// Checks the shape of `.symtab`/`.dynsym` so that symbol parsing can stride through them blindly, and that they
    /// and their string tables can be read (`maximumSize` bytes each): a file whose symbols cannot all be read is
    /// refused here rather than losing them silently later.
    private static func validateSymbolTables(_ sections: [ELFSection], maximumSize: Int) throws {
        for table in sections where table.type == ELFSection.typeSymbolTable || table.type == ELFSection.typeDynamicSymbolTable {
            let what = "symbol table \(table.index) '\(table.name)'"
            guard table.entrySize == UInt64(symbolSize) else {
                throw ELFError("\(what) has entry size \(table.entrySize), expected \(symbolSize)")
            }
            guard table.size % UInt64(symbolSize) == 0 else {
                throw ELFError("\(what) size \(table.size) is not a multiple of its entry size \(symbolSize)")
            }
            guard table.link < sections.count, sections[Int(table.link)].type == ELFSection.typeStringTable else {
                throw ELFError("\(what) links to section \(table.link), which is not a string table")
            }
            let names = sections[Int(table.link)]
            for (section, what) in [(table, what), (names, "string table \(names.index) '\(names.name)' of \(what)")]
            where section.size > UInt64(maximumSize) {
                throw ELFError("\(what) is \(section.size) bytes, more than the \(maximumSize) read per section")
            }
        }
    }

    /// The `count` records of `size` bytes at `offset`, or nil if they are not all inside the file.
    private static func table(_ contents: ELFContents, offset: UInt64, count: UInt64, size: Int, what: String) throws -> [ELFRecord]? {
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: UInt64(size))
        guard !overflow, let bytes = try contents.read(offset: offset, count: byteCount, what: "\(what) (\(count) entries)") else { return nil }
        return ELFRecord.table(bytes, count: count, size: size)
    }
}

private func hex<Value: BinaryInteger>(_ value: Value) -> String {
    "0x" + String(value, radix: 16)
}
