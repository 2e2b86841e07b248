import Exporters
import Foundation
import XCTest

final class AtomicFileTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
    }

    override func tearDownWithError() throws {
        // Restores write permission should a test have removed it, so that the directory can be removed.
        try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
        try FileManager.default.removeItem(at: directory)
    }

    private func contents() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    /// Asserts that writing `path` fails with `cannot write <path>: <reason>` and leaves `directory` holding
    /// only `expectedFiles`.
    private func assertWriteFails(
        _ path: String, reason: String, leaving expectedFiles: [String] = [],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        XCTAssertThrowsError(try writeAtomically(Array("data".utf8), to: path), file: file, line: line) { error in
            XCTAssertEqual("\(error)", "cannot write \(path): \(reason)", file: file, line: line)
        }
        XCTAssertEqual(try contents(), expectedFiles, "temporary file left behind", file: file, line: line)
    }

    func testWritesANewFile() throws {
        let path = directory.appendingPathComponent("profile.folded").path
        try writeAtomically(Array("main 1\n".utf8), to: path)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "main 1\n")
        XCTAssertEqual(try contents(), ["profile.folded"])
    }

    func testReplacesAnExistingFile() throws {
        let path = directory.appendingPathComponent("profile.json").path
        try Data(repeating: UInt8(ascii: "x"), count: 10_000).write(to: URL(fileURLWithPath: path))
        try writeAtomically(Array("{}".utf8), to: path)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "{}")
        XCTAssertEqual(try contents(), ["profile.json"])
    }

    func testWritesAnEmptyFile() throws {
        let path = directory.appendingPathComponent("empty.folded").path
        try writeAtomically([], to: path)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data())
    }

    func testMissingDirectory() throws {
        try assertWriteFails(directory.appendingPathComponent("missing/x.json").path, reason: "No such file or directory")
    }

    func testParentIsAFile() throws {
        try Data().write(to: directory.appendingPathComponent("file"))
        try assertWriteFails(directory.appendingPathComponent("file/x.json").path, reason: "Not a directory", leaving: ["file"])
    }

    /// The temporary file is created and written before the rename fails, so this checks its removal.
    func testTargetIsADirectory() throws {
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("out.json"), withIntermediateDirectories: false)
        try assertWriteFails(directory.appendingPathComponent("out.json").path, reason: "Is a directory", leaving: ["out.json"])
    }

    /// sysfs refuses new files even to root (CI runs as root, so a chmod'ed directory would not do).
    func testUnwritableDirectory() throws {
        XCTAssertThrowsError(try writeAtomically([1, 2, 3], to: "/sys/pybpfprof-test.json")) { error in
            XCTAssertEqual("\(error)", "cannot write /sys/pybpfprof-test.json: Permission denied")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/sys/pybpfprof-test.json"))
    }
}
