extension Frame {
    /// How a frame is written as text. The styles differ by design: each is what its readers expect.
    public enum LabelStyle: Sendable, CaseIterable {
        /// A function without its line (own time adds up over the lines of one function), with where it lives:
        /// `name (file.py)` with the file's last path component, `name [kernel]`, `name [kernel module]`. The
        /// function tables of `record`'s summary and of `top`.
        case function
        /// Where exactly: `name (path:line)` or `name (path)` for Python, `name (library)` for native code (no line),
        /// `name [kernel]` or `name [kernel: module]` for the kernel. `dump`'s text.
        case location
        /// Folded stacks: `name (file:line)` or `name (file)` for Python and native frames, `name_[k]` for the
        /// kernel, the suffix flamegraph.pl and inferno colour as kernel code. Not yet cleared of the characters
        /// that would split a folded line (FoldedExporter does that).
        case folded
    }

    /// The frame as one line of text in `style`.
    public func label(_ style: LabelStyle) -> String {
        switch (style, kind) {
        case (.function, .kernel):
            return file.isEmpty ? "\(name) [kernel]" : "\(name) [kernel \(file)]"
        case (.function, _):
            return file.isEmpty ? name : "\(name) (\(lastPathComponent(file)))"
        case (.location, .python):
            if file.isEmpty { return name }
            return line > 0 ? "\(name) (\(file):\(line))" : "\(name) (\(file))"
        case (.location, .native):
            return file.isEmpty ? name : "\(name) (\(file))"
        case (.location, .kernel):
            return file.isEmpty ? "\(name) [kernel]" : "\(name) [kernel: \(file)]"
        case (.folded, .python), (.folded, .native):
            if file.isEmpty { return name }
            return line == 0 ? "\(name) (\(file))" : "\(name) (\(file):\(line))"
        case (.folded, .kernel):
            return name + "_[k]"
        case (.location, .marker), (.folded, .marker):
            return name
        }
    }
}
