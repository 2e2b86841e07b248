import XCTest
@testable import Native

final class LittleEndianBytesTests: XCTestCase {
    func testWhatIsWrittenReadsBackInOrder() {
        var writer = LittleEndianWriter()
        writer.write(UInt32(0x0102_0304))
        writer.writeArray([UInt64(1), 0xFFFF_FFFF_FFFF_FFFF])
        writer.writeBytes(Array("name".utf8))
        writer.write(UInt16(7))
        XCTAssertEqual(Array(writer.bytes.prefix(4)), [4, 3, 2, 1], "little-endian on disk")
        writer.bytes.withUnsafeBytes { raw in
            var reader = LittleEndianReader(raw)
            XCTAssertEqual(reader.read(UInt32.self), 0x0102_0304)
            XCTAssertEqual(reader.readArray(UInt64.self, count: 2), [1, 0xFFFF_FFFF_FFFF_FFFF])
            XCTAssertEqual(reader.readBytes(4).map { Array($0) }, Array("name".utf8))
            XCTAssertFalse(reader.isAtEnd)
            XCTAssertEqual(reader.read(UInt16.self), 7)
            XCTAssertTrue(reader.isAtEnd)
            XCTAssertNil(reader.read(UInt8.self), "nothing past the end")
        }
    }

    /// Counts come from files: a count that does not fit what is left is refused, whatever its size, and the reader
    /// does not move.
    func testCountsBeyondTheBytesLeftAreRefused() {
        let bytes: [UInt8] = Array(repeating: 0xAB, count: 12)
        bytes.withUnsafeBytes { raw in
            var reader = LittleEndianReader(raw)
            XCTAssertNil(reader.readArray(UInt64.self, count: 2))
            XCTAssertNil(reader.readArray(UInt32.self, count: Int.max))
            XCTAssertNil(reader.readArray(UInt32.self, count: -1))
            XCTAssertNil(reader.readBytes(13))
            XCTAssertNil(reader.readBytes(-1))
            XCTAssertEqual(reader.offset, 0)
            XCTAssertEqual(reader.readArray(UInt32.self, count: 3), [0xABAB_ABAB, 0xABAB_ABAB, 0xABAB_ABAB])
            XCTAssertEqual(reader.readArray(UInt64.self, count: 0), [])
            XCTAssertTrue(reader.isAtEnd)
        }
    }
}
