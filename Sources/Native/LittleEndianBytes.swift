#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads little-endian values from the front of a buffer, each bounded by what is left (nil past the end): the
/// decoders of pybpfprof's own files (the cache's entries), which check every count before using it.
///
/// Arrays are copied whole: a kernel symbol table of 120,000 entries decodes in a few memcpys, not element by element.
public struct LittleEndianReader {
    private let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset == bytes.count }

    public mutating func read<T: FixedWidthInteger>(_: T.Type) -> T? {
        guard MemoryLayout<T>.size <= remaining else { return nil }
        defer { offset += MemoryLayout<T>.size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// `count` integers, nil if fewer are left.
    public mutating func readArray<T: FixedWidthInteger>(_: T.Type, count: Int) -> [T]? {
        guard var values = readRecords(T.self, count: count) else { return nil }
        #if _endian(big)
        for index in values.indices { values[index] = T(littleEndian: values[index]) }
        #endif
        return values
    }

    /// `count` records of a trivial type stored as they are in memory (the C structs the BPF program reads), nil if
    /// fewer are left.
    public mutating func readRecords<T>(_: T.Type, count: Int) -> [T]? {
        precondition(_isPOD(T.self))
        let stride = MemoryLayout<T>.stride
        guard count >= 0, count <= remaining / stride else { return nil }
        let source = bytes.baseAddress.map { $0 + offset }
        offset += count * stride
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0, let source { memcpy(buffer.baseAddress!, source, count * stride) }
            initialized = count
        }
    }

    /// The next `count` bytes, nil if fewer are left.
    public mutating func readBytes(_ count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0, count <= remaining else { return nil }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }
}

/// Appends little-endian values: the encoders matching `LittleEndianReader`.
public struct LittleEndianWriter {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    public mutating func writeArray<T: FixedWidthInteger>(_ values: [T]) {
        #if _endian(big)
        for value in values { write(value) }
        #else
        values.withUnsafeBytes { bytes += $0 }
        #endif
    }

    /// Records of a trivial type as they are in memory (see `LittleEndianReader.readRecords`).
    public mutating func writeRecords<T>(_ values: [T]) {
        precondition(_isPOD(T.self))
        values.withUnsafeBytes { bytes += $0 }
    }

    public mutating func writeBytes<C: Collection>(_ values: C) where C.Element == UInt8 {
        bytes += values
    }
}
