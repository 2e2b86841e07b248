import Glibc

/// A failed libbpf or system call, with the errno it carried and what we were doing.
public struct BPFError: Error, CustomStringConvertible {
    public let operation: String
    public let errno: Int32
    /// The tail of libbpf's log (e.g. the verifier's reason), when it has something to say.
    public let log: String

    public init(_ operation: String, errno: Int32, log: String = "") {
        self.operation = operation
        self.errno = errno
        self.log = log
    }

    public var description: String {
        let reason = errno != 0 ? String(cString: strerror(errno)) : "failed"
        return log.isEmpty ? "\(operation): \(reason)" : "\(operation): \(reason)\n\(log)"
    }
}

/// libbpf returns -errno from most calls (and sets errno); turns that into a throw.
@discardableResult
func check(_ result: Int32, _ operation: @autoclosure () -> String) throws -> Int32 {
    if result < 0 { throw BPFError(operation(), errno: -result) }
    return result
}
