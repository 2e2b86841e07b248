/// The bytes of an ELF file, read piece by piece as `ELFFile` needs them, each piece and their total bounded, since a
/// hostile file can declare a section of any size, or many sections over the same bytes. Thread-safe.
final class ELFContents: @unchecked Sendable {
    private enum Source {
        case memory([UInt8])
        case file(OpenFile)
    }

    private let source: Source
    /// The file's size when it was opened: every range is checked against it.
    let size: Int
    let maximumReadSize: Int
    let maximumTotalRead: Int

    private let lock = Lock()
    private var totalRead = 0
    /// Sections read so far, by index: the symbol tables, `.eh_frame` and the like are asked for several times.
    private var sectionData: [Int: ArraySlice<UInt8>] = [:]

    init(bytes: [UInt8], maximumReadSize: Int = ELFFile.maximumSectionSize, maximumTotalRead: Int = ELFFile.maximumBytesRead) {
        self.source = .memory(bytes)
        self.size = bytes.count
        self.maximumReadSize = maximumReadSize
        self.maximumTotalRead = maximumTotalRead
    }

    init(file: OpenFile) {
        self.source = .file(file)
        self.size = file.size
        self.maximumReadSize = ELFFile.maximumSectionSize
        self.maximumTotalRead = ELFFile.maximumBytesRead
    }

    /// The `count` bytes at `offset`, or nil if they are not all inside the file. Throws `ELFError` if they are more
    /// than `maximumReadSize` or would take the bytes read from this file past `maximumTotalRead` (`what` names them
    /// in the message), and `FileReadError` if the read fails or the file has shrunk since it was opened.
    func read(offset: UInt64, count: UInt64, what: @autoclosure () -> String) throws -> ArraySlice<UInt8>? {
        guard let range = Bounds.range(offset: offset, count: count, within: size) else { return nil }
        lock.lock()
        defer { lock.unlock() }
        return try read(range, what: what())
    }

    /// The bytes of `section` (whose range was checked against the file at init), read once and kept; nil for a
    /// section without file data. Throws as `read(offset:count:what:)`.
    func data(of section: ELFSection) throws -> ArraySlice<UInt8>? {
        guard section.hasFileData else { return nil }
        lock.lock()
        defer { lock.unlock() }
        if let known = sectionData[section.index] { return known }
        guard let range = Bounds.range(offset: section.offset, count: section.size, within: size) else { return nil }
        let data = try read(range, what: "section \(section.index) '\(section.name)'")
        sectionData[section.index] = data
        return data
    }

    /// Called with `lock` held: the total is checked and counted in one step.
    private func read(_ range: Range<Int>, what: String) throws -> ArraySlice<UInt8> {
        guard range.count <= maximumReadSize else {
            throw ELFError("\(what) is \(range.count) bytes, more than the \(maximumReadSize) read per section")
        }
        guard range.count <= maximumTotalRead - totalRead else {
            throw ELFError("\(what) (\(range.count) bytes) would take the bytes read from the file past \(maximumTotalRead)")
        }
        let data: ArraySlice<UInt8>
        switch source {
        case .memory(let bytes): data = bytes[range]
        case .file(let file): data = try file.bytes(count: range.count, at: range.lowerBound)[...]
        }
        totalRead += range.count
        return data
    }
}
