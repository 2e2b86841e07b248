import Native

/// The running kernel's symbols kept in the cache directory between runs: reading /proc/kallsyms costs some 60 ms of
/// the kernel's time (it formats 120,000 lines) and 20 ms of parsing at every start, the cached table a few.
///
/// Keyed by the boot (its ID: the image's addresses, KASLR's offset included, hold until the next boot) and by the modules
/// loaded now, their names, sizes and addresses from /proc/modules: a module loaded or reloaded since makes a new entry.
/// Symbols that come and go without a module (BPF programs' `[bpf]`, ftrace's trampolines) are as they were when the
/// entry was written, as they would be from a read at the start of a long recording.
enum KernelSymbolsCache {
    /// "PYBPFKS" and the format's version.
    static let magic: [UInt8] = Array("PYBPFKS".utf8) + [1]
    static let maxEntryBytes = 256 << 20

    /// The running kernel's symbols through the cache directory at `path` (the unwind tables' one): none when nil, or
    /// when it cannot be trusted or made (the tables' summary line says why).
    static func read(cachingIn path: String?) throws -> KernelSymbols {
        try read(in: path.flatMap { try? CacheDirectory(path: $0, maxBytes: UnwindTableCache.defaultMaxBytes) }).symbols
    }

    /// The running kernel's symbols, from `directory` when it has this boot's and these modules' entry (`true`), else
    /// read from /proc/kallsyms and stored there.
    static func read(in directory: CacheDirectory?) throws -> (symbols: KernelSymbols, cached: Bool) {
        guard let directory,
              let bootID = try? KernelFile.text("/proc/sys/kernel/random/boot_id"),
              let key = key(salt: directory.salt, bootID: bootID, modules: (try? KernelFile.text("/proc/modules")) ?? "")
        else { return (try KernelSymbols.read(), false) }
        if let cached = directory.read(key, magic: magic, maxEntryBytes: maxEntryBytes, decode: KernelSymbols.init(encoded:)) {
            return (cached, true)
        }
        let symbols = try KernelSymbols.read()
        directory.write(symbols.encoded(), key: key, magic: magic)
        return (symbols, false)
    }

    /// Nil when /proc/modules hides the modules' addresses (shown as 0 without CAP_SYSLOG): nothing to key by.
    static func key(salt: [UInt8], bootID: String, modules: String) -> [UInt8]? {
        var hash = CacheDirectory.bootHash(salt: salt, bootID: bootID)
        // "name size refcount dependencies state address": the reference counts and states change without moving code.
        for line in modules.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 6 else { continue }
            guard let address = UInt64(fields[5].dropFirst(2), radix: 16), address != 0 else { return nil }
            let identity = Array("\(fields[0]) \(fields[1]) \(address)\n".utf8)
            hash.update(identity)
        }
        return hash.finalize()
    }
}

/// The kernel's symbols as the stack decoders get them. Attaching, sampling starts without waiting for them (reading
/// /proc/kallsyms is 60-80 ms on a first run, beside the BPF load): they are read on a thread of their own, and the
/// first kernel frame to name waits for them, on the drain thread, while the ring buffer holds the records.
final class KernelSymbolsSource: @unchecked Sendable {
    private let reading: BackgroundResult<KernelSymbols>

    /// Starts `read`; `then` runs once it is done (to wake whoever checks `failure`).
    init(_ read: @escaping () throws -> KernelSymbols, then: @escaping () -> Void = {}) {
        reading = BackgroundResult(read, then: then)
    }

    /// Symbols read already.
    init(_ symbols: KernelSymbols) {
        reading = .ready(symbols)
    }

    /// Waits for the symbols; nil if they could not be read (`failure` says why).
    var symbols: KernelSymbols? { try? reading.value() }

    /// Whether reading is done, well or not.
    var isReady: Bool { reading.finished != nil }

    /// Why they could not be read, once that is known; nil while reading and after a success.
    var failure: Error? {
        guard case .failure(let error)? = reading.finished else { return nil }
        return error
    }

    /// Waits, and throws what reading threw.
    func wait() throws {
        _ = try reading.value()
    }
}
