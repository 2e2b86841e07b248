import Foundation

/// Where pyenv keeps the CPythons the tests run.
public enum Pyenv {
    public struct NotFound: Error, CustomStringConvertible {
        public var description: String
    }

    /// PYENV_ROOT, else what `pyenv root` says, else /root/.pyenv; throws (so the test fails, never
    /// skips) when none is a directory.
    public static func root() throws -> String {
        var tried: [String] = []
        if let root = ProcessInfo.processInfo.environment["PYENV_ROOT"], !root.isEmpty {
            if isDirectory(root) { return root }
            tried.append("PYENV_ROOT=\(root)")
        }
        if let root = askPyenvForRoot() {
            if isDirectory(root) { return root }
            tried.append("`pyenv root`=\(root)")
        }
        if isDirectory("/root/.pyenv") { return "/root/.pyenv" }
        tried.append("/root/.pyenv")
        throw NotFound(description: "cannot find pyenv's root (tried \(tried.joined(separator: ", "))): the tests "
            + "need pyenv's CPython 3.7 to 3.13 and 2.7; set PYENV_ROOT")
    }

    private static func askPyenvForRoot() -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["pyenv", "root"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        let root = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return root.isEmpty ? nil : root
    }

    private static func isDirectory(_ path: String) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
    }
}
