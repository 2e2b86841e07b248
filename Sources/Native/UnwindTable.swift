/// How to find the caller's frame at one instruction (x86_64), as the BPF unwinder will apply it: compute the CFA,
/// read the return address at CFA - 8, restore rbp, and continue with rsp = CFA.
public struct UnwindRule: Hashable, Sendable {
    public enum CFA: Hashable, Sendable {
        /// CFA = rsp + offset.
        case rspOffset(Int32)
        /// CFA = rbp + offset.
        case rbpOffset(Int32)
        /// A lazy-binding PLT entry: CFA = rsp + 8 + ((rip & 15) >= threshold ? 8 : 0), because the entry pushes the
        /// relocation index partway through its 16 bytes. The threshold is the offset of the instruction after that
        /// push: 11 for ld's classic PLT (`jmp *got; push idx; jmp plt0`), 10 for its lazy IBT PLT
        /// (`endbr64; push idx; bnd jmp plt0`).
        case plt(threshold: UInt8)
        /// The return address is undefined (`DW_CFA_undefined` on the return address column): the outermost frame,
        /// such as `_start` or a thread's first function after `clone`.
        case endOfStack
        /// Any other CFA expression or register, a return address not at CFA - 8, or an rbp rule that cannot be
        /// applied: the unwinder stops here, visibly.
        case unsupported
    }

    public enum RBP: Hashable, Sendable {
        /// rbp still holds the caller's value.
        case unchanged
        /// The caller's rbp is saved at CFA + offset.
        case atCFA(Int32)
    }

    public var cfa: CFA
    /// Meaningful for `.rspOffset`, `.rbpOffset` and `.plt`; `.unchanged` otherwise.
    public var rbp: RBP

    public init(cfa: CFA, rbp: RBP) {
        self.cfa = cfa
        self.rbp = rbp
    }

    static let unsupported = UnwindRule(cfa: .unsupported, rbp: .unchanged)
    static let endOfStack = UnwindRule(cfa: .endOfStack, rbp: .unchanged)

    private static let stackPointer: UInt64 = 7

    /// Compiles one row of DWARF rules into the form the unwinder applies (x86_64 DWARF register numbers, psABI
    /// §3.6.2 Figure 3.36: rbp = 6, rsp = 7, return address = 16).
    init(x86_64 row: CallFrameRow) {
        switch row.returnAddress {
        case .undefined:
            self = .endOfStack
            return
        case .offset(-8):
            break  // `call` pushed it just below the caller's rsp, which is the CFA
        default:
            self = .unsupported
            return
        }
        let rbp: RBP
        switch row.framePointer {
        case .unspecified, .sameValue: rbp = .unchanged
        case let .offset(offset):
            guard let offset = Int32(exactly: offset) else { self = .unsupported; return }
            rbp = .atCFA(offset)
        case .undefined, .valueOffset, .register, .expression, .valueExpression:
            self = .unsupported
            return
        }
        let cfa: CFA
        switch row.cfa {
        case let .registerOffset(Self.stackPointer, offset):
            guard let offset = Int32(exactly: offset) else { self = .unsupported; return }
            cfa = .rspOffset(offset)
        case let .registerOffset(CallFrameProgram.x86_64FramePointer, offset):
            guard let offset = Int32(exactly: offset) else { self = .unsupported; return }
            cfa = .rbpOffset(offset)
        case let .expression(bytes):
            guard let threshold = Self.pltThreshold(bytes) else { self = .unsupported; return }
            cfa = .plt(threshold: threshold)
        case .registerOffset, nil:
            self = .unsupported
            return
        }
        self.init(cfa: cfa, rbp: rbp)
    }

    /// The push threshold if `expression` is the CFA expression GNU ld emits for lazy PLT entries:
    /// `DW_OP_breg7 (rsp) 8; DW_OP_breg16 (rip) 0; DW_OP_lit15; DW_OP_and; DW_OP_lit<threshold>; DW_OP_ge;
    /// DW_OP_lit3; DW_OP_shl; DW_OP_plus` (DWARF 5 §7.7.1 opcode values).
    static func pltThreshold(_ expression: ArraySlice<UInt8>) -> UInt8? {
        var cursor = DWARFCursor(section: expression, position: expression.startIndex, end: expression.endIndex)
        let breg7: UInt8 = 0x77, breg16: UInt8 = 0x80, lit0: UInt8 = 0x30, lit3: UInt8 = 0x33, lit15: UInt8 = 0x3f
        let and: UInt8 = 0x1a, ge: UInt8 = 0x2a, shl: UInt8 = 0x24, plus: UInt8 = 0x22
        guard (try? cursor.u8()) == breg7, (try? cursor.sleb128()) == 8,
              (try? cursor.u8()) == breg16, (try? cursor.sleb128()) == 0,
              (try? cursor.u8()) == lit15, (try? cursor.u8()) == and,
              let threshold = try? cursor.u8(), (lit0...lit15).contains(threshold),
              (try? cursor.u8()) == ge, (try? cursor.u8()) == lit3, (try? cursor.u8()) == shl, (try? cursor.u8()) == plus,
              cursor.isAtEnd
        else { return nil }
        return threshold - lit0
    }
}

