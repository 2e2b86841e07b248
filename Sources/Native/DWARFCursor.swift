/// A forward reader over a byte range of a DWARF section, little-endian, that throws `ELFError` instead of reading
/// past `end`. Call frame sections come from files that may be hostile, so every length and offset read from them is
/// checked here before it indexes anything.
struct DWARFCursor {
    /// The whole section; positions are indices into it.
    let section: ArraySlice<UInt8>
    private(set) var position: Int
    /// One past the last byte this cursor may read (the end of the current entry, not necessarily of the section).
    let end: Int

    init(section: ArraySlice<UInt8>, position: Int, end: Int) {
        precondition(section.startIndex <= position && position <= end && end <= section.endIndex)
        self.section = section
        self.position = position
        self.end = end
    }

    var isAtEnd: Bool { position >= end }
    /// The position as an offset from the start of the section.
    var sectionOffset: Int { position - section.startIndex }

    mutating func u8() throws -> UInt8 { UInt8(truncatingIfNeeded: try fixed(width: 1)) }
    mutating func u16() throws -> UInt16 { UInt16(truncatingIfNeeded: try fixed(width: 2)) }
    mutating func u32() throws -> UInt32 { UInt32(truncatingIfNeeded: try fixed(width: 4)) }
    mutating func u64() throws -> UInt64 { try fixed(width: 8) }

    private mutating func fixed(width: Int) throws -> UInt64 {
        let bytes = try take(width)
        var value: UInt64 = 0, shift: UInt64 = 0
        for byte in bytes {
            value |= UInt64(byte) << shift
            shift += 8
        }
        return value
    }

    /// An unsigned LEB128 number (DWARF 5 §7.6). Longer than 10 bytes cannot be a 64-bit value and is refused, so a
    /// run of continuation bytes cannot make this loop long; bits beyond 64 are refused rather than dropped.
    mutating func uleb128() throws -> UInt64 {
        var result: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            let byte = try u8()
            let payload = UInt64(byte & 0x7f)
            guard shift < 63 || payload >> (64 - shift) == 0 else { throw ELFError("ULEB128 value exceeds 64 bits at \(sectionOffset - 1)") }
            result |= payload << shift
            if byte & 0x80 == 0 { return result }
        }
        throw ELFError("ULEB128 value longer than 10 bytes at \(sectionOffset)")
    }

    /// A signed LEB128 number (DWARF 5 §7.6): sign-extended from the last byte's bit 6.
    mutating func sleb128() throws -> Int64 {
        var result: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            let byte = try u8()
            if shift < 64 { result |= UInt64(byte & 0x7f) << shift }
            if byte & 0x80 == 0 {
                let width = shift + 7
                if width < 64, byte & 0x40 != 0 { result |= ~0 << width }
                return Int64(bitPattern: result)
            }
        }
        throw ELFError("SLEB128 value longer than 10 bytes at \(sectionOffset)")
    }

    /// The next `count` bytes.
    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= end - position else {
            throw ELFError("\(count) bytes at \(sectionOffset) run past the end of the entry (\(end - section.startIndex))")
        }
        defer { position += count }
        return section[position..<(position + count)]
    }

    /// The next `count` bytes, with `count` as read from the file.
    mutating func take(_ count: UInt64) throws -> ArraySlice<UInt8> {
        guard count <= UInt64(end - position) else {
            throw ELFError("\(count) bytes at \(sectionOffset) run past the end of the entry (\(end - section.startIndex))")
        }
        return try take(Int(count))
    }

    /// A NUL-terminated string within the entry, without its NUL.
    mutating func nulTerminatedBytes() throws -> ArraySlice<UInt8> {
        guard let nul = section[position..<end].firstIndex(of: 0) else {
            throw ELFError("string at \(sectionOffset) is not terminated within its entry")
        }
        defer { position = nul + 1 }
        return section[position..<nul]
    }
}

/// A `DW_EH_PE_*` pointer encoding (LSB 5.0 "DWARF Extensions", §10.5.1): the low nibble says how the value is stored,
/// bits 4-6 what it is relative to, bit 7 that it addresses the pointer rather than being it.
struct PointerEncoding: Equatable {
    let rawValue: UInt8

    /// `DW_EH_PE_absptr`: an 8-byte absolute address on x86_64, the default when a CIE has no 'R' augmentation.
    static let absolute = PointerEncoding(rawValue: 0x00)
    /// `DW_EH_PE_omit`: no value present.
    static let omit = PointerEncoding(rawValue: 0xff)

    private var format: UInt8 { rawValue & 0x0f }
    private var application: UInt8 { rawValue & 0x70 }
    var isIndirect: Bool { rawValue & 0x80 != 0 }

    /// The addresses that relative encodings are relative to. `DW_EH_PE_funcrel` and `DW_EH_PE_aligned` are never
    /// emitted for x86_64 `.eh_frame` and are refused.
    struct Bases {
        /// `sh_addr` of the section being read, for `DW_EH_PE_pcrel` (relative to the address of the value itself).
        var sectionAddress: UInt64
        /// `DW_EH_PE_textrel`: relative to the start of `.text`.
        var text: UInt64?
        /// `DW_EH_PE_datarel`: relative to the start of `.got` (LSB §10.5.1, "the .got or .eh_frame_hdr section";
        /// the latter applies only to `.eh_frame_hdr` itself).
        var data: UInt64?
    }

    /// Reads a value stored in this encoding and applies its base. An indirect value is returned as the address
    /// it points at: it is only used for the personality routine, which the unwinder never dereferences.
    func read(from cursor: inout DWARFCursor, bases: Bases) throws -> UInt64 {
        let valueAddress = bases.sectionAddress &+ UInt64(cursor.sectionOffset)
        let stored = try readStoredValue(from: &cursor)
        switch application {
        case 0x00: return stored
        case 0x10: return valueAddress &+ stored
        case 0x20:
            guard let text = bases.text else { throw ELFError("DW_EH_PE_textrel pointer but the file has no .text") }
            return text &+ stored
        case 0x30:
            guard let data = bases.data else { throw ELFError("DW_EH_PE_datarel pointer but the file has no .got") }
            return data &+ stored
        default:
            throw ELFError("unsupported pointer encoding 0x\(String(rawValue, radix: 16))")
        }
    }

    /// Reads a value in this encoding's storage format only, ignoring its base: how an FDE's `pc_range` is stored
    /// (LSB: "the size in the encoding of the CIE's 'R' augmentation", a length, not an address).
    func readStoredValue(from cursor: inout DWARFCursor) throws -> UInt64 {
        switch format {
        case 0x00, 0x04: return try cursor.u64()  // absptr (8 bytes on x86_64), udata8
        case 0x01: return try cursor.uleb128()
        case 0x02: return UInt64(try cursor.u16())
        case 0x03: return UInt64(try cursor.u32())
        case 0x09: return UInt64(bitPattern: try cursor.sleb128())
        case 0x0a: return UInt64(bitPattern: Int64(Int16(bitPattern: try cursor.u16())))
        case 0x0b: return UInt64(bitPattern: Int64(Int32(bitPattern: try cursor.u32())))
        case 0x0c: return try cursor.u64()
        default: throw ELFError("unsupported pointer encoding 0x\(String(rawValue, radix: 16))")
        }
    }
}
