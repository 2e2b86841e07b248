import Foundation
import XCTest

// A reader of what PprofExporter writes, independent of its encoder: the protobuf wire format from its
// specification (protobuf.dev/programming-guides/encoding) and profile.proto's field numbers typed in again,
// so that a mistake in the exporter's tables is not repeated here.

struct ProtobufDecodeError: Error, CustomStringConvertible {
    var description: String
}

/// One field of a message as it is on the wire.
struct WireField {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        case bytes([UInt8])
    }

    var number: Int
    var value: Value
}

enum WireReader {
    static func fields(_ bytes: [UInt8]) throws -> [WireField] {
        var fields: [WireField] = []
        var offset = 0
        while offset < bytes.count {
            let key = try varint(bytes, &offset)
            let number = Int(key >> 3)
            guard number > 0 else { throw ProtobufDecodeError(description: "field number 0 at byte \(offset)") }
            switch key & 7 {
            case 0:
                fields.append(WireField(number: number, value: .varint(try varint(bytes, &offset))))
            case 1:
                let raw = try take(bytes, &offset, 8)
                fields.append(WireField(number: number, value: .fixed64(raw.reversed().reduce(0) { $0 << 8 | UInt64($1) })))
            case 2:
                let length = try varint(bytes, &offset)
                guard length <= UInt64(bytes.count - offset) else {
                    throw ProtobufDecodeError(description: "field \(number): length \(length) past the end")
                }
                fields.append(WireField(number: number, value: .bytes(try take(bytes, &offset, Int(length)))))
            case 5:
                let raw = try take(bytes, &offset, 4)
                fields.append(WireField(number: number, value: .fixed32(raw.reversed().reduce(0) { $0 << 8 | UInt32($1) })))
            default:
                throw ProtobufDecodeError(description: "field \(number): unsupported wire type \(key & 7)")
            }
        }
        return fields
    }

    static func varint(_ bytes: [UInt8], _ offset: inout Int) throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < bytes.count else { throw ProtobufDecodeError(description: "varint past the end") }
            guard shift < 64 else { throw ProtobufDecodeError(description: "varint longer than 10 bytes") }
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
    }

    private static func take(_ bytes: [UInt8], _ offset: inout Int, _ count: Int) throws -> [UInt8] {
        guard count <= bytes.count - offset else { throw ProtobufDecodeError(description: "field past the end") }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }
}

extension Array where Element == WireField {
    /// The last value of a scalar field (protobuf's rule for repeated occurrences), 0 when absent.
    func uint64(_ number: Int) throws -> UInt64 {
        guard let field = last(where: { $0.number == number }) else { return 0 }
        guard case .varint(let value) = field.value else {
            throw ProtobufDecodeError(description: "field \(number) is not a varint")
        }
        return value
    }

    func int64(_ number: Int) throws -> Int64 { Int64(bitPattern: try uint64(number)) }

    /// Every value of a repeated integer field, packed or not.
    func repeatedUInt64(_ number: Int) throws -> [UInt64] {
        var values: [UInt64] = []
        for field in self where field.number == number {
            switch field.value {
            case .varint(let value):
                values.append(value)
            case .bytes(let packed):
                var offset = 0
                while offset < packed.count { values.append(try WireReader.varint(packed, &offset)) }
            default:
                throw ProtobufDecodeError(description: "field \(number) is neither a varint nor packed varints")
            }
        }
        return values
    }

    func repeatedInt64(_ number: Int) throws -> [Int64] { try repeatedUInt64(number).map { Int64(bitPattern: $0) } }

    /// The payloads of a repeated length-delimited field (messages, strings).
    func repeatedBytes(_ number: Int) throws -> [[UInt8]] {
        try filter { $0.number == number }.map { field in
            guard case .bytes(let bytes) = field.value else {
                throw ProtobufDecodeError(description: "field \(number) is not length-delimited")
            }
            return bytes
        }
    }

    func messages(_ number: Int) throws -> [[WireField]] {
        try repeatedBytes(number).map(WireReader.fields)
    }
}