/// The unwind rules of one ELF file for every address its call frame information covers, compiled from `.eh_frame`
/// and `.debug_frame` into a sorted table the BPF unwinder can binary-search.
/// Addresses are link-time virtual addresses: subtract the load bias from a runtime address before lookup.
public struct UnwindTable: Sendable {
    public struct Entry: Hashable, Sendable {
        public let address: UInt64
        /// Nil where no FDE covers the address (a gap between FDEs, or past the last one).
        public let rule: UnwindRule?

        public init(address: UInt64, rule: UnwindRule?) {
            self.address = address
            self.rule = rule
        }
    }

    /// Sorted by strictly increasing address; each entry's rule holds from its address up to the next entry's
    /// address. Gaps between FDEs are explicit entries with a nil rule, and the last entry (if any) is such a gap.
    /// Adjacent entries never have equal rules.
    public let entries: [Entry]
    /// FDEs left out, and why: malformed, or using an instruction or encoding not supported here. Their addresses
    /// have no rule.
    public let skippedFrameDescriptions: [SkippedFrameDescription]

    public struct SkippedFrameDescription: Hashable, Sendable {
        /// Where the FDE starts in its section.
        public let sectionOffset: Int
        public let reason: String
    }

    /// Reads the file's `.eh_frame` and its `.debug_frame`, either or both: where both describe an address,
    /// `.eh_frame` wins (it is what the program's own unwinder uses); `.debug_frame` fills the addresses `.eh_frame`
    /// leaves out (code built with `-fno-asynchronous-unwind-tables -g`). Throws `ELFError` if the file has neither,
    /// if a section is compressed or cannot be read, or if an entry's length runs past its section; individual
    /// malformed FDEs are skipped instead (see `skippedFrameDescriptions`).
    public init(elf: ELFFile) throws {
        try self.init(sections: try CallFrameSections(elf: elf))
    }

    /// The table of the sections read from a file.
    public init(sections: CallFrameSections) throws {
        let tables = try sections.sections.map { section in
            try UnwindTable(callFrameSection: section.data, kind: section.kind, bases: section.bases)
        }
        self = tables.count == 1 ? tables[0] : try UnwindTable(preferring: tables[0], fillingGapsFrom: tables[1])
    }

    /// `primary`'s rules, and `secondary`'s where `primary` has none.
    init(preferring primary: UnwindTable, fillingGapsFrom secondary: UnwindTable) throws {
        let boundaries = Set(primary.entries.map(\.address)).union(secondary.entries.map(\.address)).sorted()
        var builder = EntryBuilder()
        for address in boundaries {
            builder.append(address, rule: primary.rule(at: address) ?? secondary.rule(at: address))
        }
        try Self.checkSpan(builder.entries)
        self.entries = builder.entries
        self.skippedFrameDescriptions = primary.skippedFrameDescriptions + secondary.skippedFrameDescriptions
    }

    private static func checkSpan(_ entries: [Entry]) throws {
        if let first = entries.first, let last = entries.last, last.address - first.address > UInt64(UInt32.max) {
            throw ELFError("call frame information spans more than 4 GiB, which the 32-bit address deltas cannot encode")
        }
    }

