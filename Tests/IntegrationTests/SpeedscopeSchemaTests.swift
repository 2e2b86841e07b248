import Foundation
import XCTest

/// A speedscope file from a real recording, with real threads, frames and markers, conforms to
/// speedscope's published schema.
final class SpeedscopeSchemaTests: IntegrationTestCase {
    func testRecordedSpeedscopeFileMatchesSchema() throws {
        let workload = try Workload.load()
        let interpreter = try PythonInterpreters.debian311()
        let output = scratchFile("recorded.speedscope.json")
        try runPyBPFProf([
            "record", "--rate", "499", "-o", output, "--", interpreter.path, workload.path, "shape", "--seconds", "1",
        ]).requireSuccess()
        let threads = try SpeedscopeFile.threads(at: output)
        XCTAssertGreaterThanOrEqual(threads.count, 2, "the recording should have the main thread and the worker")

        let violations = try SpeedscopeSchema.violations(ofFileAt: output)
        print("  \(threads.count) thread profiles, \(threads.reduce(0) { $0 + $1.stacks.count }) samples; "
            + "schema violations: \(violations.count)")
        XCTAssertEqual(violations, [], "the recorded file breaks speedscope's schema:\n" + violations.joined(separator: "\n"))
    }
}

/// Validation with python3's jsonschema.Draft6Validator, the validator the schema is written for, as
/// Tests/ExportersTests/SpeedscopeSchemaValidator.swift does it (another test target cannot be imported).
enum SpeedscopeSchema {
    /// `<checkout>/../shared/formats/speedscope-file-format-schema.json`.
    static var path: String {
        Checkout.root.appendingPathComponent("../shared/formats/speedscope-file-format-schema.json").standardizedFileURL.path
    }

    /// The ways the file breaks the schema, one line each; empty when it conforms. Missing tools, a
    /// missing schema or python3 failing otherwise are thrown: they must fail the test, not pass it.
    static func violations(ofFileAt document: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw IntegrationError("speedscope schema not found at \(path): the tests expect it in shared/formats/ "
                + "beside the checkout (from https://www.speedscope.app/file-format-schema.json)")
        }
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", validatorScript, path, document]
        let output = Pipe()
        let errors = Pipe()
        python.standardOutput = output
        python.standardError = errors
        do {
            try python.run()
        } catch {
            throw IntegrationError("cannot run /usr/bin/env python3 to validate against the schema: \(error)")
        }
        // The script caps what it prints, so reading one pipe to its end cannot block on the other filling.
        let outputText = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()
        switch python.terminationStatus {
        case 0: return []
        case violationsFound: return outputText.split(separator: "\n").map(String.init)
        default:
            throw IntegrationError("schema validation could not run (python3 exit status \(python.terminationStatus)): "
                + "\(errorText)\(outputText)")
        }
    }

    /// Exit status meaning "ran, and the document breaks the schema"; any other failure is a setup error.
    private static let violationsFound: Int32 = 10

    private static let validatorScript = """
        import json, sys
        try:
            import jsonschema
        except ImportError as error:
            sys.exit(f"python3 cannot import jsonschema ({error}): install it (pip install jsonschema, "
                     "or apt-get install python3-jsonschema)")
        schema_path, document_path = sys.argv[1:]
        with open(schema_path) as file:
            schema = json.load(file)
        jsonschema.Draft6Validator.check_schema(schema)
        try:
            with open(document_path, encoding="utf-8") as file:
                document = json.load(file)
        except ValueError as error:
            print(f"not JSON: {error}")
            sys.exit(\(violationsFound))
        violations = sorted(jsonschema.Draft6Validator(schema).iter_errors(document), key=lambda e: [str(part) for part in e.absolute_path])
        for violation in violations[:20]:
            # Messages quote the offending value, which can be a whole profile.
            print(f"{'/'.join(map(str, violation.absolute_path)) or '(root)'}: {violation.message[:300]}")
        if len(violations) > 20:
            print(f"... and {len(violations) - 20} more")
        sys.exit(\(violationsFound) if violations else 0)
        """
}
