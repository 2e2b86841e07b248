import CBPF
import Foundation

/// The compiled BPF program embedded in this binary by the EmbedBPF build plugin.
public enum EmbeddedBPF {
    public static var object: [UInt8] {
        guard let data = Data(base64Encoded: embeddedBPFObjectBase64) else {
            fatalError("the embedded BPF object is not valid base64: the build is broken")
        }
        return [UInt8](data)
    }
}

/// A libbpf object: opened from ELF bytes, sized, loaded into the kernel, closed on deinit.
public final class BPFObject {
    private let handle: OpaquePointer
    /// libbpf keeps pointers into the ELF image until the object is closed.
    private let image: UnsafeMutableRawBufferPointer

    public init(elf: [UInt8], name: String) throws {
        cbpf_capture_libbpf_log()
        cbpf_clear_libbpf_log()
        let image = UnsafeMutableRawBufferPointer.allocate(byteCount: elf.count, alignment: 8)
        image.copyBytes(from: elf)
        var options = bpf_object_open_opts()
        options.sz = MemoryLayout<bpf_object_open_opts>.size
        let object = name.withCString { cName -> OpaquePointer? in
            options.object_name = cName
            return bpf_object__open_mem(image.baseAddress, elf.count, &options)
        }
        self.image = image
        guard let object, libbpf_get_error(UnsafeRawPointer(object)) == 0 else {
            image.deallocate()
            throw BPFError("opening the BPF object", errno: Glibc.errno, log: Self.log())
        }
        handle = object
    }

    deinit {
        bpf_object__close(handle)
        image.deallocate()
    }

    public func setMaxEntries(map name: String, _ entries: UInt32) throws {
        try check(bpf_map__set_max_entries(try map(named: name), entries), "sizing map \(name)")
    }

    /// Sets a `const volatile` tunable of the program; only before `load()`.
    public func setConstant<Value>(_ name: String, _ value: Value) throws {
        let result = withUnsafeBytes(of: value) { cbpf_set_constant(handle, name, $0.baseAddress, $0.count) }
        try check(result, "setting BPF constant \(name)")
    }

    /// Loads every program and map; a verifier rejection throws with the verifier's log.
    public func load() throws {
        cbpf_clear_libbpf_log()
        let result = bpf_object__load(handle)
        if result < 0 { throw BPFError("loading the BPF program", errno: -result, log: Self.log()) }
    }

    public func program(named name: String) throws -> OpaquePointer {
        guard let program = bpf_object__find_program_by_name(handle, name) else {
            throw BPFError("finding BPF program \(name)", errno: ENOENT)
        }
        return program
    }

    public func mapFD(named name: String) throws -> Int32 {
        try check(bpf_map__fd(try map(named: name)), "finding map \(name)")
    }

    private func map(named name: String) throws -> OpaquePointer {
        guard let map = bpf_object__find_map_by_name(handle, name) else {
            throw BPFError("finding BPF map \(name)", errno: ENOENT)
        }
        return map
    }

    /// The last lines of libbpf's log: the verifier's reason is at the end.
    private static func log() -> String {
        let lines = String(cString: cbpf_libbpf_log()).split(separator: "\n")
        return lines.suffix(12).joined(separator: "\n")
    }
}

/// A program's kernel run statistics (needs `kernel.bpf_stats_enabled` or `BPFStatistics`).
public struct BPFProgramStats: Sendable {
    public var runCount: UInt64
    public var runTimeNanoseconds: UInt64

    public static func read(program: OpaquePointer) throws -> BPFProgramStats {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        try check(bpf_obj_get_info_by_fd(bpf_program__fd(program), &info, &length), "reading BPF program info")
        return BPFProgramStats(runCount: info.run_cnt, runTimeNanoseconds: info.run_time_ns)
    }
}

/// Keeps the kernel's BPF run-time statistics switched on while alive (BPF_ENABLE_STATS).
public final class BPFStatistics {
    private let fd: Int32

    public init() throws {
        fd = try check(bpf_enable_stats(BPF_STATS_RUN_TIME), "enabling BPF statistics")
    }

    deinit { close(fd) }
}
