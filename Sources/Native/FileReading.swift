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

enum FileReading {
    /// Reads a whole file with plain `read(2)` until end of file.
    ///
    /// procfs files report size 0, so the size from `fstat` is only a capacity hint. With `regularFileOnly`,
    /// anything that is not a regular file is refused: a hostile container could put a FIFO (which would block
    /// forever) or a device such as `/dev/zero` (which never ends) where a binary is expected. The file is opened
    /// non-blocking so that the check itself cannot hang on a FIFO. Files larger than `maximumSize` bytes
    /// (e.g. a huge sparse file) are refused rather than exhausting memory.
    static func contents(of path: String, regularFileOnly: Bool, maximumSize: Int = Int.max) throws -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { throw FileReadError(path: path, operation: "open", errorNumber: errno) }
        defer { close(descriptor) }
        return try contents(of: descriptor, path: path, regularFileOnly: regularFileOnly, maximumSize: maximumSize)
    }

    /// Like `contents(of:regularFileOnly:maximumSize:)` for `path` inside `root` (see `openInRoot`).
    static func contents(of path: String, inRoot root: String, regularFileOnly: Bool, maximumSize: Int = Int.max) throws -> [UInt8] {
        let descriptor: Int32
        do {
            descriptor = try openInRoot(path, root: root)
        } catch let error as OpenInRootError {
            throw FileReadError(path: pathInRoot(path, root: root), operation: "open", errorNumber: error.errorNumber)
        }
        defer { close(descriptor) }
        return try contents(of: descriptor, path: pathInRoot(path, root: root), regularFileOnly: regularFileOnly,
                            maximumSize: maximumSize)
    }

    /// Reads an open file to its end; `path` names it in errors.
    private static func contents(of descriptor: Int32, path: String, regularFileOnly: Bool, maximumSize: Int) throws -> [UInt8] {

        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw FileReadError(path: path, operation: "fstat", errorNumber: errno)
        }
        let isRegularFile = status.st_mode & S_IFMT == S_IFREG
        if regularFileOnly && !isRegularFile {
            throw FileReadError(refusing: path, because: "not a regular file")
        }

        let tooLarge = FileReadError(refusing: path, because: "larger than the \(maximumSize) bytes accepted")
        if isRegularFile && Int(status.st_size) > maximumSize { throw tooLarge }

        var contents: [UInt8] = []
        contents.reserveCapacity(isRegularFile ? Int(status.st_size) : 0)
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
            if contents.count > maximumSize { throw tooLarge }  // it grew while we read
        }
        return contents
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
