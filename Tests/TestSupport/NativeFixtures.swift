import Foundation

/// Builds the native fixtures of the mixed Python/native stack tests (Tests/IntegrationTests/Fixtures/native)
/// with the machine's `cc`, or for an interpreter in another root (a Debian root run with chroot) with that root's compiler.
///
/// Both are compiled with `-O2 -fomit-frame-pointer`, so their frames keep no frame pointer and a stack through
/// them unwinds only with .eh_frame. Checked once by hand with gcc 12.2 (Debian 12) and binutils 2.40: no
/// function of either fixture has the `push %rbp; mov %rsp,%rbp` prologue; `objdump -d` shows, for example,
///
///     <chain_05>:                        <ext_outer_native>:
///       sub    $0x8,%rsp                   push   %r13
///       add    $0x5,%rdi                   xor    %eax,%eax
///       call   <chain_06>                  push   %r12
///       add    $0x8,%rsp                   push   %rbp        (a callee-saved register, not a frame)
///       xor    $0x50505,%rax               push   %rbx
///       ret                                ...
///
/// ext_inner_native opens with `sub $0x18,%rsp` (room for PyArg_ParseTuple's outputs), and chain_10, a leaf,
/// touches no stack at all. Scripts/check-native-fixtures repeats that check for every build.
public enum NativeFixtures {
    /// A fixture that would not build: the command, its exit status and what it wrote to standard error.
    public struct BuildError: Error, CustomStringConvertible {
        public var command: [String]
        public var status: Int32
        public var standardError: String

        public var description: String {
            "`\(command.joined(separator: " "))` exited with status \(status)"
                + (standardError.isEmpty ? "" : ":\n\(standardError)")
        }
    }

    /// Compiles callback_ext.c for `python` (the interpreter's executable path) into `directory` with
    /// `cc -O2 -fomit-frame-pointer -shared -fPIC -I<include dir>` and the interpreter's EXT_SUFFIX, both asked of
    /// the interpreter itself (sysconfig.get_paths()['include'] or 'platinclude'; sysconfig.get_config_var('EXT_SUFFIX')).
    /// Throws an error with the compiler's stderr if the build fails. Returns the built module's path.
    public static func buildCallbackExtension(python: String, source: String, into directory: String) throws -> String {
        try buildCallbackExtension(python: [python], source: source, into: directory)
    }

    /// The same for an interpreter run by a command (`chroot ROOT /usr/bin/python3.14`), compiled with `compiler`
    /// (`chroot ROOT /usr/bin/gcc`), the two seeing the filesystem under `root` (nil: the host's). `source` and
    /// `directory` are paths as they see them, and so is the path returned: the caller makes the source visible there
    /// (the integration tests copy it to the same path under the root). The interpreter's include directories are
    /// checked for Python.h under `root`, and `directory` is made there.
    public static func buildCallbackExtension(python: [String], compiler: [String] = ["cc"], root: String? = nil,
                                              source: String, into directory: String) throws -> String {
        // No PYTHONPATH or user site can change what sysconfig says (-E -s: 2.7 has no -I).
        let script = """
            import sysconfig
            paths = sysconfig.get_paths()
            print(paths.get('include') or '')
            print(paths.get('platinclude') or '')
            print(sysconfig.get_config_var('EXT_SUFFIX') or sysconfig.get_config_var('SO') or '')
            """
        let query = python + ["-E", "-s", "-c", script]
        let answer = try run(query)
        guard answer.status == 0 else {
            throw BuildError(command: query, status: answer.status, standardError: answer.standardError)
        }
        let lines = answer.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard lines.count >= 3, !lines[2].isEmpty else {
            throw BuildError(command: query, status: answer.status,
                             standardError: "no EXT_SUFFIX in the interpreter's answer: \(answer.standardOutput)")
        }
        let suffix = lines[2]
        // Where the host finds a path the interpreter and the compiler name.
        func onHost(_ path: String) -> String { (root ?? "") + path }
        // 'include' holds Python.h; 'platinclude' may differ and hold pyconfig.h. Both, in that order, without
        // repeats; none that is not a directory.
        var includes: [String] = []
        for candidate in lines[0...1] where !candidate.isEmpty && !includes.contains(candidate) {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: onHost(candidate), isDirectory: &isDirectory), isDirectory.boolValue {
                includes.append(candidate)
            }
        }
        guard includes.contains(where: { FileManager.default.fileExists(atPath: onHost($0) + "/Python.h") }) else {
            throw BuildError(command: query, status: answer.status, standardError: "no Python.h in the interpreter's "
                + "include directories (\(lines[0...1].joined(separator: ", "))\(root.map { " in \($0)" } ?? "")): install its "
                + "headers (on Debian, the python3.X-dev package)")
        }
        try FileManager.default.createDirectory(atPath: onHost(directory), withIntermediateDirectories: true)
        let output = (directory as NSString).appendingPathComponent("callback_ext" + suffix)
        try compile(compiler + ["-O2", "-fomit-frame-pointer", "-shared", "-fPIC"] + includes.map { "-I" + $0 }
            + ["-o", output, source])
        return output
    }

    /// Compiles a C program (chain10.c, jit_frames.c) with `cc -O2 -fomit-frame-pointer -pthread`; returns the
    /// executable's path, named after the source.
    public static func buildProgram(source: String, into directory: String) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let name = ((source as NSString).lastPathComponent as NSString).deletingPathExtension
        let output = (directory as NSString).appendingPathComponent(name)
        try compile(["cc", "-O2", "-fomit-frame-pointer", "-pthread", "-o", output, source])
        return output
    }

    /// Runs a compiler command (`cc ARGUMENTS...`).
    private static func compile(_ command: [String]) throws {
        let result = try run(command)
        guard result.status == 0 else {
            throw BuildError(command: command, status: result.status, standardError: result.standardError)
        }
    }

    private struct Finished {
        var status: Int32
        var standardOutput: String
        var standardError: String
    }

    /// Runs `command` (its first element looked up on PATH unless it has a slash) to its end. Standard error goes
    /// to a temporary file rather than a second pipe, so neither output can fill up and stall the process while
    /// the other is read.
    private static func run(_ command: [String]) throws -> Finished {
        let process = Process()
        if command[0].contains("/") {
            process.executableURL = URL(fileURLWithPath: command[0])
            process.arguments = Array(command.dropFirst())
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = command
        }
        let errorPath = (NSTemporaryDirectory() as NSString)
            .appendingPathComponent("native-fixtures-\(UUID().uuidString).stderr")
        guard FileManager.default.createFile(atPath: errorPath, contents: nil),
              let errorFile = FileHandle(forWritingAtPath: errorPath) else {
            throw BuildError(command: command, status: -1, standardError: "cannot create \(errorPath)")
        }
        defer { try? FileManager.default.removeItem(atPath: errorPath) }
        let output = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = errorFile
        do {
            try process.run()
        } catch {
            try? errorFile.close()
            throw error
        }
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try? errorFile.close()
        let errorData = FileManager.default.contents(atPath: errorPath) ?? Data()
        return Finished(status: process.terminationStatus,
                        standardOutput: String(decoding: outputData, as: UTF8.self),
                        standardError: String(decoding: errorData, as: UTF8.self))
    }
}
