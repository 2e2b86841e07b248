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

    /// Debian's own `pythonM.m` in the root Scripts/setup --tests makes (`sid` or `trixie`), as the command that runs it
    /// there: their libc is newer than the host's.
    static func debian(_ suite: String, _ minor: String) throws -> [String] {
        let root = DebianRoots.path(suite)
        guard FileManager.default.isExecutableFile(atPath: "\(root)/usr/bin/python\(minor)") else {
            throw Missing(description: "no python\(minor) in Debian \(suite)'s root \(root): run sudo Scripts/setup --tests")
        }
        return [DebianRoots.chroot, root, "python\(minor)"]
    }

    static func startSleeping(_ python: String) throws -> (Process, String) { try startSleeping([python]) }

    /// Starts `python` (a command) sleeping for a minute once it has printed its version (in a spelling 2.7 also
    /// runs, so the interpreter is initialized when this returns), and returns it with "M.m.p".
    static func startSleeping(_ command: [String]) throws -> (Process, String) {
        try start(command, script: "import sys, time; sys.stdout.write('%d.%d.%d\\n' % tuple(sys.version_info[:3])); sys.stdout.flush(); time.sleep(60)")
    }

    /// Starts `command` running `script` (with -c) and returns it with the first line the script prints, once printed.
    static func start(_ command: [String], script: String) throws -> (Process, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst()) + ["-c", script]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        var line = Data()
        while !line.contains(0x0a) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        return (process, String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
