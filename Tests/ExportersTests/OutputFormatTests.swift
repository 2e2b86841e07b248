import Exporters
import XCTest

final class OutputFormatTests: XCTestCase {
    func testFormatFromPath() {
        let expectations: [(path: String, format: OutputFormat?)] = [
            ("out.folded", .folded),
            ("/tmp/out.collapsed", .folded),
            ("stacks.TXT", .folded),
            ("run.speedscope.json", .speedscope),
            ("results/run.json", .speedscope),
            ("flame.html", .html),
            ("flame.HTM", .html),
            ("run.firefox.json", .firefox),
            ("cpu.pb.gz", .pprof),
            ("cpu.pprof", .pprof),
            ("out", nil),
            ("flame.svg", nil),
            ("out.json/profile", nil),
        ]
        for (path, format) in expectations {
            XCTAssertEqual(OutputFormat(path: path), format, path)
        }
    }

    func testFileExtensionNamesItsFormat() {
        for format in OutputFormat.allCases {
            XCTAssertEqual(OutputFormat(path: "profile." + format.fileExtension), format)
        }
    }

    func testRendersWithEachExporter() {
        let profile = Fixture.profile
        XCTAssertEqual(OutputFormat.folded.render(profile), FoldedExporter().render(profile))
        XCTAssertEqual(OutputFormat.speedscope.render(profile), SpeedscopeExporter().render(profile))
    }
}

extension OutputFormatTests {
    func testKnownExtensionIsTheWholeOneAsSpelled() {
        let expectations: [(path: String, fileExtension: String?)] = [
            ("out.folded", ".folded"),
            ("run.speedscope.json", ".speedscope.json"),
            ("results/run.json", ".json"),
            ("run.firefox.json", ".firefox.json"),
            ("cpu.PB.GZ", ".PB.GZ"),
            ("cpu.pb", ".pb"),
            ("flame.svg", nil),
            ("out", nil),
        ]
        for (path, fileExtension) in expectations {
            XCTAssertEqual(OutputFormat.knownExtension(of: path), fileExtension, path)
        }
    }
}
