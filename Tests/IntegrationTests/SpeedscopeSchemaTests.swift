import Foundation
import TestSupport
import XCTest

/// A speedscope file from a real recording, with real threads, frames and markers, conforms to
/// speedscope's published schema.
final class SpeedscopeSchemaTests: IntegrationTestCase {
    func testRecordedSpeedscopeFileMatchesSchema() throws {
        let workload = try Workload.load()
        let interpreter = try PythonInterpreters.debian311()
        let output = scratchFile("recorded.speedscope.json")
        try runPyBPFProf([
            "record", "--rate", "499", "-o", output, "--",
        ] + interpreter.command([workload.path, "shape", "--seconds", "1"])).requireSuccess()
        let threads = try SpeedscopeFile.threads(at: output)
        XCTAssertGreaterThanOrEqual(threads.count, 2, "the recording should have the main thread and the worker")

        let violations = try SpeedscopeSchemaValidator.violations(of: Array(try Data(contentsOf: URL(fileURLWithPath: output))))
        print("  \(threads.count) thread profiles, \(threads.reduce(0) { $0 + $1.stacks.count }) samples; "
            + "schema violations: \(violations.count)")
        XCTAssertEqual(violations, [], "the recorded file breaks speedscope's schema:\n" + violations.joined(separator: "\n"))
    }
}
