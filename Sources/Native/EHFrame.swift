/// Which call frame section is being read. They share the CIE/FDE layout (DWARF 5 §6.4.1) but differ in how an
/// entry names its kind and its CIE, and in how addresses are stored (LSB 5.0 §10.6 ".eh_frame section").
enum CallFrameSectionKind {
    /// `.eh_frame`: CIE id 0; an FDE's CIE pointer is the distance back from the pointer itself to its CIE;
    /// addresses use the CIE's 'R' pointer encoding.
    case ehFrame
    /// `.debug_frame`: CIE id all ones (`DW_CIE_ID`); an FDE's CIE pointer is an offset from the section start;
    /// addresses are absolute, 8 bytes.
    case debugFrame
}

/// A Common Information Entry: what the FDEs that point at it share.
struct CommonInformationEntry {
    /// Multiplies the delta of every `DW_CFA_advance_loc*`.
    let codeAlignmentFactor: UInt64
    /// Multiplies every factored offset (`DW_CFA_offset`, `DW_CFA_def_cfa_sf`, ...).
    let dataAlignmentFactor: Int64
    /// The DWARF register column holding the return address (16 on x86_64).
    let returnAddressRegister: UInt64
    /// How the FDEs' `pc_begin`, `pc_range` and `DW_CFA_set_loc` operands are stored ('R' augmentation).
    let pointerEncoding: PointerEncoding
    /// Whether FDEs carry an augmentation data block (augmentation string starting with 'z'), to be skipped.
    let hasAugmentationData: Bool
    /// The CFA program that sets up every FDE's initial rules: a cursor over the section bounded to it, so that
    /// `DW_CFA_set_loc` operands know their own address for `DW_EH_PE_pcrel`.
    let initialInstructions: DWARFCursor
}

/// A Frame Description Entry: the unwind rules of one contiguous address range.
struct FrameDescriptionEntry {
    let cie: CommonInformationEntry
    /// Link-time address of the first instruction covered.
    let pcBegin: UInt64
    /// One past the last instruction covered (`pc_begin + pc_range`, checked for overflow).
    let pcEnd: UInt64
    /// The FDE's CFA program, bounded like `CommonInformationEntry.initialInstructions`.
    let instructions: DWARFCursor
    /// The section offset of the entry, for messages.
    let sectionOffset: Int
}

/// The CIEs and FDEs of one `.eh_frame` or `.debug_frame` section.
struct CallFrameSection {
    /// The FDEs that parsed, in section order.
    let frameDescriptions: [FrameDescriptionEntry]
    /// FDEs left out because they or their CIE are malformed or use something not supported here.
    let skippedFrameDescriptions: [UnwindTable.SkippedFrameDescription]

    /// The most entries read from one section: far above libc (~3,700 FDEs) or a large C++ library (~500,000),
    /// and every entry takes at least 8 bytes anyway; this only bounds the work done on a hostile file.
    static let maximumEntryCount = 4_000_000

    /// Walks the section entry by entry. A malformed entry *header* (a length that runs past the section) ends the
    /// walk with an error, since nothing after it can be located; a malformed FDE body or an FDE whose CIE cannot be
    /// parsed is skipped and recorded, because its length still says where the next entry begins.
    init(data: ArraySlice<UInt8>, kind: CallFrameSectionKind, bases: PointerEncoding.Bases) throws {
        var frameDescriptions: [FrameDescriptionEntry] = []
        self.skippedFrameDescriptions = try Self.forEachFrameDescription(in: data, kind: kind, bases: bases) {
            frameDescriptions.append($0)
        }
        self.frameDescriptions = frameDescriptions
    }

