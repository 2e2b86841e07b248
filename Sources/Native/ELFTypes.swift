/// Why an ELF file was refused. The description names the offending structure and the numbers involved,
/// because the files we read may come from a container and be deliberately malformed.
public struct ELFError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// One entry of the section header table (`Elf64_Shdr`), with its name resolved.
public struct ELFSection: Sendable, Equatable {
    /// Index in the section header table; what `ELFSymbol.sectionIndex` refers to.
    public let index: Int
    public let name: String
    public let type: UInt32
    public let flags: UInt64
    public let address: UInt64
    public let offset: UInt64
    public let size: UInt64
    public let link: UInt32
    public let info: UInt32
    public let addressAlignment: UInt64
    public let entrySize: UInt64

    public static let typeNull: UInt32 = 0
    public static let typeSymbolTable: UInt32 = 2
    public static let typeStringTable: UInt32 = 3
    public static let typeNote: UInt32 = 7
    public static let typeNoBits: UInt32 = 8
    public static let typeDynamicSymbolTable: UInt32 = 11

    public static let flagWrite: UInt64 = 0x1
    public static let flagAlloc: UInt64 = 0x2
    public static let flagExecute: UInt64 = 0x4
    /// The contents are compressed (`Elf64_Chdr` + zlib/zstd); `ELFFile.data(of:)` returns them as stored.
    public static let flagCompressed: UInt64 = 0x800

    public var isWritable: Bool { flags & Self.flagWrite != 0 }
    public var isAllocated: Bool { flags & Self.flagAlloc != 0 }
    public var isExecutable: Bool { flags & Self.flagExecute != 0 }
    /// Whether the section occupies bytes in the file (everything except `SHT_NOBITS`, e.g. `.bss`).
    public var hasFileData: Bool { type != Self.typeNoBits && type != Self.typeNull }
}

/// One entry of the program header table (`Elf64_Phdr`).
public struct ELFProgramHeader: Sendable, Equatable {
    public let type: UInt32
    public let flags: UInt32
    public let offset: UInt64
    public let virtualAddress: UInt64
    public let fileSize: UInt64
    public let memorySize: UInt64
    public let align: UInt64

    public static let typeLoad: UInt32 = 1
    public static let typeNote: UInt32 = 4

    public static let flagExecute: UInt32 = 0x1
    public static let flagWrite: UInt32 = 0x2
    public static let flagRead: UInt32 = 0x4

    public var isExecutable: Bool { flags & Self.flagExecute != 0 }
    public var isWritable: Bool { flags & Self.flagWrite != 0 }
    public var isReadable: Bool { flags & Self.flagRead != 0 }
}

/// A defined symbol from `.symtab` or `.dynsym` (`Elf64_Sym`), with its name resolved.
public struct ELFSymbol: Sendable, Equatable {
    public let name: String
    /// Link-time virtual address (for `STT_TLS`, the offset in the TLS block). Add the load bias for a runtime address.
    public let value: UInt64
    public let size: UInt64
    /// `STT_*`, the low nibble of `st_info`.
    public let type: UInt8
    /// `STB_*`, the high nibble of `st_info`.
    public let binding: UInt8
    /// Index of the section the symbol lives in, or a reserved index such as `sectionIndexAbsolute`.
    public let sectionIndex: UInt16

    public static let typeObject: UInt8 = 1
    public static let typeFunction: UInt8 = 2
    public static let typeSection: UInt8 = 3
    public static let typeFile: UInt8 = 4
    public static let typeTLS: UInt8 = 6

    public static let bindingLocal: UInt8 = 0
    public static let bindingGlobal: UInt8 = 1
    public static let bindingWeak: UInt8 = 2

    public static let sectionIndexUndefined: UInt16 = 0
    public static let sectionIndexAbsolute: UInt16 = 0xfff1
}
