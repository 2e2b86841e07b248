/// The address ranges of the FDEs of one file's `.eh_frame`, sorted: where each function begins and ends according
/// to the call frame information, whether or not a symbol names it. Compilers emit one FDE per function (and one per
/// part they split off it, such as a `.cold` part), so in a stripped file, whose symbol tables name only the exported
/// functions if any, the start of the FDE covering an address is what stands for its function: the profiler names
/// such a frame `file+0x<FDE start>`, and every address inside the function adds up in that one frame.
///
/// Addresses are link-time virtual addresses. Only `.eh_frame` is read: a stripped file has no `.debug_frame`, and a
/// file that has one has symbols for what it describes.
public struct FrameDescriptionRanges: Sendable {
    /// One FDE's `[pc_begin, pc_begin + pc_range)`.
    public struct Range: Hashable, Sendable {
        public let start: UInt64
        public let end: UInt64
    }

    /// Sorted by start, non-empty and non-overlapping: 16 bytes per FDE (a large C++ library has ~500,000 of them;
    /// the walk's `CallFrameSection.maximumEntryCount` bounds a hostile file to 64 MB).
    public let ranges: [Range]

    /// The FDE ranges of `elf`'s `.eh_frame`; empty when it has none. Throws `ELFError` when the section is compressed
    /// or cannot be read, or when an entry's length runs past the section (nothing after it can be located); an FDE
    /// that does not parse is left out, as in `UnwindTable`.
    public init(elf: ELFFile) throws {
        guard let section = elf.section(named: ".eh_frame") else {
            self.init(ranges: [])
            return
        }
        guard section.flags & ELFSection.flagCompressed == 0 else { throw ELFError(".eh_frame is compressed") }
        guard let data = try elf.data(of: section) else {
            self.init(ranges: [])
            return
        }
        try self.init(callFrameSection: data, kind: .ehFrame, bases: PointerEncoding.Bases(callFrameSection: section, of: elf))
    }

    init(callFrameSection data: ArraySlice<UInt8>, kind: CallFrameSectionKind, bases: PointerEncoding.Bases) throws {
        var found: [Range] = []
        _ = try CallFrameSection.forEachFrameDescription(in: data, kind: kind, bases: bases) { description in
            // An empty FDE covers no instruction (linkers leave them for discarded functions, at pc_begin 0).
            guard description.pcBegin < description.pcEnd else { return }
            found.append(Range(start: description.pcBegin, end: description.pcEnd))
        }
        // Linkers write FDEs in input-file order, which is usually but not always address order.
        found.sort { ($0.start, $0.end) < ($1.start, $1.end) }
        var ranges: [Range] = []
        ranges.reserveCapacity(found.count)
        for range in found {
            // Overlapping FDEs are malformed (no two may describe one instruction). The earlier one is kept whole and
            // the later one dropped, rather than cut, so that every range still starts where an FDE starts.
            if let last = ranges.last, range.start < last.end { continue }
            ranges.append(range)
        }
        self.init(ranges: ranges)
    }

    private init(ranges: [Range]) {
        self.ranges = ranges
    }

    /// The range of the FDE covering `address`; nil when none does (padding between functions, other sections).
    public func range(containing address: UInt64) -> Range? {
        guard let index = ranges.lastIndex(withKeyAtMost: address, key: \.start), address < ranges[index].end else { return nil }
        return ranges[index]
    }
}

extension PointerEncoding.Bases {
    /// The bases FDE addresses in `section` (`.eh_frame` or `.debug_frame`) of `elf` are relative to: the section's
    /// own address, `.text` and `.got`.
    init(callFrameSection section: ELFSection, of elf: ELFFile) {
        self.init(
            sectionAddress: section.address, text: elf.section(named: ".text")?.address, data: elf.section(named: ".got")?.address)
    }
}
