#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file could not be written: `cannot write /nope/x.json: No such file or directory`.
public struct FileWriteError: Error, CustomStringConvertible {
    public var path: String
    /// The system's description of the failure, e.g. `Permission denied`.
    public var reason: String

    public var description: String { "cannot write \(path): \(reason)" }
}

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one, never a part:
/// the bytes go to a temporary file in the same directory (rename is only atomic within a file system),
/// which then replaces `path`. On failure the temporary file is removed and `path` is left as it was.
///
/// The new file gets the permissions a plain create would (0666 less the umask), not those of the file it
/// replaces. A symbolic link at `path` is replaced by the file, not followed.
public func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    func failure(_ error: Int32) -> FileWriteError {
        FileWriteError(path: path, reason: String(cString: strerror(error)))
    }

    let (temporaryPath, descriptor) = try createTemporaryFile(beside: path, failure: failure)
    var renamed = false
    defer {
        if !renamed { unlink(temporaryPath) }
    }

    var written = 0
    while written < bytes.count {
        let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
        if result < 0 {
            if errno == EINTR { continue }
            let error = failure(errno)
            close(descriptor)
            throw error
        }
        written += result
    }
    // Without fsync, a crash soon after the rename can leave an empty file under the new name.
    let syncError = fsync(descriptor) == 0 ? 0 : errno
    let closeError = close(descriptor) == 0 ? 0 : errno
    if syncError != 0 || closeError != 0 { throw failure(syncError != 0 ? syncError : closeError) }
    guard rename(temporaryPath, path) == 0 else { throw failure(errno) }
    renamed = true
}

/// Creates and opens `.<name>.<random>.tmp` in `path`'s directory, hidden so that directory listings and
/// globs skip it should the process die before removing it.
private func createTemporaryFile(
    beside path: String, failure: (Int32) -> FileWriteError
) throws -> (path: String, descriptor: Int32) {
    let directoryEnd = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
    let directory = path[..<directoryEnd]
    let name = path[directoryEnd...]
    // O_EXCL fails on a name someone else holds; a few random tries make that practically impossible.
    for _ in 0..<8 {
        let suffix = String(UInt64.random(in: .min ... .max), radix: 16)
        let temporaryPath = "\(directory).\(name).\(suffix).tmp"
        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        if descriptor >= 0 { return (temporaryPath, descriptor) }
        if errno != EEXIST { throw failure(errno) }
    }
    throw failure(EEXIST)
}
