import CBPF
import Glibc
import Native

/// The kernel's types the BPF program relocates against (CO-RE), cut out of /sys/kernel/btf/vmlinux once per boot and
/// kept in the cache directory. libbpf parses all of vmlinux's BTF (5-6 MB, some 150,000 types) for the relocations of
/// every object it loads: 15-17 ms of CPU at each start, and again for the native stage loaded after it. Given this copy
/// instead (`btf_custom_path`, 17 KB on 6.18) it never reads vmlinux's, as long as no program needs the kernel's BTF
/// to attach (the sampler's tracepoints are raw ones for that reason; the dump's task iterator still has libbpf read it).
public final class KernelTypes: @unchecked Sendable {
    /// The structs the program's relocations start at: the names of its `preserve_access_index` types without their
    /// `___flavour` (bpf/pybpfprof.bpf.c). A relocation through a pointer (task->signal->live) starts again at the
    /// pointed-to struct, so each such struct is a root of its own. One missing here fails the program's load on every
    /// kernel (libbpf finds no candidate), which every recording test would show.
    static let structs = ["task_struct", "signal_struct", "thread_struct", "thread_info", "bpf_iter__task", "bpf_iter_meta"]
    /// The tracepoint whose prototype says which switch-out program fits the kernel (see SamplerProgram.switchOutProgram).
    static let typedefs = ["btf_trace_sched_switch"]

    /// "PYBPFBT" and the format's version (the roots above are part of the key).
    static let magic: [UInt8] = Array("PYBPFBT".utf8) + [1]
    static let maxEntryBytes = 16 << 20

    /// A memory file holding the image; libbpf opens it by path.
    private let fd: Int32
    /// The image's size in bytes.
    public let size: Int
    /// Whether it came from the cache directory.
    public let cached: Bool
    /// A path libbpf can open for the image while this object lives.
    public var path: String { "/proc/self/fd/\(fd)" }

    private init(image: UnsafeRawBufferPointer, cached: Bool) throws {
        let fd = cbpf_memory_file("pybpfprof-kernel-types", image.baseAddress, image.count)
        guard fd >= 0 else { throw KernelTypesError(description: "a memory file for the kernel's types: errno \(-fd)") }
        self.fd = fd
        size = image.count
        self.cached = cached
    }

    deinit { close(fd) }

    /// This boot's types from the cache directory at `path`, or cut out of the kernel's BTF and stored there. Nil when
    /// there is no cache directory to keep them in (cutting them out costs what libbpf's own parse does) or the kernel's
    /// BTF cannot be read: libbpf then reads vmlinux's BTF itself, as it would without this.
    public static func load(cachingIn path: String?) -> KernelTypes? {
        guard let path, let directory = try? CacheDirectory(path: path, maxBytes: UnwindTableCache.defaultMaxBytes) else { return nil }
        return load(in: directory)
    }

    static func load(in directory: CacheDirectory) -> KernelTypes? {
        guard let bootID = try? KernelFile.text("/proc/sys/kernel/random/boot_id") else { return nil }
        let key = key(salt: directory.salt, bootID: bootID)
        if let cached = directory.read(key, magic: magic, maxEntryBytes: maxEntryBytes, decode: { image in
            try? KernelTypes(image: image, cached: true)
        }) {
            return cached
        }
        guard let image = cut() else { return nil }
        directory.write(image, key: key, magic: magic)
        return image.withUnsafeBytes { try? KernelTypes(image: $0, cached: false) }
    }

    /// The running kernel's BTF holds until the next boot; the roots are in the key so that a build that reads other
    /// types makes an entry of its own.
    static func key(salt: [UInt8], bootID: String, roots: [String] = structs + typedefs) -> [UInt8] {
        var hash = CacheDirectory.bootHash(salt: salt, bootID: bootID)
        for root in roots {
            hash.update(UInt64(root.utf8.count))
            hash.update(Array(root.utf8))
        }
        return hash.finalize()
    }

    /// The image cut out of the kernel's BTF; nil if it cannot be read.
    static func cut() -> [UInt8]? {
        withCStrings(structs) { structNames in
            withCStrings(typedefs) { typedefNames -> [UInt8]? in
                var image: UnsafeMutableRawPointer?
                var size = 0
                guard cbpf_minimal_kernel_btf(structNames, Int32(structs.count), typedefNames, Int32(typedefs.count),
                                              &image, &size) == 0, let image else { return nil }
                defer { free(image) }
                return Array(UnsafeRawBufferPointer(start: image, count: size))
            }
        }
    }

    private static func withCStrings<T>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> T) -> T {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        return body(copies.map { UnsafePointer($0) })
    }
}

struct KernelTypesError: Error, CustomStringConvertible {
    let description: String
}
