import FoundationEssentials
import Glibc
import Native

/// A CPython version as the binary reports it.
public struct PythonVersion: Equatable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var micro: Int

    public init(major: Int, minor: Int, micro: Int) {
        self.major = major
        self.minor = minor
        self.micro = micro
    }

    /// From PY_VERSION_HEX (0x030C01F0 is 3.12.1 final).
    public init(hex: UInt32) {
        self.init(major: Int(hex >> 24), minor: Int((hex >> 16) & 0xff), micro: Int((hex >> 8) & 0xff))
    }

    public var description: String { "\(major).\(minor).\(micro)" }
}

public enum InterpreterError: Error, CustomStringConvertible, Equatable {
    case processGone(pid: Int32)
    case notPython(pid: Int32)
    case unknownVersion(pid: Int32, binary: String)
    case unsupportedVersion(pid: Int32, version: String)
    /// A free-threaded build (3.13t and later): its objects have another layout.
    case freeThreaded(pid: Int32, version: PythonVersion)
    /// The process's `_Py_DebugOffsets` describe structs other than the ones pybpfprof knows for its version.
    case unknownLayout(pid: Int32, version: PythonVersion, detail: String)
    case unreadable(pid: Int32, reason: String)

    public var description: String {
        switch self {
        case .processGone(let pid):
            return "process \(pid) does not exist (it may have exited): check the pid"
        case .notPython(let pid):
            return "process \(pid) is not running a CPython interpreter (no _PyRuntime in its executable or libraries)"
        case .unknownVersion(let pid, let binary):
            return "cannot tell which CPython version process \(pid) runs (\(binary)): no Py_Version symbol or version string"
        case .unsupportedVersion(let pid, let version):
            let supported = PythonOffsets.supportedVersions.map { "\($0.major).\($0.minor)" }
            return "process \(pid) runs Python \(version), which pybpfprof does not support (supported: "
                + "\(supported.joined(separator: ", "))): profile a supported version, or upgrade pybpfprof for a newer one"
        case .freeThreaded(let pid, let version):
            let minor = "\(version.major).\(version.minor)"
            return "process \(pid) runs a free-threaded build of Python \(version), whose objects pybpfprof cannot read "
                + "(another layout): profile the default build (python\(minor), not python\(minor)t)"
        case .unknownLayout(let pid, let version, let detail):
            return "process \(pid) runs Python \(version), whose _Py_DebugOffsets do not match the layout pybpfprof knows for "
                + "\(version.major).\(version.minor) (\(detail)): upgrade pybpfprof, or report the interpreter's exact build"
        case .unreadable(let pid, let reason):
            return "cannot read process \(pid): \(reason)"
        }
    }
}

/// Everything pybpfprof needs to know about one process's interpreter.
public struct PythonInterpreter: Sendable {
    public var pid: Int32
    /// The file holding the interpreter: the python executable (static build) or libpython.
    public var binaryPath: String
    public var version: PythonVersion
    public var offsets: PythonOffsets
    /// Runtime address of `_PyRuntime`.
    public var runtimeAddress: UInt64
    /// Set when the process's `_Py_DebugOffsets` disagreed with the generated table (its values won).
    public var debugOffsetsMismatch: [String] = []
    /// Runtime address of `PyCode_Type`, when the binary names it: a sampled frame's code object is decoded only if
    /// its type is this one (from 3.12 a frame's executable may be another object).
    public var codeTypeAddress: UInt64?
    /// Runtime address of the exported global `_PyThreadState_Current` (2.7, 3.6), the GIL holder's thread state; nil in
    /// other versions, or when the binary does not define it (see `gilProbe`).
    public var currentThreadStateAddress: UInt64?
    /// 2.7 and 3.6: where threads wait for the GIL, from the binary's local symbols (`GILWaitRange.statics(in:)`),
    /// relocated; nil in other versions (their range follows from the offsets: `gilWaitRange`).
    public var staticGILWaitRange: GILWaitRange?