    init(callFrameSection data: ArraySlice<UInt8>, kind: CallFrameSectionKind, bases: PointerEncoding.Bases) throws {
        let section = try CallFrameSection(data: data, kind: kind, bases: bases)
        var skipped = section.skippedFrameDescriptions
        var covered: [(fde: FrameDescriptionEntry, rows: [AddressedCallFrameRow])] = []
        for fde in section.frameDescriptions where fde.pcBegin < fde.pcEnd {
            do {
                covered.append((fde, try CallFrameProgram(fde: fde, bases: bases).rows()))
            } catch let error as ELFError {
                skipped.append(SkippedFrameDescription(sectionOffset: fde.sectionOffset, reason: error.description))
            }
        }
        covered.sort { $0.fde.pcBegin < $1.fde.pcBegin }

        var builder = EntryBuilder()
        var coveredEnd: UInt64?
        for (fde, rows) in covered {
            // Overlapping FDEs are malformed (no two may describe one instruction); the earlier one keeps the overlap.
            var start = fde.pcBegin
            if let coveredEnd {
                guard fde.pcEnd > coveredEnd else { continue }
                if start > coveredEnd { builder.append(coveredEnd, rule: nil) }
                start = max(start, coveredEnd)
            }
            for (index, row) in rows.enumerated() {
                let rowEnd = index + 1 < rows.count ? rows[index + 1].address : fde.pcEnd
                guard rowEnd > start else { continue }
                builder.append(max(row.address, start), rule: UnwindRule(x86_64: row.row))
            }
            coveredEnd = fde.pcEnd
        }
        if let coveredEnd { builder.append(coveredEnd, rule: nil) }
        try Self.checkSpan(builder.entries)
        self.entries = builder.entries
        self.skippedFrameDescriptions = skipped
    }

    /// Appends entries so that addresses strictly increase (a later entry at the same address replaces the earlier
    /// one) and no two neighbours have the same rule.
    private struct EntryBuilder {
        var entries: [Entry] = []

        mutating func append(_ address: UInt64, rule: UnwindRule?) {
            if let last = entries.last, last.address == address {
                entries.removeLast()
            }
            if let last = entries.last, last.rule == rule { return }
            entries.append(Entry(address: address, rule: rule))
        }
    }

    /// The rule at link-time address `address`; nil if no FDE covers it.
    public func rule(at address: UInt64) -> UnwindRule? {
        // The last entry whose address is <= `address`.
        var low = 0, high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].address <= address { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : entries[low - 1].rule
    }

    /// The distinct rules the table uses.
    public var distinctRules: Set<UnwindRule> {
        Set(entries.compactMap(\.rule))
    }

    /// Bytes of the compact encoding the BPF side will use: per entry a 4-byte address delta from the first entry's
    /// address (the init refuses spans over 4 GiB) and a 4-byte rule index, reserved index for "no rule"; plus per
    /// distinct rule 12 bytes (CFA kind, rbp kind, 2 padding bytes, CFA offset or PLT threshold as Int32, rbp offset
    /// as Int32).
    public var sizeInBytes: Int {
        entries.count * 8 + distinctRules.count * 12
    }
}

/// Everything an `UnwindTable` is compiled from: a file's `.eh_frame` and `.debug_frame` (either or both), with the
/// addresses their pointers are relative to. Equal inputs compile to equal tables, so `digest` can key a cache of
/// compiled tables.
public struct CallFrameSections {
    struct Section {
        var kind: CallFrameSectionKind
        var data: ArraySlice<UInt8>
        var bases: PointerEncoding.Bases
    }

    /// `.eh_frame` first.
    let sections: [Section]

    /// Throws `ELFError` if the file has neither section, or if one is compressed or cannot be read.
    public init(elf: ELFFile) throws {
        let found = [(CallFrameSectionKind.ehFrame, ".eh_frame"), (.debugFrame, ".debug_frame")]
            .compactMap { kind, name in elf.section(named: name).map { (kind, $0) } }
        guard !found.isEmpty else {
            throw ELFError("\(elf.path ?? "ELF file") has neither .eh_frame nor .debug_frame")
        }
        sections = try found.map { kind, section in
            guard section.flags & ELFSection.flagCompressed == 0 else { throw ELFError("\(section.name) is compressed") }
            guard let data = try elf.data(of: section) else { throw ELFError("\(section.name) has no data in the file") }
            return Section(kind: kind, data: data, bases: PointerEncoding.Bases(callFrameSection: section, of: elf))
        }
    }

    /// SHA-256 of the sections' bytes and bases, after `salt` (what else the compiled form depends on: the compiler's
    /// version).
    public func digest(salt: [UInt8]) -> [UInt8] {
        var hash = SHA256()
        hash.update(UInt64(salt.count))
        hash.update(salt)
        for section in sections {
            hash.update(section.kind == .ehFrame ? 1 : 2)
            hash.update(section.bases.sectionAddress)
            // A base the file lacks is not a base at 0.
            hash.update(section.bases.text.map { [1, $0] } ?? [0, 0])
            hash.update(section.bases.data.map { [1, $0] } ?? [0, 0])
            hash.update(UInt64(section.data.count))
            hash.update(section.data)
        }
        return hash.finalize()
    }
}

private extension SHA256 {
    mutating func update(_ values: [UInt64]) {
        for value in values { update(value) }
    }
}