/// A profile.proto `Profile` with every string index resolved, and checked as pprof checks it: string
/// indices in range, ids nonzero and unique, every referenced mapping, location and function present, as
/// many values per sample as sample types.
struct DecodedProfile {
    struct Label: Equatable {
        var key: String
        var string: String?
        var number: Int64?
        var numberUnit: String
    }

    struct Sample {
        var locationIDs: [UInt64]
        var values: [Int64]
        var labels: [Label]
    }

    struct Line: Equatable {
        var functionID: UInt64
        var line: Int64
    }

    struct Location {
        var id: UInt64
        var mappingID: UInt64
        var address: UInt64
        var lines: [Line]
    }

    struct Mapping: Equatable {
        var id: UInt64
        var fileName: String
        var hasFunctions: Bool
        var hasFileNames: Bool
        var hasLineNumbers: Bool
    }

    struct Function {
        var id: UInt64
        var name: String
        var systemName: String
        var fileName: String
        var startLine: Int64
    }

    /// A frame of a sample as pprof shows it.
    struct Frame: Hashable, CustomStringConvertible {
        var name: String
        var fileName: String
        var line: Int64

        var description: String { "\(name) (\(fileName):\(line))" }
    }

    var sampleTypes: [(type: String, unit: String)]
    var samples: [Sample]
    var mappings: [UInt64: Mapping]
    var locations: [UInt64: Location]
    var functions: [UInt64: Function]
    var stringTable: [String]
    var timeNanos: Int64
    var durationNanos: Int64
    var periodType: (type: String, unit: String)?
    var period: Int64
    var comments: [String]
    var defaultSampleType: String
    /// Location ids in the order the file lists them.
    var locationOrder: [UInt64]

    init(_ bytes: [UInt8]) throws {
        let profile = try WireReader.fields(bytes)
        stringTable = try profile.repeatedBytes(6).map { String(decoding: $0, as: UTF8.self) }
        guard stringTable.first == "" else {
            throw ProtobufDecodeError(description: "string_table[0] is \(stringTable.first.map { "'\($0)'" } ?? "missing"), not ''")
        }
        let strings = stringTable
        func string(_ index: Int64) throws -> String {
            guard index >= 0, index < strings.count else {
                throw ProtobufDecodeError(description: "string index \(index) outside a table of \(strings.count)")
            }
            return strings[Int(index)]
        }
        func valueType(_ fields: [WireField]) throws -> (type: String, unit: String) {
            (try string(try fields.int64(1)), try string(try fields.int64(2)))
        }

        sampleTypes = try profile.messages(1).map(valueType)
        let periodTypes = try profile.messages(11)
        periodType = try periodTypes.last.map(valueType)
        period = try profile.int64(12)
        timeNanos = try profile.int64(9)
        durationNanos = try profile.int64(10)
        comments = try profile.repeatedInt64(13).map(string)
        defaultSampleType = try string(try profile.int64(14))
        var mappings: [UInt64: Mapping] = [:]
        for fields in try profile.messages(3) {
            let mapping = Mapping(
                id: try fields.uint64(1), fileName: try string(try fields.int64(5)), hasFunctions: try fields.uint64(7) != 0,
                hasFileNames: try fields.uint64(8) != 0, hasLineNumbers: try fields.uint64(9) != 0)
            guard mapping.id != 0, mappings[mapping.id] == nil else {
                throw ProtobufDecodeError(description: "mapping id \(mapping.id) is zero or repeated")
            }
            mappings[mapping.id] = mapping
        }
        self.mappings = mappings

        var functions: [UInt64: Function] = [:]
        for fields in try profile.messages(5) {
            let function = Function(
                id: try fields.uint64(1), name: try string(try fields.int64(2)),
                systemName: try string(try fields.int64(3)), fileName: try string(try fields.int64(4)),
                startLine: try fields.int64(5))
            guard function.id != 0, functions[function.id] == nil else {
                throw ProtobufDecodeError(description: "function id \(function.id) is zero or repeated")
            }
            functions[function.id] = function
        }
        self.functions = functions

        var locations: [UInt64: Location] = [:]
        locationOrder = []
        for fields in try profile.messages(4) {
            let lines = try fields.messages(4).map { line in
                Line(functionID: try line.uint64(1), line: try line.int64(2))
            }
            let location = Location(id: try fields.uint64(1), mappingID: try fields.uint64(2), address: try fields.uint64(3), lines: lines)
            guard location.id != 0, locations[location.id] == nil else {
                throw ProtobufDecodeError(description: "location id \(location.id) is zero or repeated")
            }
            guard location.mappingID == 0 || mappings[location.mappingID] != nil else {
                throw ProtobufDecodeError(description: "location \(location.id) names mapping \(location.mappingID), which is missing")
            }
            for line in lines where functions[line.functionID] == nil {
                throw ProtobufDecodeError(description: "location \(location.id) names function \(line.functionID), which is missing")
            }
            locations[location.id] = location
            locationOrder.append(location.id)
        }
        self.locations = locations

        let sampleTypeCount = sampleTypes.count
        samples = try profile.messages(2).map { fields in
            let labels = try fields.messages(3).map { label in
                let stringIndex = try label.int64(2)
                // pprof's rule: a label with a string is a string label, any other a numeric one.
                return Label(
                    key: try string(try label.int64(1)), string: stringIndex != 0 ? try string(stringIndex) : nil,
                    number: stringIndex == 0 ? try label.int64(3) : nil, numberUnit: try string(try label.int64(4)))
            }
            let sample = Sample(locationIDs: try fields.repeatedUInt64(1), values: try fields.repeatedInt64(2), labels: labels)
            guard sample.values.count == sampleTypeCount else {
                throw ProtobufDecodeError(description: "a sample has \(sample.values.count) values for \(sampleTypeCount) sample types")
            }
            for id in sample.locationIDs where locations[id] == nil {
                throw ProtobufDecodeError(description: "a sample names location \(id), which is missing")
            }
            return sample
        }
    }

