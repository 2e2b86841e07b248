/// Decoding of CPython line tables: instruction offset -> source line, as `PyCode_Addr2Line` does it.
///
/// The three encodings are described in CPython's `Objects/lnotab_notes.txt` (3.8-3.10) and
/// `Objects/locations.md` (3.11+). The bytes come from another process and may be torn or garbage, so
/// decoding validates the structure a real CPython always produces and treats anything else as
/// malformed: such a table answers nil for every offset.

/// How a code object encodes its line numbers.
public enum LineTableFormat: Sendable, Equatable {
    /// `co_lnotab` (3.6-3.9): pairs of (unsigned byte delta, signed line delta).
    case lnotab
    /// `co_lnotab` (2.7): pairs of (unsigned byte delta, unsigned line delta); lines only grow.
    case lnotabUnsigned
    /// `co_linetable` (3.10): pairs of (unsigned byte delta, signed line delta or -128 for "no line").
    case linetable310
    /// `co_linetable` (3.11+): location entries covering 1-8 code units each, with varint payloads.
    case locationTable

    public init?(major: Int, minor: Int) {
        if (major, minor) == (2, 7) {
            self = .lnotabUnsigned
            return
        }
        guard major == 3 else { return nil }
        switch minor {
        case 6...9: self = .lnotab
        case 10: self = .linetable310
        case 11...: self = .locationTable
        default: return nil
        }
    }
}

/// One code object's line table, decoded once into address ranges for repeated lookups.
public struct LineTable: Sendable {
    /// Bytecode bytes `start..<end` all belong to `line` (nil: CPython reports no line for them).
    struct AddressRange: Equatable, Sendable {
        var start: Int
        var end: Int
        var line: Int?
    }

    /// Contiguous ranges starting at byte 0, sorted by `start`, adjacent ranges with equal lines merged.
    /// nil when the table is malformed.
    let ranges: [AddressRange]?
    let firstLineNumber: Int

    public init(format: LineTableFormat, bytes: [UInt8], firstLineNumber: Int) {
        self.firstLineNumber = firstLineNumber
        switch format {
        case .lnotab: ranges = Self.decodeLnotab(bytes, firstLineNumber: firstLineNumber, signedLineDeltas: true)
        case .lnotabUnsigned: ranges = Self.decodeLnotab(bytes, firstLineNumber: firstLineNumber, signedLineDeltas: false)
        case .linetable310: ranges = Self.decodeLinetable310(bytes, firstLineNumber: firstLineNumber)
        case .locationTable: ranges = Self.decodeLocationTable(bytes, firstLineNumber: firstLineNumber)
        }
    }

