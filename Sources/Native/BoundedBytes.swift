/// Bounds arithmetic for untrusted offsets and lengths. Every value read from a file goes through here
/// before it indexes anything, so overflow and out-of-range values become `nil` instead of traps.
enum Bounds {
    /// The longest string table entry accepted. Without a limit, a hostile table without NULs and many entries
    /// pointing into it costs time and memory quadratic in its size; real names (even mangled C++) are shorter.
    static let maximumStringLength = 4096

    /// The index range `[offset, offset + count)` if it lies within `0..<limit`, else nil.
    static func range(offset: UInt64, count: UInt64, within limit: Int) -> Range<Int>? {
        let (end, overflow) = offset.addingReportingOverflow(count)
        guard !overflow, end <= UInt64(limit) else { return nil }
        return Int(offset)..<Int(end)
    }

    /// The index range for `count` records of `recordSize` bytes starting at `offset`, if it lies within `0..<limit`.
    static func range(offset: UInt64, count: UInt64, recordSize: Int, within limit: Int) -> Range<Int>? {
        let (total, overflow) = count.multipliedReportingOverflow(by: UInt64(recordSize))
        guard !overflow else { return nil }
        return range(offset: offset, count: total, within: limit)
    }
}

/// A fixed-size little-endian record whose bounds were checked once at creation, so reading its fields at
/// constant offsets cannot go out of range.
struct ELFRecord {
    /// Exactly the record's bytes.
    private let bytes: ArraySlice<UInt8>

    var size: Int { bytes.count }

    /// Nil if the `size` bytes `offset` bytes into `bytes` are not all inside it.
    init?(_ bytes: ArraySlice<UInt8>, offset: UInt64, size: Int) {
        guard let record = bytes.slice(offset: offset, count: UInt64(size)) else { return nil }
        self.init(record: record)
    }

    private init(record: ArraySlice<UInt8>) {
        bytes = record
    }

    /// The `count` consecutive records of `size` bytes at the start of `bytes`, or nil if they are not all inside it.
    static func table(_ bytes: ArraySlice<UInt8>, count: UInt64, size: Int) -> [ELFRecord]? {
        guard let range = Bounds.range(offset: 0, count: count, recordSize: size, within: bytes.count) else { return nil }
        let base = bytes.startIndex
        return stride(from: range.lowerBound, to: range.upperBound, by: size).map { ELFRecord(record: bytes[(base + $0)..<(base + $0 + size)]) }
    }

    func u8(_ field: Int) -> UInt8 { UInt8(truncatingIfNeeded: load(field, width: 1)) }
    func u16(_ field: Int) -> UInt16 { UInt16(truncatingIfNeeded: load(field, width: 2)) }
    func u32(_ field: Int) -> UInt32 { UInt32(truncatingIfNeeded: load(field, width: 4)) }
    func u64(_ field: Int) -> UInt64 { load(field, width: 8) }

    private func load(_ field: Int, width: Int) -> UInt64 {
        precondition(field >= 0 && field + width <= size, "field \(field)+\(width) outside a \(size)-byte record")
        return bytes.littleEndianValue(at: bytes.startIndex + field, width: width)
    }
}

extension ArraySlice where Element == UInt8 {
    /// The NUL-terminated string starting `offset` bytes into the slice, or nil if the offset is outside
    /// the slice or no NUL follows it within the slice (a string table must not run off its end) and
    /// `Bounds.maximumStringLength` bytes.
    func nulTerminatedString(at offset: UInt64) -> String? {
        guard offset < UInt64(count) else { return nil }
        let start = startIndex + Int(offset)
        let searchEnd = start + Swift.min(endIndex - start, Bounds.maximumStringLength + 1)
        guard let end = self[start..<searchEnd].firstIndex(of: 0) else { return nil }
        return String(decoding: self[start..<end], as: UTF8.self)
    }

    /// The `count` bytes starting `offset` bytes into the slice, or nil if they are not all inside it.
    func slice(offset: UInt64, count byteCount: UInt64) -> ArraySlice<UInt8>? {
        guard let range = Bounds.range(offset: offset, count: byteCount, within: count) else { return nil }
        return self[(startIndex + range.lowerBound)..<(startIndex + range.upperBound)]
    }

    /// A little-endian unsigned integer of `width` bytes at index `index`; the caller has checked the bounds.
    func littleEndianValue(at index: Int, width: Int) -> UInt64 {
        var value: UInt64 = 0
        for byteIndex in 0..<width {
            value |= UInt64(self[index + byteIndex]) << (8 * byteIndex)
        }
        return value
    }

    /// The little-endian `UInt32` starting `offset` bytes into the slice, or nil if it does not fit.
    func littleEndianUInt32(at offset: UInt64) -> UInt32? {
        slice(offset: offset, count: 4)?.reversed().reduce(0) { value, byte in value << 8 | UInt32(byte) }
    }
}
