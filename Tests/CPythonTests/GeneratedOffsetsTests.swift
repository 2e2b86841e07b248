import CPython
import Foundation
import XCTest

final class GeneratedOffsetsTests: XCTestCase {
    /// The committed table is what Scripts/gen-offsets produces from each version's own headers today,
    /// checked by the script inside each live interpreter as it runs.
    func testTableMatchesHeaders() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = repository.appendingPathComponent("Scripts/gen-offsets")
        process.arguments = ["--check"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "Scripts/gen-offsets --check failed:\n\(text)")
        XCTAssertTrue(text.contains("is up to date"), text)
    }

    func testEverySupportedVersionHasAnEntry() {
        let versions = PythonOffsets.supportedVersions.map { "\($0.major).\($0.minor)" }
        XCTAssertEqual(versions, ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"])
        for minor in 13...15 { XCTAssertNotNil(PythonOffsets.forVersion(major: 3, minor: minor)?.debugOffsets) }
        XCTAssertNil(PythonOffsets.forVersion(major: 3, minor: 16))
        XCTAssertNil(PythonOffsets.forVersion(major: 3, minor: 5))
        // Where each version's interpreter list starts, and what its names are.
        XCTAssertEqual(PythonOffsets.forVersion(major: 2, minor: 7)?.runtimeSymbol, "interp_head")
        XCTAssertEqual(PythonOffsets.forVersion(major: 3, minor: 6)?.runtimeSymbol, "interp_head")
        XCTAssertEqual(PythonOffsets.forVersion(major: 3, minor: 7)?.runtimeSymbol, "_PyRuntime")
        XCTAssertEqual(PythonOffsets.forVersion(major: 2, minor: 7)?.namesAreBytes, true)
        XCTAssertEqual(PythonOffsets.forVersion(major: 3, minor: 6)?.namesAreBytes, false)
    }
}
