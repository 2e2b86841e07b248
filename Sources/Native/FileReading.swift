#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a file could not be read, worded for the user; `errorNumber` lets callers tell "missing" from other failures.
struct FileReadError: Error, CustomStringConvertible {
    /// The errno of the failing call, or nil if the file was refused for what it is.
    let errorNumber: Int32?
    let description: String

    init(path: String, operation: String, errorNumber: Int32) {
        self.errorNumber = errorNumber
        self.description = "\(operation) \(path): \(String(cString: strerror(errorNumber)))"
    }

    init(refusing path: String, because reason: String) {
        self.errorNumber = nil
        self.description = "\(path): \(reason)"
    }
}

/// A file opened for reading, closed when released.
final class OpenFile: @unchecked Sendable {
    private let descriptor: Int32
    /// Names the file in errors.
    let path: String
    /// The size `fstat` reported at open; 0 for procfs files, which have no size until read.
    let size: Int
    private let isRegularFile: Bool

    private init(descriptor: Int32, path: String, size: Int, isRegularFile: Bool) {
        self.descriptor = descriptor
        self.path = path
        self.size = size
        self.isRegularFile = isRegularFile
    }

    /// Takes ownership of `descriptor`: it is closed when the file is released, also when it is refused here. With
    /// `regularFileOnly`, anything that is not a regular file is refused: a hostile container could put a FIFO (which
    /// would block forever) or a device such as `/dev/zero` (which never ends) where a binary is expected. Files larger
    /// than `maximumSize` bytes (e.g. a huge sparse file) are refused.
    fileprivate static func adopting(_ descriptor: Int32, path: String, regularFileOnly: Bool, maximumSize: Int) throws -> OpenFile {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let error = FileReadError(path: path, operation: "fstat", errorNumber: errno)
            close(descriptor)
            throw error
        }
        let file = OpenFile(descriptor: descriptor, path: path, size: Int(status.st_size), isRegularFile: status.st_mode & S_IFMT == S_IFREG)
        if regularFileOnly && !file.isRegularFile {
            throw FileReadError(refusing: path, because: "not a regular file")
        }
        if file.isRegularFile && file.size > maximumSize { throw tooLarge(path, maximumSize) }
        return file
    }

    deinit {
        close(descriptor)
    }

    private static func tooLarge(_ path: String, _ maximumSize: Int) -> FileReadError {
        FileReadError(refusing: path, because: "larger than the \(maximumSize) bytes accepted")
    }

    /// The `count` bytes at `offset`, with `pread`, which leaves the file position alone, so threads may read at
    /// the same time. Throws if the file ends before them (it shrank since it was opened).
    func bytes(count: Int, at offset: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let readCount = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + done, count - done, off_t(offset + done))
            }
            if readCount < 0 {
                if errno == EINTR { continue }
                throw FileReadError(path: path, operation: "read", errorNumber: errno)
            }
            if readCount == 0 {
                throw FileReadError(
                    refusing: path, because: "ends at byte \(offset + done), inside the \(count) bytes at offset \(offset) (it shrank since it was opened)")
            }
            done += readCount
        }
        return bytes
    }

    /// Reads from the file position with plain `read(2)` to the end of the file: procfs files report size 0, so the
    /// size from `fstat` is only a capacity hint. Throws if the contents grow past `maximumSize` bytes.
    func readToEnd(maximumSize: Int) throws -> [UInt8] {
        var contents: [UInt8] = []
        contents.reserveCapacity(isRegularFile ? size : 0)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let readCount = chunk.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress, buffer.count)
            }
            if readCount == 0 { break }
            if readCount < 0 {
                if errno == EINTR { continue }
                throw FileReadError(path: path, operation: "read", errorNumber: errno)
            }
            contents.append(contentsOf: chunk[0..<readCount])
            if contents.count > maximumSize { throw Self.tooLarge(path, maximumSize) }  // it grew while we read
        }
        return contents
    }
}

enum FileReading {
    /// Opens `path` for reading, non-blocking so that checking what it is cannot hang on a FIFO; see `OpenFile.adopting`
    /// for `regularFileOnly` and `maximumSize`.
    static func openFile(_ path: String, regularFileOnly: Bool, maximumSize: Int = Int.max) throws -> OpenFile {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { throw FileReadError(path: path, operation: "open", errorNumber: errno) }
        return try OpenFile.adopting(descriptor, path: path, regularFileOnly: regularFileOnly, maximumSize: maximumSize)
    }

    /// Like `openFile(_:regularFileOnly:maximumSize:)` for `path` inside `root` (see `openInRoot`).
    static func openFile(_ path: String, inRoot root: String, regularFileOnly: Bool, maximumSize: Int = Int.max) throws -> OpenFile {
        let descriptor: Int32
        do {
            descriptor = try openInRoot(path, root: root)
        } catch let error as OpenInRootError {
            throw FileReadError(path: pathInRoot(path, root: root), operation: "open", errorNumber: error.errorNumber)
        }
        return try OpenFile.adopting(descriptor, path: pathInRoot(path, root: root), regularFileOnly: regularFileOnly,
                                     maximumSize: maximumSize)
    }

    /// Reads a whole file (see `OpenFile.readToEnd`).
    static func contents(of path: String, regularFileOnly: Bool, maximumSize: Int = Int.max) throws -> [UInt8] {
        try openFile(path, regularFileOnly: regularFileOnly, maximumSize: maximumSize).readToEnd(maximumSize: maximumSize)
    }
}

/// procfs and sysfs files as text, read to their end (they report size 0, so a reader that trusts the size
/// stops after its first read; Foundation's `String(contentsOfFile:)` does).
public enum KernelFile {
    /// - Parameter maximumSize: a file longer than this many bytes is an error (a file another program writes, such
    ///   as a process's cgroup path, is bounded so).
    public static func text(_ path: String, maximumSize: Int = Int.max) throws -> String {
        do {
            return String(decoding: try FileReading.contents(of: path, regularFileOnly: false, maximumSize: maximumSize), as: UTF8.self)
        } catch let error as FileReadError {
            throw KernelFileError(description: error.description)
        }
    }
}

public struct KernelFileError: Error, CustomStringConvertible {
    public let description: String
}
