/// The code a compiler split off one function into separate address ranges, found from the binary alone, without
/// symbols. GCC moves a function's unlikely blocks into a `.cold` part and, with partial inlining, its body into a
/// `.part` function. In a stripped binary those have FDEs of their own but no symbol, so the address of a frame
/// inside them names nothing. The eval loop of a distribution's PGO-built CPython (Debian sid's 3.13 to 3.15) runs
/// most of its samples in such a part.
///
/// A part is recognised by what its FDEs say about the jumps into it. The function's own code jumps into the
/// part (`jmp rel32` or `jcc rel32`), and the part continues the same stack frame: the CFA rule where the jump
/// leaves (CFA = rsp + N with N > 8, or rbp-based) is the CFA rule where it lands (where rbp is saved may differ: the
/// prologue may not have saved it yet), and the part's first row is not a
/// function entry's (CFA = rsp + 8). A tail call to another function leaves with CFA = rsp + 8 and lands on a
/// function entry, so it is never taken for a part. The bytes are not decoded instruction by instruction: a
/// byte sequence that only looks like a jump would have to land in a part's FDE with exactly the frame rule of
/// its source, which random bytes do not.
public enum SplitFunctionParts {
    /// At most this many parts per function (GCC makes one `.cold` part, and one `.part` body at most).
    public static let maximumParts = 8
    /// Bytes scanned per range: the largest eval loop seen (3.13's cold part in Debian sid) is 75 KiB.
    public static let maximumScannedBytes = 4 << 20

    /// The ranges (link-time addresses) of the parts split off the function whose FDE contains `entry`, excluding
    /// that FDE's own range, in the order found; empty if the file has no `.eh_frame` or no FDE contains `entry`.
    /// Parts found from parts count too (a body that jumps to its own cold part).
    public static func find(in elf: ELFFile, entry: UInt64) -> [Range<UInt64>] {
        guard let section = elf.section(named: ".eh_frame"), section.flags & ELFSection.flagCompressed == 0,
              let data = try? elf.data(of: section)
        else { return [] }
        let bases = PointerEncoding.Bases(callFrameSection: section, of: elf)
        guard let frames = try? CallFrameSection(data: data, kind: .ehFrame, bases: bases) else { return [] }
        let descriptions = frames.frameDescriptions.filter { $0.pcBegin < $0.pcEnd }.sorted { $0.pcBegin < $1.pcBegin }
        guard let first = index(containing: entry, in: descriptions) else { return [] }

        var rowsByDescription: [Int: [AddressedCallFrameRow]] = [:]
        func rows(_ number: Int) -> [AddressedCallFrameRow] {
            if let known = rowsByDescription[number] { return known }
            let found = (try? CallFrameProgram(fde: descriptions[number], bases: bases).rows()) ?? []
            rowsByDescription[number] = found
            return found
        }
        func rule(at address: UInt64, in number: Int) -> UnwindRule? {
            let table = rows(number)
            guard let row = table.last(where: { $0.address <= address }) else { return nil }
            return UnwindRule(x86_64: row.row)
        }

        var found: [Int] = []
        var queue = [first]
        var seen: Set<Int> = [first]
        while let current = queue.first, found.count < maximumParts {
            queue.removeFirst()
            let description = descriptions[current]
            let length = Int(min(description.pcEnd - description.pcBegin, UInt64(maximumScannedBytes)))
            guard let code = elf.bytes(atVirtualAddress: description.pcBegin, count: length) else { continue }
            var offset = 0
            while offset + 5 <= code.count, found.count < maximumParts {
                let jump: (displacementAt: Int, next: Int)?
                if code[offset] == 0xE9 {
                    jump = (offset + 1, offset + 5)
                } else if code[offset] == 0x0F, offset + 6 <= code.count, code[offset + 1] & 0xF0 == 0x80 {
                    jump = (offset + 2, offset + 6)
                } else {
                    jump = nil
                }
                defer { offset += 1 }
                guard let jump else { continue }
                let displacement = Int32(bitPattern: UInt32(code[jump.displacementAt]) | UInt32(code[jump.displacementAt + 1]) << 8
                    | UInt32(code[jump.displacementAt + 2]) << 16 | UInt32(code[jump.displacementAt + 3]) << 24)
                let source = description.pcBegin + UInt64(offset)
                // rel32 is signed, relative to the next instruction; addresses here are far below 2^63.
                let target = UInt64(bitPattern: Int64(bitPattern: description.pcBegin + UInt64(jump.next)) &+ Int64(displacement))
                guard !(description.pcBegin..<description.pcEnd).contains(target),
                      let landing = index(containing: target, in: descriptions), !seen.contains(landing),
                      let leaving = rule(at: source, in: current), continuesAFrame(leaving),
                      rule(at: target, in: landing)?.cfa == leaving.cfa,
                      let start = rows(landing).first, !isFunctionEntry(UnwindRule(x86_64: start.row))
                else { continue }
                seen.insert(landing)
                found.append(landing)
                queue.append(landing)
            }
        }
        return found.map { descriptions[$0].pcBegin..<descriptions[$0].pcEnd }
    }

    /// A frame set up by a function's prologue: not the CFA = rsp + 8 a function starts with.
    private static func continuesAFrame(_ rule: UnwindRule) -> Bool {
        switch rule.cfa {
        case .rspOffset(let offset): return offset > 8
        case .rbpOffset: return true
        default: return false
        }
    }

    private static func isFunctionEntry(_ rule: UnwindRule) -> Bool {
        rule.cfa == .rspOffset(8)
    }

    private static func index(containing address: UInt64, in descriptions: [FrameDescriptionEntry]) -> Int? {
        var low = 0, high = descriptions.count
        while low < high {
            let middle = low + (high - low) / 2
            if descriptions[middle].pcBegin <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0, address < descriptions[low - 1].pcEnd else { return nil }
        return low - 1
    }
}