    /// An interpreter as `InterpreterLocator` finds one; public for tests that lay out a process's memory by hand.
    public init(pid: Int32, binaryPath: String, version: PythonVersion, offsets: PythonOffsets, runtimeAddress: UInt64,
                debugOffsetsMismatch: [String] = [], codeTypeAddress: UInt64? = nil, currentThreadStateAddress: UInt64? = nil,
                staticGILWaitRange: GILWaitRange? = nil) {
        self.pid = pid
        self.binaryPath = binaryPath
        self.version = version
        self.offsets = offsets
        self.runtimeAddress = runtimeAddress
        self.debugOffsetsMismatch = debugOffsetsMismatch
        self.codeTypeAddress = codeTypeAddress
        self.currentThreadStateAddress = currentThreadStateAddress
        self.staticGILWaitRange = staticGILWaitRange
    }

    /// Address of `_PyRuntime.interpreters.head`, the slot the BPF program starts its thread search from.
    public var interpretersHeadAddress: UInt64 { runtimeAddress + UInt64(offsets.runtimeInterpretersHead) }
}

public enum InterpreterLocator {
    /// Finds the interpreter in a running process: the executable or library that defines `_PyRuntime`
    /// (whatever its file name), its version from the binary, and the load address from /proc/PID/maps.
    /// What `locate` learns from one file, remembered by device and inode when a cache is given: `--all` and
    /// `--subprocesses` locate every new process, most of them running binaries seen before.
    public final class FileCache: @unchecked Sendable {
        struct Facts {
            /// `_PyRuntime` (3.7+) or `interp_head` (2.7, 3.6): where the interpreter list starts.
            var runtimeSymbol: (name: String, value: UInt64)?
            var codeTypeSymbol: UInt64?
            /// `_PyThreadState_Current`, looked up only in a file whose list starts at `interp_head` (2.7, 3.6).
            var currentThreadStateSymbol: UInt64?
            /// The GIL's statics in such a file, at link-time addresses (`GILWaitRange.statics(in:)`).
            var staticGILWaitRange: GILWaitRange?
            var hasPyInitialize: Bool
            var layout: ELFLoadLayout
            /// From the file alone (Py_Version or .rodata); nil when only the process's memory can tell.
            var version: PythonVersion?
        }

        private let lock = Lock()
        private var facts: [String: Facts] = [:]

        public init() {}

        func facts(pid: Int32, path: String, mapping: MemoryMapping, mappings: [MemoryMapping]) -> Facts? {
            let key = "\(mapping.device):\(mapping.inode)"
            lock.lock()
            if let known = facts[key] {
                lock.unlock()
                return known
            }
            lock.unlock()
            guard let elf = try? InterpreterLocator.openMappedFile(pid: pid, path: path, mapping: mapping) else { return nil }
            let runtime = InterpreterLocator.runtimeSymbol(in: elf, scan: true)
            let result = Facts(
                runtimeSymbol: runtime, codeTypeSymbol: runtime == nil ? nil : elf.scanForSymbol(named: "PyCode_Type")?.value,
                currentThreadStateSymbol: runtime?.name == "interp_head"
                    ? elf.scanForSymbol(named: InterpreterLocator.currentThreadStateSymbol)?.value : nil,
                staticGILWaitRange: runtime?.name == "interp_head" ? GILWaitRange.statics(in: elf) : nil,
                hasPyInitialize: runtime != nil || elf.scanForSymbol(named: "Py_Initialize") != nil,
                layout: elf.loadLayout,
                version: runtime == nil ? nil : InterpreterLocator.fileVersion(of: elf))
            lock.lock()
            facts[key] = result
            lock.unlock()
            return result
        }
    }

