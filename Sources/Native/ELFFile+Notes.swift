extension ELFFile {
    /// The GNU build ID (`NT_GNU_BUILD_ID`), usually 20 bytes of SHA-1: what identifies this exact build, and the
    /// key for finding its separate debug file. Read from the note sections, or from the `PT_NOTE` segments when
    /// the section headers were stripped.
    public var buildID: [UInt8]? {
        for section in sections where section.type == ELFSection.typeNote {
            if let data = try? data(of: section), let id = Self.gnuBuildID(in: data, alignment: section.addressAlignment) {
                return id
            }
        }
        for (index, segment) in programHeaders.enumerated() where segment.type == ELFProgramHeader.typeNote {
            if let data = try? contents.read(offset: segment.offset, count: segment.fileSize, what: "note segment \(index)"),
               let id = Self.gnuBuildID(in: data, alignment: segment.align) {
                return id
            }
        }
        return nil
    }

    /// The separate debug file's name and the CRC-32 of its contents, from `.gnu_debuglink`. Distribution
    /// binaries (e.g. Debian's `/usr/bin/python3.11`) are stripped and point at their symbols this way.
    /// The name comes from the file as is: check it for `/` and `..` before building a path from it.
    public var debugLink: (name: String, crc: UInt32)? {
        guard let section = section(named: ".gnu_debuglink"), let data = try? data(of: section),
              let nameEnd = data.firstIndex(of: 0), nameEnd > data.startIndex
        else { return nil }
        // The CRC follows the name's NUL, padded to a 4-byte boundary.
        let crcOffset = (UInt64(nameEnd - data.startIndex) + 1 + 3) & ~3
        guard let crc = data.littleEndianUInt32(at: crcOffset) else { return nil }
        return (String(decoding: data[..<nameEnd], as: UTF8.self), crc)
    }

    private static let gnuNoteName: [UInt8] = Array("GNU\0".utf8)
    private static let noteTypeGNUBuildID: UInt32 = 3

    /// Walks the notes in `data` (each `namesz`, `descsz`, `type`, then name and descriptor, both padded to the
    /// note alignment) and returns the first GNU build ID. Stops at the first note that does not fit.
    private static func gnuBuildID(in data: ArraySlice<UInt8>, alignment declaredAlignment: UInt64) -> [UInt8]? {
        // Notes are 4-byte aligned, except those in 8-aligned sections/segments such as .note.gnu.property.
        let alignment: UInt64 = declaredAlignment == 8 ? 8 : 4
        func padded(_ size: UInt64) -> UInt64 { (size + alignment - 1) & ~(alignment - 1) }

        var offset: UInt64 = 0
        while let nameSize = data.littleEndianUInt32(at: offset),
              let descriptorSize = data.littleEndianUInt32(at: offset + 4),
              let type = data.littleEndianUInt32(at: offset + 8) {
            let nameOffset = offset + 12
            let descriptorOffset = nameOffset + padded(UInt64(nameSize))
            guard let name = data.slice(offset: nameOffset, count: UInt64(nameSize)),
                  let descriptor = data.slice(offset: descriptorOffset, count: UInt64(descriptorSize))
            else { return nil }
            if type == noteTypeGNUBuildID, name.elementsEqual(gnuNoteName), !descriptor.isEmpty {
                return Array(descriptor)
            }
            offset = descriptorOffset + padded(UInt64(descriptorSize))
        }
        return nil
    }
}
