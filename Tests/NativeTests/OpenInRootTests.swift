import Foundation
import Glibc
import XCTest

@testable import Native

/// Paths opened inside a root directory stay inside it, whatever links the root holds.
final class OpenInRootTests: XCTestCase {
    private var scratch = ""
    private var root = ""
    /// A file of the "host": outside the root, with an absolute path.
    private var hostFile = ""

    override func setUpWithError() throws {
        var template = Array((FileManager.default.temporaryDirectory.path + "/open-in-root-XXXXXX").utf8CString)
        scratch = String(cString: try XCTUnwrap(mkdtemp(&template)))
        root = scratch + "/root"
        hostFile = scratch + "/host/secret.txt"
        try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: scratch + "/host", withIntermediateDirectories: true)
        try write("host", to: hostFile)
        try write("container", to: root + "/etc/file.txt")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    private func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// The file's text, or the errno that stopped the open.
    private func read(_ path: String) -> String {
        do {
            let file = try FileReading.openFile(path, inRoot: root, regularFileOnly: true)
            return String(decoding: try file.readToEnd(maximumSize: .max), as: UTF8.self)
        } catch let error as FileReadError {
            return "errno \(error.errorNumber ?? 0)"
        } catch {
            return "\(error)"
        }
    }

    func testAbsoluteLinkToAHostFileResolvesInsideTheRoot() throws {
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/link.txt", withDestinationPath: hostFile)
        // What the kernel does with root + path: follows the link out to the host's file.
        XCTAssertEqual(try String(contentsOfFile: root + "/etc/link.txt", encoding: .utf8), "host")

        XCTAssertEqual(read("/etc/link.txt"), "errno \(ENOENT)")
        try write("the root's own", to: root + hostFile)
        XCTAssertEqual(read("/etc/link.txt"), "the root's own")
    }

    func testDotDotAndRelativeLinksStopAtTheRoot() throws {
        let depth = scratch.split(separator: "/").count + 4
        let up = Array(repeating: "..", count: depth).joined(separator: "/")
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/up", withDestinationPath: up)
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/escape.txt", withDestinationPath: up + hostFile)
        XCTAssertEqual(try String(contentsOfFile: root + "/etc/escape.txt", encoding: .utf8), "host")

        XCTAssertEqual(read("/etc/escape.txt"), "errno \(ENOENT)")
        XCTAssertEqual(read("/etc/up" + hostFile), "errno \(ENOENT)")
        XCTAssertEqual(read(up + "/etc/file.txt"), "container")
        XCTAssertEqual(read("/etc/up/etc/file.txt"), "container")
        try write("the root's own", to: root + hostFile)
        XCTAssertEqual(read("/etc/escape.txt"), "the root's own")
    }

    func testMagicLinksAndLoopsAreRefused() throws {
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/loop", withDestinationPath: "/etc/loop")
        XCTAssertEqual(read("/etc/loop"), "errno \(ELOOP)")
        XCTAssertEqual(read("/etc/missing"), "errno \(ENOENT)")
        // /proc/self/root inside the root: there is no /proc there, and a magic link would not be followed anyway.
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/host-root", withDestinationPath: "/proc/self/root")
        XCTAssertTrue(read("/etc/host-root" + hostFile).hasPrefix("errno "))
    }

    func testErrorsCarryTheErrnoAndNameThePathInTheRoot() throws {
        XCTAssertThrowsError(try openInRoot("/etc/missing", root: root)) { error in
            let failure = error as? OpenInRootError
            XCTAssertEqual(failure?.errorNumber, ENOENT)
            XCTAssertEqual(failure?.description, "open /etc/missing inside \(root): No such file or directory")
        }
        XCTAssertThrowsError(try ELFFile(path: "/etc/file.txt", inRoot: root)) { error in
            XCTAssertTrue("\(error)".contains(root + "/etc/file.txt"), "\(error)")
        }
        XCTAssertEqual(pathInRoot("/usr/lib/x.so", root: "/"), "/usr/lib/x.so")
        XCTAssertEqual(pathInRoot("/usr/lib/x.so", root: "/proc/7/root/"), "/proc/7/root/usr/lib/x.so")
    }
}
