@testable import Native

/// Builds `.eh_frame` contents by hand, for inputs no real binary has. FDE addresses use the encoding GCC emits,
/// `DW_EH_PE_pcrel | DW_EH_PE_sdata4` (0x1b), relative to `sectionAddress`.
struct EHFrameBuilder {
    static let sectionAddress: UInt64 = 0x10_0000
    static let bases = PointerEncoding.Bases(sectionAddress: sectionAddress, text: nil, data: nil)
    /// `DW_CFA_def_cfa rsp 8; DW_CFA_offset r16 (rip) at cfa-8`: the state at a function's first instruction.
    static let standardInitialInstructions: [UInt8] = [0x0c, 0x07, 0x08, 0x90, 0x01]

    var bytes: [UInt8] = []

    /// Appends a CIE (version 1, "zR", code alignment 1, data alignment -8, return address register 16) and returns
    /// its offset.
    @discardableResult
    mutating func appendCIE(instructions: [UInt8] = standardInitialInstructions, augmentation: String = "zR") -> Int {
        var body: [UInt8] = [0, 0, 0, 0, 1] + Array(augmentation.utf8) + [0, 1, 0x78, 16]
        if augmentation.hasPrefix("z") { body += [1, 0x1b] }
        return appendEntry(body + instructions)
    }

    /// Appends an FDE for `[begin, begin + length)` using the CIE at `cieOffset`, and returns its offset.
    @discardableResult
    mutating func appendFDE(cieOffset: Int, begin: UInt64, length: UInt32, instructions: [UInt8]) -> Int {
        let entryOffset = bytes.count
        let pointerFieldOffset = entryOffset + 4
        let pcBeginFieldAddress = Self.sectionAddress + UInt64(pointerFieldOffset + 4)
        var body = le32(UInt32(truncatingIfNeeded: pointerFieldOffset - cieOffset))
        body += le32(UInt32(truncatingIfNeeded: Int64(bitPattern: begin &- pcBeginFieldAddress)))
        body += le32(length) + [0] + instructions  // augmentation data length 0
        return appendEntry(body)
    }

    private mutating func appendEntry(_ body: [UInt8]) -> Int {
        let offset = bytes.count
        bytes += le32(UInt32(body.count)) + body
        return offset
    }

    func table() throws -> UnwindTable {
        try UnwindTable(callFrameSection: bytes[...], kind: .ehFrame, bases: Self.bases)
    }
}

func le32(_ value: UInt32) -> [UInt8] {
    (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}