    /// Locates the interpreter of process `pid`. With `cache`, each file is read once across calls (the version
    /// read from the process's memory, the last resort, is not cached).
    public static func locate(pid: Int32, cache: FileCache) throws -> PythonInterpreter {
        let mappings: [MemoryMapping]
        do {
            mappings = try MemoryMapping.read(pid: pid)
        } catch {
            throw kill(pid, 0) != 0 && errno == ESRCH
                ? InterpreterError.processGone(pid: pid) : InterpreterError.unreadable(pid: pid, reason: "\(error)")
        }
        var olderPython: (path: String, fileMappings: [MemoryMapping])?
        for (path, fileMappings) in candidateFiles(pid: pid, mappings: mappings) {
            guard let facts = cache.facts(pid: pid, path: path, mapping: fileMappings[0], mappings: fileMappings) else { continue }
            guard let runtimeSymbol = facts.runtimeSymbol else {
                if facts.hasPyInitialize && olderPython == nil { olderPython = (path, fileMappings) }
                continue
            }
            guard let bias = facts.layout.loadBias(mappings: fileMappings) else {
                throw InterpreterError.unreadable(pid: pid, reason: "cannot find the load address of \(path)")
            }
            if facts.version == nil { break }  // only the process's memory can tell: the uncached path does that
            return try interpreter(pid: pid, path: path, version: facts.version!, runtimeSymbol: runtimeSymbol, bias: bias,
                                   codeTypeAddress: facts.codeTypeSymbol.map { bias &+ $0 },
                                   currentThreadStateAddress: facts.currentThreadStateSymbol.map { bias &+ $0 },
                                   staticGILWaitRange: facts.staticGILWaitRange)
        }
        if olderPython == nil, kill(pid, 0) != 0 && errno == ESRCH { throw InterpreterError.processGone(pid: pid) }
        if olderPython == nil && !mappings.isEmpty {
            // Nothing here holds an interpreter (or its version needs the process's memory): let the full path decide.
            if candidateFiles(pid: pid, mappings: mappings).allSatisfy({ path, fileMappings in
                cache.facts(pid: pid, path: path, mapping: fileMappings[0], mappings: fileMappings).map {
                    $0.runtimeSymbol == nil && !$0.hasPyInitialize
                } ?? false
            }) {
                throw InterpreterError.notPython(pid: pid)
            }
        }
        return try locate(pid: pid)
    }

    /// Where a binary's interpreter list starts: `_PyRuntime`, else 2.7's and 3.6's static `interp_head` (a local
    /// symbol, so only in the full symbol table). `scan`: without building the file's symbol index.
    static func runtimeSymbol(in elf: ELFFile, scan: Bool) -> (name: String, value: UInt64)? {
        for name in ["_PyRuntime", "interp_head"] {
            if let symbol = scan ? elf.scanForSymbol(named: name) : elf.symbol(named: name) { return (name, symbol.value) }
        }
        return nil
    }

    /// The exported global that holds the GIL holder's `PyThreadState*` in 2.7 and 3.6 (`PyAPI_DATA`, so in `.dynsym` of a
    /// stripped build too). It is looked up in the file that holds the interpreter. (An executable that used it directly
    /// and was linked with a copy relocation would have the live copy in its own `.bss`: no CPython here does.)
    static let currentThreadStateSymbol = "_PyThreadState_Current"

    static func interpreter(pid: Int32, path: String, version: PythonVersion, runtimeSymbol: (name: String, value: UInt64),
                            bias: UInt64, codeTypeAddress: UInt64?, currentThreadStateAddress: UInt64? = nil,
                            staticGILWaitRange: GILWaitRange? = nil) throws -> PythonInterpreter {
        guard var offsets = PythonOffsets.forVersion(major: version.major, minor: version.minor) else {
            throw InterpreterError.unsupportedVersion(pid: pid, version: version.description)
        }
        guard runtimeSymbol.name == offsets.runtimeSymbol else {
            throw InterpreterError.unreadable(
                pid: pid, reason: "\(path) runs Python \(version) but defines \(runtimeSymbol.name), not \(offsets.runtimeSymbol)")
        }
        let runtimeAddress = bias &+ runtimeSymbol.value
        var mismatch: [String] = []
        if let layout = offsets.debugOffsets {
            mismatch = try DebugOffsets.reconcile(&offsets, layout: layout, pid: pid, version: version, runtimeAddress: runtimeAddress)
        }
        return PythonInterpreter(
            pid: pid, binaryPath: path, version: version, offsets: offsets,
            runtimeAddress: runtimeAddress, debugOffsetsMismatch: mismatch, codeTypeAddress: codeTypeAddress,
            currentThreadStateAddress: offsets.runtimeSymbol == "interp_head" ? currentThreadStateAddress : nil,
            staticGILWaitRange: offsets.runtimeSymbol == "interp_head" ? staticGILWaitRange?.relocated(by: bias) : nil
        )
    }

    /// The version a binary states itself: `Py_Version` (3.11+), else the PY_VERSION string in `.rodata`.
    static func fileVersion(of elf: ELFFile) -> PythonVersion? {
        if let symbol = elf.scanForSymbol(named: "Py_Version"),
           let bytes = elf.bytes(atVirtualAddress: symbol.value, count: 4),
           let hex = bytes.uint32(at: 0), hex >> 24 >= 2 {
            return PythonVersion(hex: hex)
        }
        if let rodata = elf.section(named: ".rodata"), let data = try? elf.data(of: rodata) {
            return VersionString.mostCommon(in: data, requireTerminator: true)
        }
        return nil
    }

