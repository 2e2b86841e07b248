import Foundation

@testable import Native

/// One row of `readelf --debug-dump=frames-interp`: the rules binutils computes for an FDE from `location` on.
struct ReadelfFrameRow {
    /// The FDE's `pc=BEGIN..END`.
    let fdeRange: Range<UInt64>
    let location: UInt64
    /// `rsp+16`, `rbp+16`, `exp` (any expression), or another register (`rdi+0`).
    let cfa: String
    /// The rbp column: nil when the FDE never mentions rbp; `u` when not saved yet (binutils prints the same `u` for
    /// `DW_CFA_undefined`, which none of the tested binaries use on rbp); `c-16`; `r9 (r9)`; `exp`...
    let rbp: String?
    /// The return address column (`ra`), same notation; nil if no rule names it.
    let returnAddress: String?
}

/// The rows binutils prints for every FDE of `path`'s `.eh_frame`. Within an FDE only the last row for a location is
/// kept: an advance by 0 makes readelf print the state before the remaining instructions at that location.
func readelfFrameRows(_ path: String) throws -> [ReadelfFrameRow] {
    // no-follow-links: otherwise readelf also dumps the separate debug file (libc6-dbg), whose .eh_frame is NOBITS,
    // and exits 1.
    let output = try runCommand("/usr/bin/readelf", ["--debug-dump=no-follow-links,frames-interp", path])
    var rows: [ReadelfFrameRow] = []
    var fdeRange: Range<UInt64>?
    var columns: [String] = []
    var inEHFrame = false
    for line in output.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("Contents of the ") {
            inEHFrame = line.contains(".eh_frame")
            continue
        }
        guard inEHFrame else { continue }
        let fields = line.split(separator: " ")
        if fields.count >= 4, fields[3] == "CIE" {
            fdeRange = nil
        } else if fields.count >= 6, fields[3] == "FDE", let pc = fields.first(where: { $0.hasPrefix("pc=") }) {
            let bounds = pc.dropFirst(3).split(separator: ".", omittingEmptySubsequences: true)
            guard bounds.count == 2, let begin = UInt64(bounds[0], radix: 16), let end = UInt64(bounds[1], radix: 16) else {
                throw TestFailure("unparsable FDE line: \(line)")
            }
            fdeRange = begin..<end
            columns = []
        } else if fields.first == "LOC" {
            columns = fields.map(String.init)
        } else if let range = fdeRange, let first = fields.first, first.count == 16, let location = UInt64(first, radix: 16) {
            // Register rules print as "r9 (r9)": the parenthesised name belongs to the previous value.
            var values: [String] = []
            for field in fields {
                if field.hasPrefix("("), !values.isEmpty { values[values.count - 1] += " " + field } else { values.append(String(field)) }
            }
            guard values.count == columns.count else { throw TestFailure("row does not match columns \(columns): \(line)") }
            func value(_ column: String) -> String? { columns.firstIndex(of: column).map { values[$0] } }
            let row = ReadelfFrameRow(
                fdeRange: range, location: location, cfa: values[1], rbp: value("rbp"), returnAddress: value("ra")
            )
            if let last = rows.last, last.fdeRange == range, last.location == location { rows.removeLast() }
            rows.append(row)
        }
    }
    return rows
}

extension ReadelfFrameRow {
    /// The rule `UnwindTable` must give for this row. `pltRanges` are where an expression CFA is ld's PLT
    /// expression; binutils prints every expression as `exp`. The tested binaries use ld's classic lazy PLT,
    /// whose expression compares with `DW_OP_lit11` (`readelf --debug-dump=frames` shows it).
    func expectedRule(pltRanges: [Range<UInt64>]) -> UnwindRule {
        switch returnAddress {
        case "u": return UnwindRule(cfa: .endOfStack, rbp: .unchanged)
        case "c-8": break
        default: return UnwindRule(cfa: .unsupported, rbp: .unchanged)
        }
        let expectedRBP: UnwindRule.RBP
        switch rbp {
        case nil, "u", "s": expectedRBP = .unchanged
        case let saved? where saved.hasPrefix("c"):
            guard let offset = Int32(saved.dropFirst()) else { return UnwindRule(cfa: .unsupported, rbp: .unchanged) }
            expectedRBP = .atCFA(offset)
        default: return UnwindRule(cfa: .unsupported, rbp: .unchanged)
        }
        let expectedCFA: UnwindRule.CFA
        if cfa == "exp" {
            guard pltRanges.contains(where: { $0.contains(location) }) else { return UnwindRule(cfa: .unsupported, rbp: .unchanged) }
            expectedCFA = .plt(threshold: 11)
        } else if cfa.hasPrefix("rsp"), let offset = Int32(cfa.dropFirst(3)) {
            expectedCFA = .rspOffset(offset)
        } else if cfa.hasPrefix("rbp"), let offset = Int32(cfa.dropFirst(3)) {
            expectedCFA = .rbpOffset(offset)
        } else {
            return UnwindRule(cfa: .unsupported, rbp: .unchanged)
        }
        return UnwindRule(cfa: expectedCFA, rbp: expectedRBP)
    }
}
