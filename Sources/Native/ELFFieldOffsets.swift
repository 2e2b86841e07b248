// Where the fields of the ELF64 structures are, so the parsing code can name them instead of using numbers.
// Only little-endian ELF64 is supported, so these are fixed.

/// Byte offsets of the `Elf64_Ehdr` fields we read.
enum FileHeaderField {
    static let magic = 0  // e_ident[EI_MAG0...EI_MAG3]
    static let fileClass = 4  // e_ident[EI_CLASS]
    static let dataEncoding = 5  // e_ident[EI_DATA]
    static let type = 16  // e_type
    static let machine = 18  // e_machine
    static let programHeaderOffset = 32  // e_phoff
    static let sectionHeaderOffset = 40  // e_shoff
    static let programHeaderEntrySize = 54  // e_phentsize
    static let programHeaderCount = 56  // e_phnum
    static let sectionHeaderEntrySize = 58  // e_shentsize
    static let sectionHeaderCount = 60  // e_shnum
    static let sectionNameTableIndex = 62  // e_shstrndx
}

/// Byte offsets of the `Elf64_Shdr` fields.
enum SectionHeaderField {
    static let name = 0, type = 4, flags = 8, address = 16, offset = 24, size = 32, link = 40, info = 44
    static let addressAlignment = 48, entrySize = 56
}

/// Byte offsets of the `Elf64_Phdr` fields we read (`p_paddr`, at 24, is not used on Linux).
enum ProgramHeaderField {
    static let type = 0, flags = 4, offset = 8, virtualAddress = 16, fileSize = 32, memorySize = 40, align = 48
}

/// Byte offsets of the `Elf64_Sym` fields we read (`st_other`, at 5, only holds visibility).
enum SymbolField {
    static let name = 0, info = 4, sectionIndex = 6, value = 8, size = 16
}
