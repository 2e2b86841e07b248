import Foundation

/// Shared by the format tests and the integration tests (a test target cannot import another).
/// Checks documents against speedscope's published schema with Python's `jsonschema.Draft6Validator`,
/// the validator the schema is written for. Missing tools are errors, not skips: a format test that
/// quietly stops validating would pass while proving nothing.
public enum SpeedscopeSchemaValidator {
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    /// `<checkout>/../shared/formats/speedscope-file-format-schema.json`. The checkout is found from this
    /// file's real location, three levels down (Tests/TestSupport/<file>), resolving symbolic links so
    /// that a package that links these sources in from elsewhere still finds the checkout's schema.
    public static var schemaPath: String {
        guard let resolved = realpath(#filePath, nil) else { return #filePath }
        defer { free(resolved) }
        let checkout = URL(fileURLWithPath: String(cString: resolved))
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return checkout.appendingPathComponent("../shared/formats/speedscope-file-format-schema.json")
            .standardizedFileURL.path
    }

    /// The ways `document` breaks the schema, one line each (`profiles/0: 'weights' is a required
    /// property`); empty when it conforms.
    public static func violations(of document: [UInt8]) throws -> [String] {
        let schema = schemaPath
        guard FileManager.default.fileExists(atPath: schema) else {
            throw SetupError(description: "speedscope schema not found at \(schema): the tests expect it in "
                + "shared/formats/ beside the checkout (from https://www.speedscope.app/file-format-schema.json)")
        }
        let documentURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("speedscope-\(UUID().uuidString).json")
        try Data(document).write(to: documentURL)
        defer { try? FileManager.default.removeItem(at: documentURL) }

        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", validatorScript, schema, documentURL.path]
        let output = Pipe()
        let errors = Pipe()
        python.standardOutput = output
        python.standardError = errors
        do {
            try python.run()
        } catch {
            throw SetupError(description: "cannot run /usr/bin/env python3: \(error)")
        }
        // The script caps what it prints, so reading one pipe to its end cannot block on the other filling.
        let outputText = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()

        switch python.terminationStatus {
        case 0: return []
        case violationsFound: return outputText.split(separator: "\n").map(String.init)
        default:
            throw SetupError(description: "schema validation could not run (python3 exit status "
                + "\(python.terminationStatus)): \(errorText)\(outputText)")
        }
    }

    /// Exit status meaning "ran, and the document breaks the schema"; any other failure (no python3, no
    /// jsonschema, unreadable schema) exits otherwise and is a setup error.
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
