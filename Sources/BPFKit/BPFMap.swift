import CBPF
import Glibc

/// A BPF map by file descriptor, with typed key/value access. Keys and values must be the C types the
/// map was declared with in bpf/pybpfprof.h.
public struct BPFMap {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    public func update<Key, Value>(_ key: Key, _ value: Value) throws {
        try withUnsafeBytes(of: key) { key in
            try withUnsafeBytes(of: value) { value in
                _ = try check(bpf_map_update_elem(fd, key.baseAddress, value.baseAddress, UInt64(BPF_ANY)), "updating BPF map")
            }
        }
    }

    /// Writes a value given as raw bytes: for values too large to build as a Swift struct (an imported C array of
    /// a thousand elements is a thousand-element tuple). `value.count` must be the map's value size.
    public func update<Key>(_ key: Key, bytes value: UnsafeRawBufferPointer) throws {
        try withUnsafeBytes(of: key) { key in
            _ = try check(bpf_map_update_elem(fd, key.baseAddress, value.baseAddress, UInt64(BPF_ANY)), "updating BPF map")
        }
    }

    /// Deletes a key; a missing key is not an error.
    public func delete<Key>(_ key: Key) throws {
        let result = withUnsafeBytes(of: key) { bpf_map_delete_elem(fd, $0.baseAddress) }
        if result < 0 && -result != ENOENT { try check(result, "deleting from BPF map") }
    }

    /// The values of every possible CPU for a per-CPU map's key.
    public func perCPUValues<Key, Value>(_ key: Key, as: Value.Type) throws -> [Value] {
        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { throw BPFError("counting possible CPUs", errno: -Int32(cpus)) }
        // The kernel rounds each per-CPU value up to 8 bytes.
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: stride * cpus, alignment: 8)
        defer { buffer.deallocate() }
        try withUnsafeBytes(of: key) { key in
            _ = try check(bpf_map_lookup_elem(fd, key.baseAddress, buffer.baseAddress), "reading per-CPU BPF map")
        }
        return (0..<cpus).map { buffer.loadUnaligned(fromByteOffset: $0 * stride, as: Value.self) }
    }
}

/// A `BPF_F_MMAPABLE` array map mapped into our address space: userspace writes elements with plain stores,
/// the BPF program sees them at once. Unmapped on deinit.
public final class MappedArrayMap {
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int

    public init(fd: Int32, valueSize: Int, entries: Int) throws {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        byteCount = (valueSize * entries + pageSize - 1) / pageSize * pageSize
        let address = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let address, address != MAP_FAILED else { throw BPFError("mapping a BPF array into memory", errno: errno) }
        base = address
    }

    deinit { munmap(base, byteCount) }
}
