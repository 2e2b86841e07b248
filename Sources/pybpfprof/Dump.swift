import ArgumentParser
import Foundation
import ProfileModel
import Profiler

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the current stack of every thread of a Python process, without pausing it.",
        discussion: """
            Each thread's Python, native and kernel frames, innermost first, read by a BPF program while the process \
            keeps running. A thread that is running on a CPU at that moment has no saved registers to read: it is \
            sampled instead (for up to 100 ms), and its stack is its first sample's, marked `(on CPU N, sampled)`.

            Examples:
              sudo pybpfprof dump --pid 1234
              sudo pybpfprof dump --pid 1234 --json | jq '.threads[].frames[0]'
            """
    )

    @Option(name: .long, help: "The process to dump (a thread id stands for its process).")
    var pid: Int32

    @Flag(name: .long, help: "Print JSON: {pid, command, python, interpreter, reader, limits, threads: [{tid, name, state, sampled, notes, frames: [...]}]}, frames innermost first; sampled: the stack is a sample of the running thread; limits: what the way the threads were read (reader) cannot show.")
    var json = false

    @Flag(name: .long, help: "Python frames only: no native or kernel frames.")
    var pythonOnly = false

    @Flag(name: .long, help: "Also show the interpreter's own native frames (libpython), which the default view replaces with the Python frames they run.")
    var interpreterFrames = false

    /// For the tests: the userspace reader is what kernels before 5.18 get, and is tested on newer ones by forcing it.
    @Option(name: .long, help: ArgumentHelp(
        "How threads are read: kernel-iterator (the BPF task iterator, Linux 5.18+) or userspace (/proc and "
            + "process_vm_readv). Default: the kernel iterator when the kernel loads it, else userspace.",
        visibility: .hidden))
    var threadReader: ThreadReader?

    func validate() throws {
        guard pid > 0 else { throw ValidationError("--pid must be a process id") }
        if pythonOnly && interpreterFrames {
            throw ValidationError("--python-only reads no native frames: drop --interpreter-frames")
        }
    }

    func run() throws {
        let dump = try failing {
            try Dumper.dump(DumpOptions(
                pid: pid, pythonOnly: pythonOnly, showInterpreterFrames: interpreterFrames, threadReader: threadReader))
        }
        for warning in dump.warnings { printToStandardError("pybpfprof: warning: \(warning)") }
        let text = json ? DumpRendering.json(dump) : DumpRendering.text(dump)
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}

/// The two ways `dump` prints a ProcessDump.
enum DumpRendering {
    /// Like py-spy dump: a process line, `Note: ` lines of the dump's limits if it has any, then per thread
    /// `Thread TID (name): state` (`running (on CPU N, sampled)` when the stack is a sample) and its frames, innermost
    /// first.
    static func text(_ dump: ProcessDump) -> String {
        var lines = ["Process \(dump.pid): \(dump.commandLine)", "Python \(dump.pythonVersion) (\(dump.interpreterPath))"]
        lines += dump.limits.map { "Note: \($0)" }
        for thread in dump.threads {
            lines.append("")
            let sampled = thread.sampledOnCPU.map { " (on CPU \($0), sampled)" } ?? ""
            lines.append("Thread \(thread.tid) (\(thread.name)): \(thread.state)\(sampled)")
            for note in thread.notes { lines.append("    [\(note)]") }
            for frame in thread.frames { lines.append("    " + text(frame)) }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `name (file:line)` for Python, `name (library)` for native code, `name [kernel]` for the kernel's frames.
    static func text(_ frame: Frame) -> String {
        switch frame.kind {
        case .python:
            if frame.file.isEmpty { return frame.name }
            return frame.line > 0 ? "\(frame.name) (\(frame.file):\(frame.line))" : "\(frame.name) (\(frame.file))"
        case .native:
            return frame.file.isEmpty ? frame.name : "\(frame.name) (\(frame.file))"
        case .kernel:
            return frame.file.isEmpty ? "\(frame.name) [kernel]" : "\(frame.name) [kernel: \(frame.file)]"
        case .marker:
            return frame.name
        }
    }

    /// One JSON object, keys in a fixed order; frames innermost first.
    static func json(_ dump: ProcessDump) -> String {
        var out = "{\"pid\":\(dump.pid),\"command\":\(string(dump.commandLine)),\"python\":\(string(dump.pythonVersion)),"
        out += "\"interpreter\":\(string(dump.interpreterPath)),\"reader\":\(string(dump.threadReader.rawValue)),"
        out += "\"limits\":[\(dump.limits.map(string).joined(separator: ","))],\"threads\":["
        out += dump.threads.map { thread in
            "{\"tid\":\(thread.tid),\"name\":\(string(thread.name)),\"state\":\(string(thread.state)),"
                + "\"sampled\":\(thread.sampledOnCPU != nil),"
                + "\"notes\":[\(thread.notes.map(string).joined(separator: ","))],"
                + "\"frames\":[\(thread.frames.map(json).joined(separator: ","))]}"
        }.joined(separator: ",")
        return out + "]}\n"
    }

    static func json(_ frame: Frame) -> String {
        switch frame.kind {
        case .python:
            return "{\"kind\":\"python\",\"name\":\(string(frame.name)),\"file\":\(string(frame.file)),\"line\":\(frame.line)}"
        case .native:
            return "{\"kind\":\"native\",\"name\":\(string(frame.name)),\"library\":\(string(frame.file))}"
        case .kernel:
            let module = frame.file.isEmpty ? "" : ",\"module\":\(string(frame.file))"
            return "{\"kind\":\"kernel\",\"name\":\(string(frame.name))\(module)}"
        case .marker:
            return "{\"kind\":\"marker\",\"name\":\(string(frame.name))}"
        }
    }

    /// A JSON string literal: `"`, `\` and control characters escaped, everything else as is (UTF-8).
    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension ThreadReader: ExpressibleByArgument {}
