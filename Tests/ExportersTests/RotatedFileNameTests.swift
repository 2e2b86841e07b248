import Exporters
import Foundation
import XCTest

final class RotatedFileNameTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("rotated-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(at: directory)
    }

    private func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    private func contents() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    func testTheStartGoesBeforeTheWholeKnownExtension() {
        let expectations: [(path: String, rotated: String)] = [
            ("/var/lib/pybpfprof/host.folded", "/var/lib/pybpfprof/host-20261206-170000.folded"),
            ("/var/lib/pybpfprof/host.pybpfprof", "/var/lib/pybpfprof/host-20261206-170000.pybpfprof"),
            ("run.speedscope.json", "run-20261206-170000.speedscope.json"),
            ("app.firefox.json", "app-20261206-170000.firefox.json"),
            ("cpu.PB.GZ", "cpu-20261206-170000.PB.GZ"),
            ("out/x.json", "out/x-20261206-170000.json"),
            ("my.app.html", "my.app-20261206-170000.html"),
            // Not a format's extension: the file name's last.
            ("trace.data", "trace-20261206-170000.data"),
            ("v1.2/profile", "v1.2/profile-20261206-170000"),
            (".hidden", ".hidden-20261206-170000"),
        ]
        for (path, rotated) in expectations {
            XCTAssertEqual(RotatedFileName(path).path(timestamp: "20261206-170000"), rotated, path)
        }
        let name = RotatedFileName("/var/lib/pybpfprof/host.speedscope.json")
        XCTAssertEqual(name.directory, "/var/lib/pybpfprof/")
        XCTAssertEqual(name.stem, "host")
        XCTAssertEqual(name.fileExtension, ".speedscope.json")
    }

    /// As the default output names always had it: local time, to the second, fractions dropped.
    func testTimestampIsLocalTimeToTheSecond() {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = .current
        for seconds in [0, 1_796_576_400.999, 1_800_000_000] {
            let expected = formatter.string(from: Date(timeIntervalSince1970: seconds.rounded(.down)))
            XCTAssertEqual(RotatedFileName.timestamp(of: seconds), expected)
        }
        XCTAssertTrue(RotatedFileName("host.folded").isRotation("host-\(RotatedFileName.timestamp(of: 1_796_576_400)).folded"))
    }

    func testRecognisesOnlyItsOwnRotations() {
        let name = RotatedFileName("/var/lib/pybpfprof/host.folded")
        XCTAssertTrue(name.isRotation("host-20261206-170000.folded"))
        for other in [
            "host.folded", "host-20261206-170000.folded.tmp", ".host-20261206-170000.folded.3f2a.tmp",
            "host-2026120-170000.folded", "host-20261206-1700000.folded", "host-20261206_170000.folded",
            "host-x-20261206-170000.folded", "hostx-20261206-170000.folded", "other-20261206-170000.folded",
            "host-20261206-170000.txt", "host-20261206-170000.FOLDED", "host-2026120a-170000.folded",
            "host-20261206-170000", "host--20261206-170000.folded",
        ] {
            XCTAssertFalse(name.isRotation(other), other)
        }
    }

    /// Deletes the oldest rotations beyond the newest N: no other file, no directory or symbolic link named like one.
    func testRemovesOnlyTheOldestRotations() throws {
        let rotations = ["w-20261206-165957.folded", "w-20261206-165958.folded", "w-20261206-165959.folded",
                         "w-20261206-170000.folded", "w-20261206-170001.folded"]
        let others = ["w.folded", "w-20261206-165900.pybpfprof", "x-20261206-165900.folded", "w-20261206-165900.folded.bak",
                      "w-old.folded"]
        for file in rotations + others { try Data("x".utf8).write(to: URL(fileURLWithPath: path(file))) }
        try FileManager.default.createDirectory(atPath: path("w-20261206-165000.folded"), withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(atPath: path("w-20261206-165001.folded"), withDestinationPath: path("w.folded"))

        let name = RotatedFileName(path("w.folded"))
        let newest = path("w-20261206-170001.folded")
        let result = name.removeOldest(keeping: 2, sparing: newest)
        XCTAssertEqual(result.failures, [])
        XCTAssertEqual(result.removed, rotations.prefix(3).map(path))
        XCTAssertEqual(try contents(), (Array(rotations.suffix(2)) + others + ["w-20261206-165000.folded", "w-20261206-165001.folded"]).sorted())

        XCTAssertEqual(name.removeOldest(keeping: 2, sparing: newest).removed, [], "nothing more to delete")
        XCTAssertEqual(name.removeOldest(keeping: 1, sparing: newest).removed, [path("w-20261206-170000.folded")])
    }

    /// The file just written is kept even when files named after later times exist (a clock set back): it counts as
    /// one of those kept.
    func testTheFileJustWrittenIsKept() throws {
        let files = ["w-20261206-170000.folded", "w-20261206-170001.folded", "w-20261206-170002.folded"]
        for file in files { try Data("x".utf8).write(to: URL(fileURLWithPath: path(file))) }
        let result = RotatedFileName(path("w.folded")).removeOldest(keeping: 2, sparing: path(files[0]))
        XCTAssertEqual(result.removed, [path(files[1])])
        XCTAssertEqual(try contents(), [files[0], files[2]])
    }

    func testAMissingDirectoryIsReported() {
        let result = RotatedFileName(path("gone/w.folded")).removeOldest(keeping: 1, sparing: path("gone/w-20261206-170000.folded"))
        XCTAssertEqual(result.removed, [])
        XCTAssertEqual(result.failures, ["cannot list \(path("gone")) to delete old rotated files: No such file or directory"])
    }
}