    public static func locate(pid: Int32) throws -> PythonInterpreter {
        let mappings: [MemoryMapping]
        do {
            mappings = try MemoryMapping.read(pid: pid)
        } catch {
            throw kill(pid, 0) != 0 && errno == ESRCH
                ? InterpreterError.processGone(pid: pid) : InterpreterError.unreadable(pid: pid, reason: "\(error)")
        }
        for (path, fileMappings) in candidateFiles(pid: pid, mappings: mappings) {
            guard let elf = try? openMappedFile(pid: pid, path: path, mapping: fileMappings[0]),
                  let runtime = runtimeSymbol(in: elf, scan: false)
            else { continue }
            guard let bias = elf.loadBias(mappings: fileMappings) else {
                throw InterpreterError.unreadable(pid: pid, reason: "cannot find the load address of \(path)")
            }
            guard let version = try version(of: elf, pid: pid, bias: bias, mappings: fileMappings) else {
                throw InterpreterError.unknownVersion(pid: pid, binary: path)
            }
            return try interpreter(pid: pid, path: path, version: version, runtimeSymbol: runtime, bias: bias,
                                   codeTypeAddress: elf.symbol(named: "PyCode_Type").map { bias &+ $0.value },
                                   currentThreadStateAddress: elf.symbol(named: currentThreadStateSymbol).map { bias &+ $0.value },
                                   staticGILWaitRange: runtime.name == "interp_head" ? GILWaitRange.statics(in: elf) : nil)
        }
        // An interpreter whose list start no symbol names: a stripped 2.7 or 3.6 (interp_head is a local symbol), or
        // something older. Name it rather than calling it "not Python".
        for (path, fileMappings) in candidateFiles(pid: pid, mappings: mappings) {
            guard let elf = try? openMappedFile(pid: pid, path: path, mapping: fileMappings[0]),
                  elf.symbol(named: "Py_Initialize") != nil
            else { continue }
            let bias = elf.loadBias(mappings: fileMappings) ?? 0
            let version = (try? version(of: elf, pid: pid, bias: bias, mappings: fileMappings)) ?? nil
            if let version, PythonOffsets.forVersion(major: version.major, minor: version.minor) != nil {
                throw InterpreterError.unreadable(
                    pid: pid, reason: "\(path) (Python \(version)) is stripped: its interp_head is only in the full symbol "
                        + "table; profile a build that keeps it")
            }
            throw InterpreterError.unsupportedVersion(pid: pid, version: version?.description ?? "older than 2.7")
        }
        if kill(pid, 0) != 0 && errno == ESRCH { throw InterpreterError.processGone(pid: pid) }
        throw InterpreterError.notPython(pid: pid)
    }

    /// File-backed mappings grouped by file, most likely interpreter first: the executable, libpython, other files
    /// whose name mentions python, every other mapped file with executable code, and last extension modules
    /// (`x.cpython-312-x86_64-linux-gnu.so`, `x.abi3.so`), which never hold the interpreter: a process that imported
    /// numpy and onnxruntime maps dozens of them, some of tens of megabytes.
    static func candidateFiles(pid: Int32, mappings: [MemoryMapping]) -> [(String, [MemoryMapping])] {
        var byPath: [String: [MemoryMapping]] = [:]
        var order: [String] = []
        for mapping in mappings where mapping.path.hasPrefix("/") {
            if byPath[mapping.path] == nil { order.append(mapping.path) }
            byPath[mapping.path, default: []].append(mapping)
        }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
        func rank(_ path: String) -> Int {
            if path == executable { return 0 }
            // The file name: every path here is absolute (a mapped file's).
            let name = path.split(separator: "/").last ?? ""
            if name.hasPrefix("libpython") { return 1 }
            if name.contains(".cpython-") || name.hasSuffix(".abi3.so") { return 4 }
            if name.contains("python") { return 2 }
            return 3
        }
        return order
            .filter { path in byPath[path]!.contains { $0.executable } }
            .enumerated()
            .sorted { (rank($0.element), $0.offset) < (rank($1.element), $1.offset) }
            .map { ($0.element, byPath[$0.element]!) }
    }

