/// The few pieces of the protocol buffers wire format that profile.proto needs, written by hand: varints,
/// length-delimited fields (strings, nested messages) and packed repeated integers. profile.proto is a
/// small, frozen schema, so this costs less than a code generator and a runtime dependency.
///
/// Fields are appended in the order they are written; a reader accepts any order, and proto3 readers take
/// an absent scalar field as 0, so callers may leave zeros out.
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    /// The wire types profile.proto uses.
    private enum WireType: UInt64 {
        case varint = 0
        case lengthDelimited = 2
    }

    private mutating func appendVarint(_ value: UInt64) {
        var remaining = value
        while remaining >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining >>= 7
        }
        bytes.append(UInt8(remaining))
    }

    private mutating func appendKey(_ field: Int, _ wireType: WireType) {
        appendVarint(UInt64(field) << 3 | wireType.rawValue)
    }

    /// A `uint64` field; nothing for 0, the proto3 default.
    mutating func uint64(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        appendKey(field, .varint)
        appendVarint(value)
    }

    /// An `int64` field; nothing for 0. Negative values take ten bytes, as in every protobuf encoder
    /// (`int64` is not zigzag-encoded).
    mutating func int64(_ field: Int, _ value: Int64) {
        uint64(field, UInt64(bitPattern: value))
    }

    /// A `bool` field; nothing for false.
    mutating func bool(_ field: Int, _ value: Bool) {
        uint64(field, value ? 1 : 0)
    }

    /// One element of a `repeated string` field. Always written, also when empty: in a repeated field
    /// an empty string is an element (string_table[0] is one).
    mutating func string(_ field: Int, _ value: String) {
        appendKey(field, .lengthDelimited)
        appendVarint(UInt64(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }

    /// One element of a repeated message field, or a singular message field: the message `build` writes,
    /// length-prefixed.
    mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
        var nested = ProtobufWriter()
        build(&nested)
        appendKey(field, .lengthDelimited)
        appendVarint(UInt64(nested.bytes.count))
        bytes.append(contentsOf: nested.bytes)
    }

    /// A `repeated uint64` field, packed (proto3's default encoding, which every reader accepts); nothing
    /// when empty.
    mutating func packedUInt64s<Values: Collection>(_ field: Int, _ values: Values) where Values.Element == UInt64 {
        guard !values.isEmpty else { return }
        var packed = ProtobufWriter()
        for value in values { packed.appendVarint(value) }
        appendKey(field, .lengthDelimited)
        appendVarint(UInt64(packed.bytes.count))
        bytes.append(contentsOf: packed.bytes)
    }

    /// Appends what `other` wrote: fields built apart (e.g. while their strings are still being collected)
    /// join the message in the order of their field numbers.
    mutating func append(_ other: ProtobufWriter) {
        bytes.append(contentsOf: other.bytes)
    }

    /// A `repeated int64` field, packed; nothing when empty.
    mutating func packedInt64s<Values: Collection>(_ field: Int, _ values: Values) where Values.Element == Int64 {
        packedUInt64s(field, values.lazy.map { UInt64(bitPattern: $0) })
    }
}
