import Native

/// A Python frame resolved to what a person reads.
public struct PythonFrameLocation: Hashable, Sendable {
    /// `co_qualname` (3.11+) or `co_name`.
    public var name: String
    public var file: String
    /// Line of the current instruction; 0 when the line table gives none.
    public var line: Int
}

/// Why a sampled code object could not be resolved.
public enum CodeObjectError: Error, Equatable {
    /// The object at the address no longer matches the sample's checksum: freed and reused.
    case changed
    /// Its memory could not be read (process gone, object freed and unmapped).
    case unreadable
    /// Its fields are not what a code object holds (garbage, a torn read).
    case malformed
    /// Its type is not `PyCode_Type`: another object in a frame's executable slot, or memory reused.
    case notCode
}

/// Resolves (code object address, instruction) pairs of one process, reading each code object once.
/// Cached by address and checksum: the BPF program hashes 8 bytes of the object (`co_firstlineno` and
/// the int before it) into every frame, so a new code object at a reused address misses the cache.
public final class CodeObjectResolver {
    private struct Key: Hashable {
        var address: UInt64
        var checksum: UInt32
    }

    private struct CodeObject {
        var name: String
        var file: String
        var lineTable: LineTable
    }

    static let maxNameLength = 1024
    static let maxFileLength = 4096
    static let maxLineTableBytes = 1 << 20

    private let memory: ProcessMemory
    private let offsets: PythonOffsets
    private let lineFormat: LineTableFormat
    /// Bytes of the code object struct that hold every field we read.
    private let headerSize: Int
    /// `PyCode_Type` in the process, when known.
    private let codeType: UInt64?
    private var cache: [Key: Result<CodeObject, CodeObjectError>] = [:]

    /// `ob_type` of every object (the default builds' PyObject header).
    static let objectTypeOffset = 8

    public init?(pid: Int32, offsets: PythonOffsets, codeType: UInt64? = nil) {
        guard let format = LineTableFormat(major: offsets.major, minor: offsets.minor) else { return nil }
        self.memory = ProcessMemory(pid: pid)
        self.offsets = offsets
        self.codeType = codeType
        self.lineFormat = format
        self.headerSize = [
            offsets.codeFilename, offsets.codeName, offsets.codeQualname ?? 0, offsets.codeLineTable,
            offsets.codeChecksum, offsets.codeFirstLineno,
        ].max()! + 8
    }

    /// The checksum the BPF program computes from the 8 bytes at `code_checksum`.
    public static func checksum(_ window: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: (window &* 0x9E37_79B9_7F4A_7C15) >> 32)
    }

    public func resolve(code: UInt64, checksum: UInt32, instruction: UInt32) -> Result<PythonFrameLocation, CodeObjectError> {
        let key = Key(address: code, checksum: checksum)
        let cached: Result<CodeObject, CodeObjectError>
        if let hit = cache[key] {
            cached = hit
        } else {
            cached = read(code: code, checksum: checksum)
            // A failed read is remembered only while the process lives; a changed object never resolves.
            cache[key] = cached
        }
        return cached.map { object in
            let line = byteOffset(of: instruction).flatMap { object.lineTable.line(forByteOffset: $0) } ?? 0
            return PythonFrameLocation(name: object.name, file: object.file, line: line)
        }
    }

    /// The instruction's byte offset in the bytecode, from what the BPF program sent.
    private func byteOffset(of instruction: UInt32) -> Int? {
        let raw = Int(Int32(bitPattern: instruction))
        switch offsets.instructionKind {
        case .lastiBytes: return raw
        case .lastiCodeUnits: return raw * 2
        case .pointer:
            guard let adaptive = offsets.codeCodeAdaptive else { return nil }
            return raw - adaptive
        }
    }

    private func read(code: UInt64, checksum: UInt32) -> Result<CodeObject, CodeObjectError> {
        guard code != 0, let header = try? memory.read(code, count: headerSize) else { return .failure(.unreadable) }
        guard let window = header.uint64(at: offsets.codeChecksum), Self.checksum(window) == checksum else {
            return .failure(.changed)
        }
        if let codeType, header.uint64(at: Self.objectTypeOffset) != codeType { return .failure(.notCode) }
        let nameField = offsets.codeQualname ?? offsets.codeName
        guard let namePointer = header.uint64(at: nameField),
              let filePointer = header.uint64(at: offsets.codeFilename),
              let tablePointer = header.uint64(at: offsets.codeLineTable),
              let firstLine = header.uint32(at: offsets.codeFirstLineno),
              let name = readString(namePointer, maxLength: Self.maxNameLength),
              let file = readString(filePointer, maxLength: Self.maxFileLength),
              let table = readBytes(tablePointer, maxLength: Self.maxLineTableBytes)
        else { return .failure(.malformed) }
        let lineTable = LineTable(format: lineFormat, bytes: table, firstLineNumber: Int(Int32(bitPattern: firstLine)))
        return .success(CodeObject(name: name, file: file, lineTable: lineTable))
    }

    /// A compact str object (every identifier and file name is one): length, kind (1, 2 or 4 bytes per
    /// character) and ascii flag from the state word, characters right after the header.
    func readString(_ address: UInt64, maxLength: Int) -> String? {
        guard let headerBytes = offsets.unicodeCompactData, let lengthField = offsets.unicodeLength,
              let stateField = offsets.unicodeState, let asciiData = offsets.unicodeASCIIData
        else {
            // 2.7: a byte string, in the source's encoding (UTF-8 in practice; anything else shows replacement characters).
            return readBytes(address, maxLength: maxLength).map { String(decoding: $0, as: UTF8.self) }
        }
        guard address != 0, let header = try? memory.read(address, count: headerBytes),
              let length = header.uint64(at: lengthField), length <= UInt64(maxLength),
              let state = header.uint32(at: stateField)
        else { return nil }
        let kind = Int((state >> 2) & 7)
        let compact = (state >> 5) & 1 == 1
        let ascii = (state >> 6) & 1 == 1
        guard compact, kind == 1 || kind == 2 || kind == 4 else { return nil }
        let start = UInt64(ascii ? asciiData : headerBytes)
        guard let data = try? memory.read(address + start, count: Int(length) * kind) else { return nil }
        switch kind {
        case 1:
            // Latin-1: every byte is its own code point.
            return String(String.UnicodeScalarView(data.map { Unicode.Scalar($0) }))
        case 2:
            let units = stride(from: 0, to: data.count, by: 2).map { UInt16(data[$0]) | UInt16(data[$0 + 1]) << 8 }
            return String(decoding: units, as: UTF16.self)
        default:
            var scalars = String.UnicodeScalarView()
            for index in stride(from: 0, to: data.count, by: 4) {
                guard let value = data.uint32(at: index) else { return nil }
                scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            }
            return String(scalars)
        }
    }

    func readBytes(_ address: UInt64, maxLength: Int) -> [UInt8]? {
        guard address != 0, let size = try? memory.readUInt64(address + UInt64(offsets.bytesSize)),
              size <= UInt64(maxLength)
        else { return nil }
        return try? memory.read(address + UInt64(offsets.bytesData), count: Int(size))
    }
}
