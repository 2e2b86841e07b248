extension ELFFile {
    /// The load bias (runtime address minus link-time address) of this file in a process, given that process's
    /// mappings *of this file* (select them by path or device+inode first). A symbol's runtime address is
    /// `bias &+ symbol.value`; the bias may wrap for files loaded below their link address.
    ///
    /// Each mapping that lies inside a `PT_LOAD` segment's page range, with the same execute permission, implies a
    /// bias; the bias implied by the most mappings wins. Matching every mapping rather than only the first segment
    /// copes with a first `PT_LOAD` at a non-zero offset, with callers that only pass some of the mappings, with
    /// segments split by RELRO `mprotect`, and with linkers (lld) that let two segments share a file page, where
    /// one mapping fits two segments and only the vote tells them apart. `ET_EXEC` files are not relocated:
    /// the bias is 0, and nil if no mapping agrees with that.
    public func loadBias(mappings: [MemoryMapping]) -> UInt64? {
        loadLayout.loadBias(mappings: mappings)
    }

    /// What `loadBias(mappings:)` needs of the file, small enough to keep after the file's bytes are released.
    public var loadLayout: ELFLoadLayout {
        ELFLoadLayout(isFixedAddress: type == Self.typeExecutable, segments: loadSegments)
    }
}

/// The `PT_LOAD` segments of an ELF file and whether it is `ET_EXEC`: enough to compute its load bias in any process.
public struct ELFLoadLayout: Sendable, Equatable {
    /// `ET_EXEC`: loaded at its link-time addresses.
    public let isFixedAddress: Bool
    public let segments: [ELFProgramHeader]

    /// See `ELFFile.loadBias(mappings:)`.
    public func loadBias(mappings: [MemoryMapping]) -> UInt64? {
        var votes: [UInt64: Int] = [:]
        for mapping in mappings {
            for segment in segments {
                if let bias = Self.bias(implying: mapping, isInside: segment) { votes[bias, default: 0] += 1 }
            }
        }
        if isFixedAddress {
            return votes[0] != nil ? 0 : nil
        }
        // Ties are broken towards the lower bias so that the answer does not depend on dictionary order.
        return votes.max { ($0.value, $1.key) < ($1.value, $0.key) }?.key
    }

    private static let pageSize: UInt64 = 4096

    /// The bias under which `mapping` is (part of) the kernel's mapping of `segment`, or nil if it cannot be.
    /// The kernel maps a segment from the page containing its first byte, so file offset `o` in the segment's
    /// pages lands at `bias + pageVirtualAddress + (o - pageOffset)`.
    private static func bias(implying mapping: MemoryMapping, isInside segment: ELFProgramHeader) -> UInt64? {
        let pageMask = ~(pageSize - 1)
        let pageOffset = segment.offset & pageMask
        let pageVirtualAddress = segment.virtualAddress & pageMask
        let (fileEnd, fileEndOverflow) = segment.offset.addingReportingOverflow(segment.fileSize)
        let (memoryEnd, memoryEndOverflow) = segment.virtualAddress.addingReportingOverflow(segment.memorySize)
        guard !fileEndOverflow, !memoryEndOverflow,
              mapping.executable == segment.isExecutable,
              mapping.start < mapping.end,
              mapping.offset >= pageOffset, mapping.offset < fileEnd
        else { return nil }

        let linkTimeStart = pageVirtualAddress &+ (mapping.offset - pageOffset)
        // The mapping must not extend past the segment's last page.
        let (mappedEnd, mappedEndOverflow) = linkTimeStart.addingReportingOverflow(mapping.end - mapping.start)
        let (segmentPagesEnd, segmentPagesEndOverflow) = memoryEnd.addingReportingOverflow(pageSize - 1)
        guard !mappedEndOverflow, !segmentPagesEndOverflow, mappedEnd <= segmentPagesEnd & pageMask else { return nil }
        return mapping.start &- linkTimeStart
    }
}
