/// Kernel text symbols from /proc/kallsyms, for naming kernel frames. Read once per recording: the
/// kernel's own symbols do not move while it runs (modules loaded later are missed until the next read).
///
/// Kept as flat arrays (addresses, and every name in one byte buffer): some 120,000 symbols, of which a recording names
/// a few hundred, so a `String` is made only for a symbol that is asked for. The same arrays are the form the table is
/// cached in (`encoded()`), which is what makes reading it back cheap.
public struct KernelSymbols: Sendable {
    public struct Symbol: Sendable, Equatable {
        public let address: UInt64
        public let name: String
        /// "[module]" for a module's symbol, empty for the kernel image.
        public let module: String
    }

    /// Sorted.
    private let addresses: [UInt64]
    /// Symbol i's name is `names[nameOffsets[i]..<nameOffsets[i + 1]]`.
    private let nameOffsets: [UInt32]
    private let names: [UInt8]
    /// Index into `modules`, whose first is "" (the kernel image).
    private let moduleIndices: [UInt16]
    private let modules: [String]

    /// Text symbols sorted by address, each made as it is read.
    public var symbols: SymbolList { SymbolList(table: self) }

    public struct SymbolList: RandomAccessCollection, Sendable {
        let table: KernelSymbols
        public var startIndex: Int { 0 }
        public var endIndex: Int { table.addresses.count }
        public subscript(index: Int) -> Symbol { table.symbol(at: index) }
    }

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
        if table.addresses.isEmpty { throw ReadError.hidden }
        return table
    }

    /// Lines "ADDRESS TYPE NAME [MODULE]"; only text symbols (t, T, w, W) name code. Addresses of 0, as
    /// kallsyms shows them to the unprivileged, are dropped.
    public init(parsing text: String) {
        var addresses: [UInt64] = [], nameOffsets: [UInt32] = [0], names: [UInt8] = [], moduleIndices: [UInt16] = []
        var modules = [""], moduleIndex = ["": UInt16(0)]
        var text = text
        text.withUTF8 { bytes in
            addresses.reserveCapacity(bytes.count / 40)
            names.reserveCapacity(bytes.count / 2)
            Self.scanLines(bytes) { address, type, name, module in
                guard address != 0, type == UInt8(ascii: "t") || type == UInt8(ascii: "T")
                    || type == UInt8(ascii: "w") || type == UInt8(ascii: "W") else { return }
                var index: UInt16 = 0
                if let module {
                    let moduleName = String(decoding: UnsafeBufferPointer(rebasing: bytes[module]), as: UTF8.self)
                    if let known = moduleIndex[moduleName] {
                        index = known
                    } else {
                        // More than 65,535 modules cannot be loaded; their symbols would be left out.
                        guard modules.count <= Int(UInt16.max) else { return }
                        index = UInt16(modules.count)
                        moduleIndex[moduleName] = index
                        modules.append(moduleName)
                    }
                }
                addresses.append(address)
                names.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[name]))
                nameOffsets.append(UInt32(names.count))
                moduleIndices.append(index)
            }
        }
        // The kernel image's symbols come in address order, modules' after them in their own order.
        if !zip(addresses, addresses.dropFirst()).allSatisfy({ $0 <= $1 }) {
            let order = addresses.indices.sorted { addresses[$0] < addresses[$1] }
            var sortedNames: [UInt8] = [], sortedOffsets: [UInt32] = [0]
            sortedNames.reserveCapacity(names.count)
            for index in order {
                sortedNames += names[Int(nameOffsets[index])..<Int(nameOffsets[index + 1])]
                sortedOffsets.append(UInt32(sortedNames.count))
            }
            addresses = order.map { addresses[$0] }
            moduleIndices = order.map { moduleIndices[$0] }
            names = sortedNames
            nameOffsets = sortedOffsets
        }
        self.init(addresses: addresses, nameOffsets: nameOffsets, names: names, moduleIndices: moduleIndices, modules: modules)
    }

    private init(addresses: [UInt64], nameOffsets: [UInt32], names: [UInt8], moduleIndices: [UInt16], modules: [String]) {
        self.addresses = addresses
        self.nameOffsets = nameOffsets
        self.names = names
        self.moduleIndices = moduleIndices
        self.modules = modules
    }

    private func symbol(at index: Int) -> Symbol {
        let name = names[Int(nameOffsets[index])..<Int(nameOffsets[index + 1])]
        return Symbol(address: addresses[index], name: String(decoding: name, as: UTF8.self),
                      module: modules[Int(moduleIndices[index])])
    }

    // MARK: - Cached form

    /// Bounds on a table read back: kallsyms has some 120,000 text symbols and 3 MB of names.
    static let maxSymbols = 1 << 22
    static let maxNameBytes = 1 << 27

    /// The table as bytes: counts, then each array as it is in memory (little-endian), then the modules' names.
    public func encoded() -> [UInt8] {
        var writer = LittleEndianWriter(capacity: addresses.count * 14 + names.count + 64)
        writer.write(UInt32(addresses.count))
        writer.write(UInt32(names.count))
        writer.write(UInt32(modules.count))
        writer.writeArray(addresses)
        writer.writeArray(nameOffsets)
        writer.writeArray(moduleIndices)
        writer.writeBytes(names)
        for module in modules {
            writer.write(UInt16(module.utf8.count))
            writer.writeBytes(module.utf8)
        }
        return writer.bytes
    }

    /// The table `encoded()` made, if `bytes` are one: every count bounded, the lengths exact, the addresses sorted,
    /// the name offsets in order within the names, the module indices in range. Nil otherwise.
    public init?(encoded bytes: UnsafeRawBufferPointer) {
        var reader = LittleEndianReader(bytes)
        guard let count = reader.read(UInt32.self).map(Int.init), let nameBytes = reader.read(UInt32.self).map(Int.init),
              let moduleCount = reader.read(UInt32.self).map(Int.init),
              count <= Self.maxSymbols, nameBytes <= Self.maxNameBytes, moduleCount >= 1, moduleCount <= Int(UInt16.max) + 1,
              let addresses = reader.readArray(UInt64.self, count: count),
              let nameOffsets = reader.readArray(UInt32.self, count: count + 1),
              let moduleIndices = reader.readArray(UInt16.self, count: count),
              let names = reader.readBytes(nameBytes).map(Array.init)
        else { return nil }
        var modules: [String] = []
        for _ in 0..<moduleCount {
            guard let length = reader.read(UInt16.self), let module = reader.readBytes(Int(length)) else { return nil }
            modules.append(String(decoding: module, as: UTF8.self))
        }
        guard reader.isAtEnd, modules[0].isEmpty, nameOffsets.first == 0, nameOffsets.last == UInt32(nameBytes),
              zip(addresses, addresses.dropFirst()).allSatisfy({ $0 <= $1 }),
              zip(nameOffsets, nameOffsets.dropFirst()).allSatisfy({ $0 <= $1 }),
              moduleIndices.allSatisfy({ Int($0) < moduleCount })
        else { return nil }
        self.init(addresses: addresses, nameOffsets: nameOffsets, names: names, moduleIndices: moduleIndices, modules: modules)
    }

    public init?(encoded bytes: [UInt8]) {
        guard let table = bytes.withUnsafeBytes({ KernelSymbols(encoded: $0) }) else { return nil }
        self = table
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
        var high = addresses.count
        while low < high {
            let middle = (low + high) / 2
            if addresses[middle] <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        return (symbol(at: low - 1), address - addresses[low - 1])
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
