import CSystem
import Glibc

/// Why a read of another process's memory failed.
public enum ProcessMemoryError: Error, CustomStringConvertible, Equatable {
    /// The process no longer exists.
    case processGone(pid: Int32)
    /// The range is not mapped (or only partly): a stale pointer, a freed object.
    case unmapped(address: UInt64, count: Int)
    case failed(pid: Int32, errno: Int32)

    public var description: String {
        switch self {
        case .processGone(let pid): return "process \(pid) is gone"
        case .unmapped(let address, let count): return "\(count) bytes at 0x\(String(address, radix: 16)) are not mapped"
        case .failed(let pid, let code): return "reading memory of process \(pid): \(String(cString: strerror(code)))"
        }
    }
}

/// Where another process's memory is read from: `ProcessMemory`, or bytes laid out by hand in a test.
public protocol MemoryReading {
    /// `count` bytes at `address`, or an error (`ProcessMemoryError`) when they cannot all be read.
    func read(_ address: UInt64, count: Int) throws -> [UInt8]
}

extension MemoryReading {
    /// The little-endian 64-bit word (a pointer) at `address`.
    public func readUInt64(_ address: UInt64) throws -> UInt64 {
        try read(address, count: 8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }

    /// The little-endian 32-bit word at `address`.
    public func readUInt32(_ address: UInt64) throws -> UInt32 {
        try read(address, count: 4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
    }
}

/// Reads another process's memory with process_vm_readv: no ptrace, no stop, never a write.
/// Everything read is untrusted; callers bound lengths before asking.
public struct ProcessMemory: MemoryReading, Sendable {
    public let pid: Int32

    public init(pid: Int32) { self.pid = pid }

    public func read(_ address: UInt64, count: Int) throws -> [UInt8] {
        precondition(count >= 0 && count <= 64 << 20, "unbounded read of \(count) bytes")
        if count == 0 { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        let result = bytes.withUnsafeMutableBytes { buffer in
            csystem_read_process_memory(pid, UInt(address), buffer.baseAddress, UInt(count))
        }
        if result == count { return bytes }
        if result >= 0 { throw ProcessMemoryError.unmapped(address: address, count: count) }
        switch Int32(-result) {
        case ESRCH: throw ProcessMemoryError.processGone(pid: pid)
        case EFAULT: throw ProcessMemoryError.unmapped(address: address, count: count)
        default: throw ProcessMemoryError.failed(pid: pid, errno: Int32(-result))
        }
    }
}

extension Array where Element == UInt8 {
    /// Little-endian loads from a buffer read out of a process or file; nil past the end.
    public func uint64(at offset: Int) -> UInt64? {
        guard offset >= 0, offset + 8 <= count else { return nil }
        return withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
    }

    public func uint32(at offset: Int) -> UInt32? {
        guard offset >= 0, offset + 4 <= count else { return nil }
        return withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }
}