    /// The line of the instruction starting at `byteOffset` in the bytecode (co_code / co_code_adaptive),
    /// or nil when the table gives none.
    public func line(forByteOffset byteOffset: Int) -> Int? {
        guard let ranges else { return nil }
        // PyCode_Addr2Line answers co_firstlineno for any negative offset without reading the table
        // (a frame that has not executed anything yet reports the instruction before the first one).
        if byteOffset < 0 { return firstLineNumber }
        // Binary search for the first range ending after the offset; ranges are contiguous from 0, so
        // it contains the offset. Past the last range CPython's range walk fails and it answers -1.
        var low = 0
        var high = ranges.count
        while low < high {
            let middle = (low + high) / 2
            if ranges[middle].end <= byteOffset {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return low < ranges.count ? ranges[low].line : nil
    }

    // MARK: - 2.7, 3.6-3.9

    private static func decodeLnotab(_ bytes: [UInt8], firstLineNumber: Int, signedLineDeltas: Bool) -> [AddressRange]? {
        // CPython only ever writes whole pairs.
        guard bytes.count % 2 == 0 else { return nil }
        var ranges = RangeBuilder()
        var line = firstLineNumber
        var start = 0
        for pairStart in stride(from: 0, to: bytes.count, by: 2) {
            let byteDelta = Int(bytes[pairStart])
            // 3.8's PyCode_Addr2Line stops at the first pair whose address lies beyond the offset,
            // before applying that pair's line delta: the delta belongs to the code after the range.
            ranges.append(start: start, end: start + byteDelta, line: line)
            start += byteDelta
            line += signedLineDeltas ? Int(Int8(bitPattern: bytes[pairStart + 1])) : Int(bytes[pairStart + 1])
        }
        // After the last pair the loop simply runs out and returns the accumulated line, whatever the
        // offset, so the final line extends without bound.
        ranges.append(start: start, end: Int.max, line: line)
        return ranges.ranges
    }

    // MARK: - 3.10

    private static func decodeLinetable310(_ bytes: [UInt8], firstLineNumber: Int) -> [AddressRange]? {
        guard bytes.count % 2 == 0 else { return nil }
        var ranges = RangeBuilder()
        var line = firstLineNumber
        var start = 0
        for pairStart in stride(from: 0, to: bytes.count, by: 2) {
            let byteDelta = Int(bytes[pairStart])
            let lineDelta = Int8(bitPattern: bytes[pairStart + 1])
            // -128 marks "no line" and leaves the running line untouched. Zero-width pairs (used to
            // split line deltas beyond ±127) produce no range but still move the running line.
            let rangeLine: Int?
            if lineDelta == -128 {
                rangeLine = nil
            } else {
                line += Int(lineDelta)
                rangeLine = line
            }
            ranges.append(start: start, end: start + byteDelta, line: rangeLine)
            start += byteDelta
        }
        return ranges.ranges
    }

    // MARK: - 3.11+

    /// The 4-bit code in a location entry's first byte.
    private enum LocationCode {
        static let shortForms: ClosedRange<UInt8> = 0...9
        static let oneLineForms: ClosedRange<UInt8> = 10...12
        static let noColumns: UInt8 = 13
        static let long: UInt8 = 14
        static let none: UInt8 = 15
    }

    private static func decodeLocationTable(_ bytes: [UInt8], firstLineNumber: Int) -> [AddressRange]? {
        var reader = LocationEntryReader(bytes: bytes)
        var ranges = RangeBuilder()
        var line = firstLineNumber
        var start = 0
        while !reader.isAtEnd {
            // First byte: 1 | code (4 bits) | code units covered - 1 (3 bits).
            guard let header = reader.readHeader() else { return nil }
            let code = (header >> 3) & 0x0F
            let end = start + (Int(header & 0x07) + 1) * 2
            var rangeLine: Int? = line
            // The line delta is relative to the previous entry's start line. Only its line matters
            // here; the columns and end line are read only to check the entry is well formed.
            switch code {
            case LocationCode.shortForms:
                guard reader.skipPayloadBytes(1) else { return nil }
            case LocationCode.oneLineForms:
                line += Int(code - LocationCode.oneLineForms.lowerBound)
                rangeLine = line
                guard reader.skipPayloadBytes(2) else { return nil }
            case LocationCode.noColumns:
                guard let delta = reader.readSignedVarint() else { return nil }
                line += delta
                rangeLine = line
            case LocationCode.long:
                guard let delta = reader.readSignedVarint(),
                      reader.readVarint() != nil,  // end line - start line
                      reader.readVarint() != nil,  // start column + 1
                      reader.readVarint() != nil  // end column + 1
                else { return nil }
                line += delta
                rangeLine = line
            default:  // LocationCode.none: no location; the running line is kept for the next entry.
                rangeLine = nil
            }
            ranges.append(start: start, end: end, line: rangeLine)
            start = end
        }
        return ranges.ranges
    }
}

/// Collects contiguous ranges, dropping empty ones and merging neighbours with the same line so lookups
/// search as few ranges as possible.
private struct RangeBuilder {
    private(set) var ranges: [LineTable.AddressRange] = []

    mutating func append(start: Int, end: Int, line: Int?) {
        guard end > start else { return }
        if let last = ranges.last, last.line == line {
            ranges[ranges.count - 1].end = end
        } else {
            ranges.append(LineTable.AddressRange(start: start, end: end, line: line))
        }
    }
}

/// Reads 3.11+ location entries. An entry is one byte with bit 7 set followed by payload bytes with
/// bit 7 clear; every read fails (returns nil / false) instead of crossing into the next entry or past
/// the end of the table.
private struct LocationEntryReader {
    let bytes: [UInt8]
    private var index = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { index >= bytes.count }

    mutating func readHeader() -> UInt8? {
        guard index < bytes.count, bytes[index] & 0x80 != 0 else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    private mutating func readPayloadByte() -> UInt8? {
        guard index < bytes.count, bytes[index] & 0x80 == 0 else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func skipPayloadBytes(_ count: Int) -> Bool {
        for _ in 0..<count {
            guard readPayloadByte() != nil else { return false }
        }
        return true
    }

    /// Little-endian groups of 6 bits, bit 6 set on all but the last byte. CPython accumulates into an
    /// unsigned int, so a value needing more than 32 bits only comes from a corrupt table.
    mutating func readVarint() -> UInt32? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard shift < 32, let byte = readPayloadByte() else { return nil }
            value |= UInt64(byte & 0x3F) << shift
            if byte & 0x40 == 0 { break }
            shift += 6
        }
        return UInt32(exactly: value)
    }

    /// A varint whose lowest bit is the sign and the remaining bits the magnitude.
    mutating func readSignedVarint() -> Int? {
        guard let value = readVarint() else { return nil }
        let magnitude = Int(value >> 1)
        return value & 1 == 0 ? magnitude : -magnitude
    }
}
