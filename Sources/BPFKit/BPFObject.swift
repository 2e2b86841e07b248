import CBPF
import FoundationEssentials
import Glibc

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
    /// Per program, the buffer the verifier writes its statistics into (see `collectVerifierStatistics`).
    private var statisticsLogs: [String: UnsafeMutableBufferPointer<CChar>] = [:]

    /// - Parameter kernelTypes: a BTF file libbpf relocates against instead of the kernel's own (`btf_custom_path`).
    public init(elf: [UInt8], name: String, kernelTypes: String? = nil) throws {
        cbpf_capture_libbpf_log()
        cbpf_clear_libbpf_log()
        let image = UnsafeMutableRawBufferPointer.allocate(byteCount: elf.count, alignment: 8)
        image.copyBytes(from: elf)
        var options = bpf_object_open_opts()
        options.sz = MemoryLayout<bpf_object_open_opts>.size
        let object = name.withCString { cName -> OpaquePointer? in
            options.object_name = cName
            // libbpf copies the path.
            guard let kernelTypes else { return bpf_object__open_mem(image.baseAddress, elf.count, &options) }
            return kernelTypes.withCString { path in
                options.btf_custom_path = path
                return bpf_object__open_mem(image.baseAddress, elf.count, &options)
            }
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
        statisticsLogs.values.forEach { $0.deallocate() }
    }

    /// The names of the object's programs, loaded or not.
    var programNames: [String] {
        var names: [String] = []
        var program = bpf_object__next_program(handle, nil)
        while let current = program {
            names.append(String(cString: bpf_program__name(current)))
            program = bpf_object__next_program(handle, current)
        }
        return names
    }

    /// Whether `load()` loads program `name`; only before `load()`. Programs whose section starts with `?` are not
    /// loaded unless switched on here, and a program nobody attaches need not cost its verification.
    public func setAutoload(_ program: BPFProgramName, _ load: Bool) throws {
        try check(bpf_program__set_autoload(try self.program(program), load), "choosing whether to load BPF program \(program)")
    }

    func willLoad(program name: String) -> Bool {
        (try? program(named: name)).map { bpf_program__autoload($0) } ?? false
    }

    /// Clears BPF_F_NO_PREALLOC from a map: kernels before 6.1 let perf_event programs use preallocated hash maps only.
    public func preallocate(_ map: BPFMapName) throws {
        let handle = try self.map(named: map.rawValue)
        try check(bpf_map__set_map_flags(handle, bpf_map__map_flags(handle) & ~UInt32(BPF_F_NO_PREALLOC)), "preallocating map \(map)")
    }

    /// Has the verifier report, for each program `load()` loads, how many instructions it processed (its log at level
    /// BPF_LOG_STATS: a line or two per program, and the reason for a rejection). Only before `load()`.
    public func collectVerifierStatistics() throws {
        for name in programNames where willLoad(program: name) {
            let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: 16 * 1024)
            buffer.initialize(repeating: 0)
            statisticsLogs[name] = buffer
            let program = try program(named: name)
            try check(bpf_program__set_log_buf(program, buffer.baseAddress, buffer.count), "setting the verifier log of \(name)")
            try check(bpf_program__set_log_level(program, 4), "setting the verifier log level of \(name)")
        }
    }

    /// After `collectVerifierStatistics` and `load()`: the instructions the verifier processed per program (its
    /// "processed N insns" line), for the programs it reported on.
    public func verifiedInstructions() -> [String: Int] {
        var result: [String: Int] = [:]
        for (name, buffer) in statisticsLogs {
            let log = String(cString: buffer.baseAddress!)
            guard let range = log.firstRange(of: "processed ") else { continue }
            let digits = log[range.upperBound...].prefix { $0.isNumber }
            if let count = Int(digits) { result[name] = count }
        }
        return result
    }

    /// A loaded program's instructions as libbpf gave them to the kernel (CO-RE relocations applied), each 8 bytes as a
    /// little-endian word; the map references of 64-bit loads (`BPF_PSEUDO_MAP_FD`, `BPF_PSEUDO_MAP_VALUE`) have their
    /// file descriptors zeroed, so that the same program loaded by two objects compares equal.
    public func relocatedInstructions(of name: BPFProgramName) throws -> [UInt64] {
        let program = try program(name)
        guard let instructions = bpf_program__insns(program) else { return [] }
        let count = Int(bpf_program__insn_cnt(program))
        var words = UnsafeRawPointer(instructions).withMemoryRebound(to: UInt64.self, capacity: count) {
            Array(UnsafeBufferPointer(start: $0, count: count))
        }
        var index = 0
        while index < words.count {
            let opcode = words[index] & 0xff, sourceRegister = (words[index] >> 12) & 0xf
            if opcode == 0x18 /* BPF_LD | BPF_IMM | BPF_DW */ {
                if sourceRegister == 1 || sourceRegister == 2 { words[index] &= 0xffff_ffff }
                index += 2
            } else {
                index += 1
            }
        }
        return words
    }

    /// The verifier's log of one program after `collectVerifierStatistics` and `load()`: for a rejected program, the
    /// reason (at BPF_LOG_STATS only the error lines and the statistics).
    public func verifierLog(program name: String) -> String {
        statisticsLogs[name].map { String(cString: $0.baseAddress!) } ?? ""
    }

    /// Has every map of this object use the same-named map of `other` (loaded) instead of creating its own: a
    /// program loaded later through this object shares the first one's maps, its configuration (`.rodata`) included.
    /// Only before `load()`.
    public func shareMaps(of other: BPFObject) throws {
        var map = bpf_object__next_map(handle, nil)
        while let current = map {
            let name = String(cString: bpf_map__name(current))
            let fd = try other.mapFD(named: name)
            try check(bpf_map__reuse_fd(current, fd), "sharing BPF map \(name)")
            map = bpf_object__next_map(handle, current)
        }
    }

    public func setMaxEntries(map: BPFMapName, _ entries: UInt32) throws {
        try check(bpf_map__set_max_entries(try self.map(named: map.rawValue), entries), "sizing map \(map)")
    }

    /// Sets the program's tunables (`struct pybpfprof_config` in bpf/pybpfprof.h, its one `const volatile` global);
    /// only before `load()`.
    public func setConfiguration(_ configuration: pybpfprof_config) throws {
        let result = withUnsafeBytes(of: configuration) { cbpf_set_constant(handle, "config", $0.baseAddress, $0.count) }
        try check(result, "setting the BPF program's configuration")
    }

    /// Loads every program and map; a verifier rejection throws a `BPFLoadError` naming the program.
    public func load() throws {
        cbpf_clear_libbpf_log()
        let result = bpf_object__load(handle)
        if result < 0 {
            let log = String(cString: cbpf_libbpf_log())
            throw BPFLoadError(errno: -result, program: Self.failedProgram(in: log), libbpfLog: log)
        }
    }

    /// The program libbpf names in "prog 'NAME': failed to load" (or "BPF program load failed"), if any.
    public static func failedProgram(in log: String) -> String? {
        for line in log.split(separator: "\n") where line.contains("failed to load") || line.contains("load failed") {
            guard let start = line.firstRange(of: "prog '"), let end = line[start.upperBound...].firstIndex(of: "'") else { continue }
            return String(line[start.upperBound..<end])
        }
        return nil
    }

    public func program(_ name: BPFProgramName) throws -> OpaquePointer {
        try program(named: name.rawValue)
    }

    func program(named name: String) throws -> OpaquePointer {
        guard let program = bpf_object__find_program_by_name(handle, name) else {
            throw BPFError("finding BPF program \(name)", errno: ENOENT)
        }
        return program
    }

    public func mapFD(_ map: BPFMapName) throws -> Int32 {
        try mapFD(named: map.rawValue)
    }

    func mapFD(named name: String) throws -> Int32 {
        try check(bpf_map__fd(try self.map(named: name)), "finding map \(name)")
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

/// `bpf_object__load` failed: a program the verifier rejected (`program`), or a map or relocation libbpf could not
/// set up (`program` nil). `libbpfLog` is all libbpf said (the tail of it, see shims.c).
public struct BPFLoadError: Error, CustomStringConvertible {
    public let errno: Int32
    public let program: String?
    public let libbpfLog: String

    public var description: String {
        let reason = String(cString: strerror(errno))
        return program.map { "the kernel rejected BPF program \($0): \(reason)" } ?? "loading the BPF program: \(reason)"
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