    /// Opens a file the process maps, through /proc/PID/map_files (the exact inode, also when deleted or
    /// in another mount namespace), falling back to the path resolved inside the process's root (never outside
    /// it: see `openInRoot`).
    public static func openMappedFile(pid: Int32, path: String, mapping: MemoryMapping) throws -> ELFFile {
        let mapFile = "/proc/\(pid)/map_files/\(String(mapping.start, radix: 16))-\(String(mapping.end, radix: 16))"
        if let elf = try? ELFFile(path: mapFile) { return elf }
        return try ELFFile(path: path, inRoot: "/proc/\(pid)/root")
    }

    /// The CPython version a binary implements: `Py_Version` (3.11+), else the PY_VERSION string in
    /// .rodata, else sys.version's buffer in the process's memory. Never the file name.
    static func version(of elf: ELFFile, pid: Int32, bias: UInt64, mappings: [MemoryMapping]) throws -> PythonVersion? {
        if let symbol = elf.symbol(named: "Py_Version"),
           let bytes = elf.bytes(atVirtualAddress: symbol.value, count: 4),
           let hex = bytes.uint32(at: 0), hex >> 24 >= 2 {
            return PythonVersion(hex: hex)
        }
        if let rodata = elf.section(named: ".rodata"), let data = try? elf.data(of: rodata),
           let version = VersionString.mostCommon(in: data, requireTerminator: true) {
            return version
        }
        // Py_GetVersion formats "3.9.18 (main, ...)" into a static buffer during startup.
        let memory = ProcessMemory(pid: pid)
        for mapping in mappings where mapping.writable && mapping.end - mapping.start <= 16 << 20 {
            guard let bytes = try? memory.read(mapping.start, count: Int(mapping.end - mapping.start)) else { continue }
            if let version = VersionString.mostCommon(in: bytes[...], requireTerminator: false) { return version }
        }
        return nil
    }
}

/// Finds CPython version strings in raw bytes.
enum VersionString {
    /// The most frequent "M.m.p" (M 2 or 3) that is not preceded by a digit or dot. With
    /// `requireTerminator` it must end a NUL-terminated string (PY_VERSION is often merged by the linker
    /// as the tail of a longer string such as an install path); otherwise it must be followed by " (",
    /// as in sys.version.
    static func mostCommon(in bytes: ArraySlice<UInt8>, requireTerminator: Bool) -> PythonVersion? {
        var counts: [String: (PythonVersion, Int)] = [:]
        let base = bytes.startIndex
        let end = bytes.endIndex
        var index = base
        func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
        func number(at start: Int) -> (value: Int, end: Int)? {
            var position = start
            var value = 0
            while position < end, isDigit(bytes[position]), position - start < 3 {
                value = value * 10 + Int(bytes[position] - 0x30)
                position += 1
            }
            return position > start && (position == end || !isDigit(bytes[position])) ? (value, position) : nil
        }
        while index + 5 < end {
            let byte = bytes[index]
            guard byte == 0x32 || byte == 0x33, bytes[index + 1] == 0x2e,
                  index == base || !(isDigit(bytes[index - 1]) || bytes[index - 1] == 0x2e)
            else { index += 1; continue }
            defer { index += 1 }
            guard let minor = number(at: index + 2), minor.end < end, bytes[minor.end] == 0x2e,
                  let micro = number(at: minor.end + 1)
            else { continue }
            // Optional release tag (a1, b2, rc1) and '+'.
            var position = micro.end
            while position < end, position - micro.end < 5,
                  (bytes[position] >= 0x61 && bytes[position] <= 0x7a) || isDigit(bytes[position]) || bytes[position] == 0x2b {
                position += 1
            }
            let terminated = requireTerminator
                ? position < end && bytes[position] == 0
                : position + 1 < end && bytes[position] == 0x20 && bytes[position + 1] == 0x28
            guard terminated else { continue }
            let version = PythonVersion(major: Int(byte - 0x30), minor: minor.value, micro: micro.value)
            counts[version.description, default: (version, 0)].1 += 1
        }
        return counts.values.max { ($0.1, $1.0.description) < ($1.1, $0.0.description) }?.0
    }
}