    /// The sample's frames, leaf first as in the file (one per Line; the exporter writes one Line per location).
    func frames(of sample: Sample) -> [Frame] {
        sample.locationIDs.flatMap { id in
            locations[id]!.lines.map { line in
                let function = functions[line.functionID]!
                return Frame(name: function.name, fileName: function.fileName, line: line.line)
            }
        }
    }

    func label(_ key: String, of sample: Sample) -> Label? {
        sample.labels.first { $0.key == key }
    }
}

/// The programs the pprof tests run: gzip here, go in PprofExporterTests' GoPprof.
enum PprofTestTools {
    struct Output {
        var status: Int32
        var standardOutput: [UInt8]
        var standardError: String

        var text: String { String(decoding: standardOutput, as: UTF8.self) }
    }

    /// `gzip -dc`: the test bundle has no zlib decoder of its own, and Debian always has gzip.
    static func gunzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pprof-gunzip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("profile.pb.gz")
        try Data(bytes).write(to: input)
        let output = try run("/bin/gzip", ["-dc", input.path], in: directory)
        guard output.status == 0 else { throw ProtobufDecodeError(description: "gzip -dc failed: \(output.standardError)") }
        return output.standardOutput
    }

    /// Runs a tool to its end with its output in files (no pipe to fill), in `directory`, with `environment`
    /// added to this process's.
    static func run(
        _ executable: String, _ arguments: [String], in directory: URL, environment: [String: String] = [:]
    ) throws -> Output {
        let outputURL = directory.appendingPathComponent("tool-\(UUID().uuidString).stdout")
        let errorURL = directory.appendingPathComponent("tool-\(UUID().uuidString).stderr")
        _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errorURL.path, contents: nil)
        let outputHandle = try FileHandle(forWritingTo: outputURL)
        let errorHandle = try FileHandle(forWritingTo: errorURL)
        defer {
            try? FileManager.default.removeItem(at: outputURL)
            try? FileManager.default.removeItem(at: errorURL)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = outputHandle
        process.standardError = errorHandle
        try process.run()
        process.waitUntilExit()
        try outputHandle.close()
        try errorHandle.close()
        return Output(
            status: process.terminationStatus,
            standardOutput: Array(try Data(contentsOf: outputURL)),
            standardError: (try? String(contentsOf: errorURL, encoding: .utf8)) ?? "")
    }
}
