import Foundation
import TestSupport

/// The CPythons the tests run: pyenv's builds (shared libpython) and Debian's static /usr/bin/python3.11.
enum TestInterpreters {
    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    /// pyenv's newest interpreter of a minor version ("3.8"); throwing (so the test fails, never skips)
    /// when there is none.
    static func pyenv(_ minor: String) throws -> String {
        let root = try Pyenv.root()
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/versions")) ?? []
        let matching = versions.filter { $0.hasPrefix(minor + ".") && $0.dropFirst(minor.count + 1).allSatisfy(\.isNumber) }
        guard let newest = matching.max(by: { $0.compare($1, options: .numeric) == .orderedAscending }) else {
            throw Missing(description: "no CPython \(minor) under \(root)/versions: the tests need it")
        }
        let bin = "\(root)/versions/\(newest)/bin"
        // 2.7 has no python3.
        return FileManager.default.fileExists(atPath: "\(bin)/python3") ? "\(bin)/python3" : "\(bin)/python"
    }
}
