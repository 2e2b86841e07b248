import CZlib
import Glibc

/// A pprof profile as read (github.com/google/pprof/proto/profile.proto): the stacks with their values, the fields a
/// profile server keeps. What profilers push is hostile input: every length and index is checked, a gzip stream may not
/// decompress past `maxBytes`, and a damaged profile is refused with a one-line reason, never half read.
public struct PprofProfile: Equatable, Sendable {
    public struct ValueType: Equatable, Sendable {
        public var type: String
        public var unit: String
    }

    /// One function of a stack: a location's line (an inlined call is a line of its own).
    public struct StackFrame: Hashable, Sendable {
        public var name: String
        public var file: String
        public var line: Int64
    }

    public struct Sample: Equatable, Sendable {
        /// Outermost first (pprof stores the leaf first).
        public var stack: [StackFrame]
        /// One value per sample type.
        public var values: [Int64]
        /// String labels (`thread_name`, `span_id`...); numeric ones are left out.
        public var labels: [String: String]
    }

    public var sampleTypes: [ValueType]
    public var samples: [Sample]
    public var periodType: ValueType?
    public var period: Int64
    public var timeNanos: Int64
    public var durationNanos: Int64

    /// The most a profile may decompress to, and the most frames a stack may have.
    public static let maxBytes = 64 << 20
    public static let maxStackDepth = 4096

    /// Reads `bytes`, gzip-compressed (as pprof files are) or not.
    public init(reading bytes: [UInt8], maxBytes: Int = PprofProfile.maxBytes) throws {
        guard bytes.count >= 2, bytes[0] == 0x1f, bytes[1] == 0x8b else {
            guard bytes.count <= maxBytes else { throw PprofReadError("the profile is larger than \(maxBytes) bytes") }
            self = try bytes.withUnsafeBytes { try PprofProfile(message: $0) }
            return
        }
        var output: UnsafeMutablePointer<UInt8>?
        var size = 0
        let result = bytes.withUnsafeBytes { czlib_gunzip($0.baseAddress, $0.count, maxBytes, &output, &size) }
        guard result == 0, let output else {
            throw PprofReadError(result == CZLIB_PAST_LIMIT ? "the profile decompresses to more than \(maxBytes) bytes"
                                                              : "the profile's gzip stream is damaged or cut short")
        }
        defer { free(output) }
        self = try PprofProfile(message: UnsafeRawBufferPointer(start: output, count: size))
    }

    private init(message: UnsafeRawBufferPointer) throws {
        var strings: [String] = []
        var sampleTypes: [(Int64, Int64)] = []
        var rawSamples: [(locations: [UInt64], values: [Int64], labels: [(Int64, Int64)])] = []
        var locations: [UInt64: [(function: UInt64, line: Int64)]] = [:]
        var functions: [UInt64: (name: Int64, file: Int64)] = [:]
        var periodType: (Int64, Int64)?
        var period: Int64 = 0, timeNanos: Int64 = 0, durationNanos: Int64 = 0
        var reader = ProtobufReader(message)
        while let (field, value) = try reader.next() {
            switch field {
            case 1: sampleTypes.append(try Self.valueType(value))
            case 2:
                var sample = ProtobufReader(try value.bytes())
                var entry: (locations: [UInt64], values: [Int64], labels: [(Int64, Int64)]) = ([], [], [])
                while let (field, value) = try sample.next() {
                    switch field {
                    case 1: entry.locations += try value.packedOrSingle()
                    case 2: entry.values += try value.packedOrSingle().map { Int64(bitPattern: $0) }
                    case 3:
                        var label = ProtobufReader(try value.bytes())
                        var key: Int64 = 0, string: Int64 = 0
                        while let (field, value) = try label.next() {
                            if field == 1 { key = try value.int64() } else if field == 2 { string = try value.int64() }
                        }
                        if string != 0 { entry.labels.append((key, string)) }
                    default: break
                    }
                }
                guard entry.locations.count <= Self.maxStackDepth else {
                    throw PprofReadError("a sample has \(entry.locations.count) locations, more than \(Self.maxStackDepth)")
                }
                rawSamples.append(entry)
            case 4:
                var location = ProtobufReader(try value.bytes())
                var id: UInt64 = 0
                var lines: [(function: UInt64, line: Int64)] = []
                while let (field, value) = try location.next() {
                    if field == 1 { id = try value.uint64() }
                    guard field == 4 else { continue }
                    var line = ProtobufReader(try value.bytes())
                    var entry: (function: UInt64, line: Int64) = (0, 0)
                    while let (field, value) = try line.next() {
                        if field == 1 { entry.function = try value.uint64() } else if field == 2 { entry.line = try value.int64() }
                    }
                    lines.append(entry)
                }
                guard id != 0, locations.updateValue(lines, forKey: id) == nil else {
                    throw PprofReadError("location id \(id) is \(id == 0 ? "zero" : "defined twice")")
                }
            case 5:
                var function = ProtobufReader(try value.bytes())
                var id: UInt64 = 0, name: Int64 = 0, file: Int64 = 0
                while let (field, value) = try function.next() {
                    switch field {
                    case 1: id = try value.uint64()
                    case 2: name = try value.int64()
                    case 4: file = try value.int64()
                    default: break
                    }
                }
                guard id != 0, functions.updateValue((name, file), forKey: id) == nil else {
                    throw PprofReadError("function id \(id) is \(id == 0 ? "zero" : "defined twice")")
                }
            case 6: strings.append(try value.string())
            case 9: timeNanos = try value.int64()
            case 10: durationNanos = try value.int64()
            case 11: periodType = try Self.valueType(value)
            case 12: period = try value.int64()
            default: break
            }
        }
        guard strings.first == "" else { throw PprofReadError("the string table does not start with the empty string") }
        func string(_ index: Int64) throws -> String {
            guard index >= 0, index < strings.count else {
                throw PprofReadError("string index \(index) is past the string table's \(strings.count) entries")
            }
            return strings[Int(index)]
        }
        func valueType(_ pair: (Int64, Int64)) throws -> ValueType { ValueType(type: try string(pair.0), unit: try string(pair.1)) }
        // Each location's frames once, leaf first as pprof lists them.
        var framesOfLocation: [UInt64: [StackFrame]] = [:]
        for (id, lines) in locations {
            framesOfLocation[id] = try lines.map { line in
                guard let function = functions[line.function] else {
                    throw PprofReadError("location \(id) names function \(line.function), which the profile does not define")
                }
                return StackFrame(name: try string(function.name), file: try string(function.file), line: line.line)
            }
        }
        self.sampleTypes = try sampleTypes.map(valueType)
        self.periodType = try periodType.map(valueType)
        self.period = period
        self.timeNanos = timeNanos
        self.durationNanos = durationNanos
        samples = try rawSamples.map { raw in
            guard raw.values.count == sampleTypes.count else {
                throw PprofReadError("a sample has \(raw.values.count) values for \(sampleTypes.count) sample types")
            }
            var stack: [StackFrame] = []
            for id in raw.locations.reversed() {
                guard let frames = framesOfLocation[id] else {
                    throw PprofReadError("a sample names location \(id), which the profile does not define")
                }
                stack += frames.reversed()
            }
            guard stack.count <= Self.maxStackDepth else {
                throw PprofReadError("a sample has \(stack.count) frames, more than \(Self.maxStackDepth)")
            }
            var labels: [String: String] = [:]
            for (key, value) in raw.labels { labels[try string(key)] = try string(value) }
            return Sample(stack: stack, values: raw.values, labels: labels)
        }
    }

