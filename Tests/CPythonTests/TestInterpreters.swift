import Foundation

/// The CPythons the tests run: pyenv's builds (shared libpython) and Debian's static /usr/bin/python3.11.
enum TestInterpreters {
    /// `$PYENV_ROOT`, else what `pyenv root` says, else pyenv's default location for root.
    static func pyenvRoot() -> String {
        if let root = ProcessInfo.processInfo.environment["PYENV_ROOT"], !root.isEmpty {
            return root
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["pyenv", "root"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        if (try? process.run()) != nil {
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let root = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if process.terminationStatus == 0, !root.isEmpty {
                return root
            }
        }
        return "/root/.pyenv"
    }

    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    /// pyenv's newest interpreter of a minor version ("3.8"); throwing (so the test fails, never skips)
    /// when there is none.
    static func pyenv(_ minor: String) throws -> String {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "\(pyenvRoot())/versions")) ?? []
        let matching = versions.filter { $0.hasPrefix(minor + ".") && $0.dropFirst(minor.count + 1).allSatisfy(\.isNumber) }
        guard let newest = matching.max(by: { $0.compare($1, options: .numeric) == .orderedAscending }) else {
            throw Missing(description: "no CPython \(minor) under \(pyenvRoot())/versions: the tests need it")
        }
        let bin = "\(pyenvRoot())/versions/\(newest)/bin"
        // 2.7 has no python3.
        return FileManager.default.fileExists(atPath: "\(bin)/python3") ? "\(bin)/python3" : "\(bin)/python"
    }
}
