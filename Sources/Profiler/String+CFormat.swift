import Glibc

extension String {
    /// `format` with `arguments` as C's printf writes them (vsnprintf): the numbers of the summaries and of `top`
    /// ("%.1f", "%6.1f", "%g"), exactly as Foundation's String(format:) wrote them (it formats numbers with printf's
    /// rules too), without Foundation. Numbers only: Int as %ld, UInt64 as %llu, Double as %f or %g; strings go
    /// around the format, not through it.
    public init(cFormat format: String, _ arguments: CVarArg...) {
        // The length first, then the text: a va_list is used once.
        let length = withVaList(arguments) { vsnprintf(nil, 0, format, $0) }
        guard length > 0 else {
            self = ""
            return
        }
        var buffer = [CChar](repeating: 0, count: Int(length) + 1)
        _ = withVaList(arguments) { vsnprintf(&buffer, buffer.count, format, $0) }
        self = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
