/// Kernel text symbols from /proc/kallsyms, for naming kernel frames. Read once per recording: the
/// kernel's own symbols do not move while it runs (modules loaded later are missed until the next read).
public struct KernelSymbols: Sendable {
    public struct Symbol: Sendable, Equatable {
        public let address: UInt64
        public let name: String
        /// "[module]" for a module's symbol, empty for the kernel image.
        public let module: String
    }

    /// Text symbols sorted by address.
    public let symbols: [Symbol]

    public enum ReadError: Error, CustomStringConvertible {
        case unreadable(String)
        case hidden

        public var description: String {
            switch self {
            case .unreadable(let reason): return "cannot read /proc/kallsyms: \(reason)"
            case .hidden:
                // Shown to root with CAP_SYSLOG unless kptr_restrict is 2; a sandbox may also drop CAP_SYSLOG or hide
                // the file (systemd's ProtectKernelLogs and ProtectKernelTunables).
                let restrict = (try? KernelFile.text("/proc/sys/kernel/kptr_restrict"))?.filter(\.isNumber) ?? "?"
                if restrict == "2" {
                    return "/proc/kallsyms shows no addresses (kernel.kptr_restrict=2 hides them from root too): "
                        + "sysctl kernel.kptr_restrict=1"
                }
                return "/proc/kallsyms shows no addresses (kernel.kptr_restrict=\(restrict)): run as root with CAP_SYSLOG "
                    + "(sudo; a service must keep CAP_SYSLOG and /proc/kallsyms: no ProtectKernelLogs or ProtectKernelTunables)"
            }
        }
    }

    public static func read(path: String = "/proc/kallsyms") throws -> KernelSymbols {
        let text: String
        do {
            text = try KernelFile.text(path)
        } catch {
            throw ReadError.unreadable("\(error)")
        }
        let table = KernelSymbols(parsing: text)
        if table.symbols.isEmpty { throw ReadError.hidden }
        return table
    }

    /// Lines "ADDRESS TYPE NAME [MODULE]"; only text symbols (t, T, w, W) name code. Addresses of 0, as
    /// kallsyms shows them to the unprivileged, are dropped.
    public init(parsing text: String) {
        var symbols: [Symbol] = []
        var text = text
        text.withUTF8 { bytes in
            symbols.reserveCapacity(bytes.count / 40)
            Self.scanLines(bytes) { address, type, name, module in
                guard address != 0, type == UInt8(ascii: "t") || type == UInt8(ascii: "T")
                    || type == UInt8(ascii: "w") || type == UInt8(ascii: "W") else { return }
                symbols.append(Symbol(
                    address: address, name: String(decoding: UnsafeBufferPointer(rebasing: bytes[name]), as: UTF8.self),
                    module: module.map { String(decoding: UnsafeBufferPointer(rebasing: bytes[$0]), as: UTF8.self) } ?? ""))
            }
        }
        symbols.sort { $0.address < $1.address }
        self.symbols = symbols
    }

    /// Calls `body` with each well-formed line of kallsyms text: the address, the type letter, and the byte ranges of
    /// the name and of the module (`[ext4]`, nil for the kernel image). Works on the bytes: the file has some 120,000
    /// lines, and splitting it as Swift `String`s took 0.7 s of every recording's start (13 s under emulation).
    public static func scanLines(_ bytes: UnsafeBufferPointer<UInt8>,
                                 _ body: (_ address: UInt64, _ type: UInt8, _ name: Range<Int>, _ module: Range<Int>?) -> Void) {
        let newline = UInt8(ascii: "\n"), space = UInt8(ascii: " "), tab = UInt8(ascii: "\t")
        var position = 0
        let end = bytes.count
        while position < end {
            var lineEnd = position
            while lineEnd < end && bytes[lineEnd] != newline { lineEnd += 1 }
            defer { position = lineEnd + 1 }
            // ADDRESS: 1 to 16 hex digits, then a space.
            var address: UInt64 = 0
            var cursor = position
            while cursor < lineEnd, cursor - position <= 16, let digit = hexValue(bytes[cursor]) {
                address = address << 4 | UInt64(digit)
                cursor += 1
            }
            let digits = cursor - position
            // Then "T NAME": the type letter between two spaces.
            guard digits > 0, digits <= 16, cursor + 2 < lineEnd,
                  bytes[cursor] == space, bytes[cursor + 2] == space else { continue }
            let type = bytes[cursor + 1]
            let nameStart = cursor + 3
            var nameEnd = nameStart
            while nameEnd < lineEnd && bytes[nameEnd] != tab { nameEnd += 1 }
            guard nameEnd > nameStart else { continue }
            body(address, type, nameStart..<nameEnd, nameEnd < lineEnd ? (nameEnd + 1)..<lineEnd : nil)
        }
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The symbol an address falls in, with the offset into it: the last symbol at or below the address.
    public func symbolize(_ address: UInt64) -> (symbol: Symbol, offset: UInt64)? {
        var low = 0
        var high = symbols.count
        while low < high {
            let middle = (low + high) / 2
            if symbols[middle].address <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let symbol = symbols[low - 1]
        return (symbol, address - symbol.address)
    }
}

/// Kernel text symbols by name: the way back from a frame of `/proc/PID/stack` (`function+0xOFFSET/0xSIZE`, the
/// addresses themselves hidden) to an address that `KernelSymbols.symbolize` names again. Built when asked for: a
/// recording never needs it.
public struct KernelSymbolNames: Sendable {
    /// Indices into `symbols.symbols` by name; several for a name defined more than once (static functions of
    /// different files).
    private let indices: [String: [Int]]
    private let symbols: KernelSymbols

    public init(_ symbols: KernelSymbols) {
        var indices: [String: [Int]] = [:]
        for (index, symbol) in symbols.symbols.enumerated() { indices[symbol.name, default: []].append(index) }
        self.indices = indices
        self.symbols = symbols
    }

    /// The address of `name` in `module` ("" for the kernel image, "[module]" for a module's). Of several, the one whose
    /// size as kallsyms computes it (the distance to the next symbol) is `size`, else the first.
    public func address(of name: String, module: String, size: UInt64?) -> UInt64? {
        let candidates = (indices[name] ?? []).filter { symbols.symbols[$0].module == module }
        guard let first = candidates.first else { return nil }
        if candidates.count > 1, let size, let sized = candidates.first(where: { self.size(ofSymbolAt: $0) == size }) {
            return symbols.symbols[sized].address
        }
        return symbols.symbols[first].address
    }

    private func size(ofSymbolAt index: Int) -> UInt64? {
        let address = symbols.symbols[index].address
        return symbols.symbols[(index + 1)...].first { $0.address > address }.map { $0.address - address }
    }
}