    private static func valueType(_ value: ProtobufReader.Value) throws -> (Int64, Int64) {
        var reader = ProtobufReader(try value.bytes())
        var type: Int64 = 0, unit: Int64 = 0
        while let (field, value) = try reader.next() {
            if field == 1 { type = try value.int64() } else if field == 2 { unit = try value.int64() }
        }
        return (type, unit)
    }
}

public struct PprofReadError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = "not a pprof profile: " + description }
}

/// The protocol buffers wire format, read: each field's number and value in turn, lengths checked against what is left.
/// The counterpart of ProtobufWriter, for the same small schemas.
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        case bytes(UnsafeRawBufferPointer)

        func uint64() throws -> UInt64 {
            guard case .varint(let value) = self else { throw PprofReadError("a number field has another wire type") }
            return value
        }

        func int64() throws -> Int64 { Int64(bitPattern: try uint64()) }

        func bytes() throws -> UnsafeRawBufferPointer {
            guard case .bytes(let bytes) = self else { throw PprofReadError("a message field has another wire type") }
            return bytes
        }

        func string() throws -> String {
            let bytes = try bytes()
            return String(decoding: bytes, as: UTF8.self)
        }

        /// A repeated integer field's values: packed (one length-delimited run of varints) or one per field.
        func packedOrSingle() throws -> [UInt64] {
            switch self {
            case .varint(let value): return [value]
            case .bytes(let bytes):
                var reader = ProtobufReader(bytes)
                var values: [UInt64] = []
                while !reader.isAtEnd { values.append(try reader.varint()) }
                return values
            default: throw PprofReadError("a repeated number field has another wire type")
            }
        }
    }

    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var isAtEnd: Bool { offset >= bytes.count }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard offset < bytes.count else { throw PprofReadError("a number is cut short") }
            let byte = bytes[offset]
            offset += 1
            // The tenth byte may carry only the top bit.
            guard shift < 63 || byte <= 1 else { throw PprofReadError("a number is longer than 64 bits") }
            value |= UInt64(byte & 0x7f) << UInt64(shift)
            if byte < 0x80 { return value }
        }
        throw PprofReadError("a number is longer than 64 bits")
    }

    private mutating func take(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - offset else { throw PprofReadError("a field runs past the end of its message") }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
    }

    /// The next field, or nil at the end of the message.
    mutating func next() throws -> (field: Int, value: Value)? {
        guard !isAtEnd else { return nil }
        let key = try varint()
        let field = key >> 3
        guard field > 0, field <= 536_870_911 else { throw PprofReadError("field number \(field) is not valid") }
        switch key & 7 {
        case 0: return (Int(field), .varint(try varint()))
        case 1: return (Int(field), .fixed64(try take(8).loadUnaligned(as: UInt64.self)))
        case 2:
            let length = try varint()
            guard length <= UInt64(bytes.count - offset) else { throw PprofReadError("a field runs past the end of its message") }
            return (Int(field), .bytes(try take(Int(length))))
        case 5: return (Int(field), .fixed32(try take(4).loadUnaligned(as: UInt32.self)))
        default: throw PprofReadError("wire type \(key & 7) is not one a profile uses")
        }
    }
}