    /// The walk of `init(data:kind:bases:)`, handing each FDE that parses to `body` instead of keeping them all: a
    /// caller that needs only their address ranges (`FrameDescriptionRanges`) then holds 16 bytes per FDE, not the
    /// entry with its CIE and cursors. Returns the FDEs skipped; throws as the init.
    static func forEachFrameDescription(
        in data: ArraySlice<UInt8>, kind: CallFrameSectionKind, bases: PointerEncoding.Bases,
        _ body: (FrameDescriptionEntry) -> Void
    ) throws -> [UnwindTable.SkippedFrameDescription] {
        var skipped: [UnwindTable.SkippedFrameDescription] = []
        var cies: [Int: Result<CommonInformationEntry, ELFError>] = [:]
        var cursor = DWARFCursor(section: data, position: data.startIndex, end: data.endIndex)
        var entryCount = 0
        while !cursor.isAtEnd {
            entryCount += 1
            guard entryCount <= Self.maximumEntryCount else {
                throw ELFError("call frame section has more than \(Self.maximumEntryCount) entries")
            }
            let entryOffset = cursor.sectionOffset
            guard let entry = try Self.nextEntry(&cursor, kind: kind) else { break }
            guard !entry.isCIE else { continue }
            do {
                let cieOffset = try entry.cieOffset()
                // Many FDEs share a CIE: parse each once, and remember a failure as well as a success.
                let cie: Result<CommonInformationEntry, ELFError>
                if let parsed = cies[cieOffset] {
                    cie = parsed
                } else {
                    cie = Result { try Self.parseCIE(at: cieOffset, in: data, kind: kind, bases: bases) }
                        .mapError { $0 as? ELFError ?? ELFError("\($0)") }
                    cies[cieOffset] = cie
                }
                body(try Self.parseFDE(entry.body, cie: try cie.get(), kind: kind, bases: bases, sectionOffset: entryOffset))
            } catch let error as ELFError {
                skipped.append(UnwindTable.SkippedFrameDescription(sectionOffset: entryOffset, reason: error.description))
            }
        }
        return skipped
    }

    /// One entry's framing: whether it is a CIE, its CIE pointer, and a cursor over the rest of its body.
    private struct Entry {
        var body: DWARFCursor
        let isCIE: Bool
        let cieIdOrPointer: UInt64
        /// Where the CIE pointer field sits, as a section offset: `.eh_frame` pointers count back from here.
        let pointerFieldOffset: Int
        let kind: CallFrameSectionKind

        func cieOffset() throws -> Int {
            switch kind {
            case .ehFrame:
                guard cieIdOrPointer <= UInt64(pointerFieldOffset) else {
                    throw ELFError("CIE pointer \(cieIdOrPointer) at \(pointerFieldOffset) points before the section")
                }
                return pointerFieldOffset - Int(cieIdOrPointer)
            case .debugFrame:
                guard cieIdOrPointer < UInt64(body.section.count) else {
                    throw ELFError("CIE pointer \(cieIdOrPointer) at \(pointerFieldOffset) points past the section")
                }
                return Int(cieIdOrPointer)
            }
        }
    }

    /// Reads an entry's length and CIE id/pointer (DWARF 5 §6.4.1, §7.4: a 32-bit length of 0xffffffff announces
    /// the 64-bit format, whose length and id fields are 8 bytes). Nil at the `.eh_frame` terminator, a zero length
    /// (LSB §10.6: "a zero length ... terminates the section"). Leaves `cursor` at the next entry.
    private static func nextEntry(_ cursor: inout DWARFCursor, kind: CallFrameSectionKind) throws -> Entry? {
        var length = UInt64(try cursor.u32())
        let is64Bit = length == 0xffff_ffff
        if is64Bit { length = try cursor.u64() }
        if length == 0 {
            guard kind == .ehFrame else { throw ELFError("zero-length entry at \(cursor.sectionOffset) in .debug_frame") }
            return nil
        }
        let bodyStart = cursor.position
        _ = try cursor.take(length)
        var body = DWARFCursor(section: cursor.section, position: bodyStart, end: cursor.position)
        let pointerFieldOffset = body.sectionOffset
        // The 64-bit format widens the CIE id/pointer in .debug_frame (DWARF 5 §7.4) but not in .eh_frame, whose CIE
        // pointer is always 4 bytes (LSB §10.6.1.2).
        let idOrPointer = is64Bit && kind == .debugFrame ? try body.u64() : UInt64(try body.u32())
        let isCIE: Bool
        switch kind {
        case .ehFrame: isCIE = idOrPointer == 0
        case .debugFrame: isCIE = idOrPointer == (is64Bit ? UInt64.max : 0xffff_ffff)
        }
        return Entry(body: body, isCIE: isCIE, cieIdOrPointer: idOrPointer, pointerFieldOffset: pointerFieldOffset, kind: kind)
    }

