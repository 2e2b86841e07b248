import ProfileModel

/// The two ways `dump` prints a ProcessDump.
public enum DumpRendering {
    /// Like py-spy dump: a process line, `Note: ` lines of the dump's limits if it has any, then per thread
    /// `Thread TID (name): state` (`running (on CPU N, sampled)` when the stack is a sample) and its frames
    /// (`Frame.LabelStyle.location`), innermost first.
    public static func text(_ dump: ProcessDump) -> String {
        var lines = ["Process \(dump.pid): \(dump.commandLine)", "Python \(dump.pythonVersion) (\(dump.interpreterPath))"]
        lines += dump.limits.map { "Note: \($0)" }
        for thread in dump.threads {
            lines.append("")
            let sampled = thread.sampledOnCPU.map { " (on CPU \($0), sampled)" } ?? ""
            lines.append("Thread \(thread.tid) (\(thread.name)): \(thread.state)\(sampled)")
            for note in thread.notes { lines.append("    [\(note)]") }
            for frame in thread.frames { lines.append("    " + frame.label(.location)) }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// One JSON object and a newline, keys in a fixed order; frames innermost first.
    public static func json(_ dump: ProcessDump) -> String {
        var writer = JSONWriter()
        writer.raw("{")
        writer.key("pid")
        writer.number(Int(dump.pid))
        writer.raw(",")
        writer.key("command")
        writer.string(dump.commandLine)
        writer.raw(",")
        writer.key("python")
        writer.string(dump.pythonVersion)
        writer.raw(",")
        writer.key("interpreter")
        writer.string(dump.interpreterPath)
        writer.raw(",")
        writer.key("reader")
        writer.string(dump.threadReader.rawValue)
        writer.raw(",")
        writer.key("limits")
        writer.array(dump.limits) { $0.string($1) }
        writer.raw(",")
        writer.key("threads")
        writer.array(dump.threads, write)
        writer.raw("}\n")
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    private static func write(_ writer: inout JSONWriter, _ thread: ThreadDump) {
        writer.raw("{")
        writer.key("tid")
        writer.number(Int(thread.tid))
        writer.raw(",")
        writer.key("name")
        writer.string(thread.name)
        writer.raw(",")
        writer.key("state")
        writer.string(thread.state)
        writer.raw(",")
        writer.key("sampled")
        writer.raw(thread.sampledOnCPU != nil ? "true" : "false")
        writer.raw(",")
        writer.key("notes")
        writer.array(thread.notes) { $0.string($1) }
        writer.raw(",")
        writer.key("frames")
        writer.array(thread.frames, write)
        writer.raw("}")
    }

    /// The frame's fields under the names of what they are for its kind: a native frame's file is its library, a
    /// kernel frame's its module (left out when it has none).
    private static func write(_ writer: inout JSONWriter, _ frame: Frame) {
        writer.raw("{")
        writer.key("kind")
        switch frame.kind {
        case .python:
            writer.string("python")
            writer.raw(",")
            writer.key("name")
            writer.string(frame.name)
            writer.raw(",")
            writer.key("file")
            writer.string(frame.file)
            writer.raw(",")
            writer.key("line")
            writer.number(frame.line)
        case .native:
            writer.string("native")
            writer.raw(",")
            writer.key("name")
            writer.string(frame.name)
            writer.raw(",")
            writer.key("library")
            writer.string(frame.file)
        case .kernel:
            writer.string("kernel")
            writer.raw(",")
            writer.key("name")
            writer.string(frame.name)
            if !frame.file.isEmpty {
                writer.raw(",")
                writer.key("module")
                writer.string(frame.file)
            }
        case .marker:
            writer.string("marker")
            writer.raw(",")
            writer.key("name")
            writer.string(frame.name)
        }
        writer.raw("}")
    }
}
