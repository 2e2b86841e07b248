import Native
import XCTest

/// SHA-256 against FIPS 180-4's examples and coreutils' sha256sum, fed whole and in pieces.
final class SHA256Tests: XCTestCase {
    private func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    func testStandardExamples() {
        XCTAssertEqual(hex(SHA256.digest([UInt8]())), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex(SHA256.digest(Array("abc".utf8))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex(SHA256.digest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex(SHA256.digest([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Pieces of every size across the 64-byte block boundary give the digest of the whole, and the whole is what
    /// sha256sum says of the same bytes.
    func testPiecesAndSha256sum() throws {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<10_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let whole = SHA256.digest(bytes)
        for piece in [1, 3, 55, 56, 63, 64, 65, 127, 4096] {
            var hash = SHA256()
            var offset = 0
            while offset < bytes.count {
                hash.update(bytes[offset..<min(offset + piece, bytes.count)])
                offset += piece
            }
            XCTAssertEqual(hash.finalize(), whole, "pieces of \(piece) bytes")
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sha256-\(getpid())")
        try Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(output.split(separator: " ").first.map(String.init), hex(whole))
    }
}