    private static func parseCIE(
        at offset: Int, in data: ArraySlice<UInt8>, kind: CallFrameSectionKind, bases: PointerEncoding.Bases
    ) throws -> CommonInformationEntry {
        guard offset >= 0, offset < data.count else { throw ELFError("CIE offset \(offset) is outside the section") }
        var framing = DWARFCursor(section: data, position: data.startIndex + offset, end: data.endIndex)
        guard let entry = try nextEntry(&framing, kind: kind), entry.isCIE else {
            throw ELFError("CIE pointer to \(offset) does not point at a CIE")
        }
        var cursor = entry.body
        let version = try cursor.u8()
        // .eh_frame CIEs are version 1 (or 3 when the return address column needs a ULEB, as GCC emits with
        // -gdwarf-3+); .debug_frame adds version 4, which has address and segment selector sizes.
        guard version == 1 || version == 3 || (version == 4 && kind == .debugFrame) else {
            throw ELFError("CIE at \(offset) has unsupported version \(version)")
        }
        let augmentation = Array(try cursor.nulTerminatedBytes())
        var letters = augmentation[...]
        // GCC's legacy "eh" augmentation (before 'z' existed) is followed by a pointer-sized exception table address.
        if letters.starts(with: Array("eh".utf8)) {
            _ = try cursor.u64()
            letters = letters.dropFirst(2)
        }
        if version == 4 {
            let addressSize = try cursor.u8(), segmentSelectorSize = try cursor.u8()
            guard addressSize == 8, segmentSelectorSize == 0 else {
                throw ELFError("CIE at \(offset) has address size \(addressSize), segment selector size \(segmentSelectorSize)")
            }
        }
        let codeAlignmentFactor = try cursor.uleb128()
        let dataAlignmentFactor = try cursor.sleb128()
        let returnAddressRegister = version == 1 ? UInt64(try cursor.u8()) : try cursor.uleb128()

        var pointerEncoding = PointerEncoding.absolute
        let hasAugmentationData = letters.first == UInt8(ascii: "z")
        if hasAugmentationData {
            // LSB §10.6.1.1: 'z' gives the length of the augmentation data, so letters after an unknown one can be
            // skipped as a block; each known letter consumes its own operand from that block, in order.
            let augmentationData = try cursor.take(try cursor.uleb128())
            var operands = DWARFCursor(section: data, position: augmentationData.startIndex, end: augmentationData.endIndex)
            letterLoop: for letter in letters.dropFirst() {
                switch letter {
                case UInt8(ascii: "R"): pointerEncoding = PointerEncoding(rawValue: try operands.u8())
                case UInt8(ascii: "L"): _ = try operands.u8()  // the LSDA's encoding; the LSDA itself is in each FDE's data
                case UInt8(ascii: "P"):
                    let personalityEncoding = PointerEncoding(rawValue: try operands.u8())
                    _ = try personalityEncoding.read(from: &operands, bases: bases)
                // 'S' marks a signal trampoline, whose return address is the interrupted instruction rather than a
                // call site. It has no data; its CFA is an expression (the saved context), which is `.unsupported`.
                case UInt8(ascii: "S"): continue
                default: break letterLoop
                }
            }
        } else if !letters.isEmpty {
            // Without 'z' the size of an unknown augmentation's data is unknown, so nothing after it can be parsed.
            throw ELFError("CIE at \(offset) has unknown augmentation \"\(String(decoding: augmentation, as: UTF8.self))\"")
        }
        guard pointerEncoding != .omit else { throw ELFError("CIE at \(offset) omits FDE addresses") }
        return CommonInformationEntry(
            codeAlignmentFactor: codeAlignmentFactor, dataAlignmentFactor: dataAlignmentFactor,
            returnAddressRegister: returnAddressRegister, pointerEncoding: pointerEncoding,
            hasAugmentationData: hasAugmentationData,
            initialInstructions: cursor
        )
    }

    private static func parseFDE(
        _ body: DWARFCursor, cie: CommonInformationEntry, kind: CallFrameSectionKind, bases: PointerEncoding.Bases,
        sectionOffset: Int
    ) throws -> FrameDescriptionEntry {
        var cursor = body
        let pcBegin: UInt64, pcRange: UInt64
        switch kind {
        case .ehFrame:
            // Only the personality may be indirect (LSB §10.6.1.1); an indirect pc_begin would need a load.
            guard !cie.pointerEncoding.isIndirect else { throw ELFError("FDE at \(sectionOffset) has an indirect pc_begin") }
            pcBegin = try cie.pointerEncoding.read(from: &cursor, bases: bases)
            pcRange = try cie.pointerEncoding.readStoredValue(from: &cursor)
        case .debugFrame:
            pcBegin = try cursor.u64()
            pcRange = try cursor.u64()
        }
        let (pcEnd, overflow) = pcBegin.addingReportingOverflow(pcRange)
        guard !overflow else { throw ELFError("FDE at \(sectionOffset) range \(pcBegin)+\(pcRange) overflows") }
        if cie.hasAugmentationData {
            _ = try cursor.take(try cursor.uleb128())  // the LSDA pointer, for exception handling only
        }
        return FrameDescriptionEntry(
            cie: cie, pcBegin: pcBegin, pcEnd: pcEnd, instructions: cursor,
            sectionOffset: sectionOffset
        )
    }
}
