extension ELFFile {
    /// The function containing link-time virtual address `address` (a runtime address minus the load bias), from
    /// `.symtab` and `.dynsym`: the `STT_FUNC` symbol, or `STT_NOTYPE`/`STT_GNU_IFUNC` symbol in an executable
    /// section, that starts at or below the address and whose `[value, value + size)` contains it.
    ///
    /// A symbol of size 0 (hand-written assembly often has no `.size`) covers everything up to the next symbol
    /// or the end of its section. Past a sized symbol's end, an enclosing sized symbol still counts (hand-written
    /// assembly declares second entry points inside functions, as GMP's `__gmpn_modexact_1c_odd` inside
    /// `__gmpn_modexact_1_odd`); otherwise the address gets nil, because it is padding or code that has no symbol,
    /// and naming it after the previous function would be wrong.
    ///
    /// Of several symbols at one address (aliases such as `getpid` and `__getpid`), the one covering the most wins,
    /// then `STT_FUNC`, then the name with the fewest leading underscores, then global before local, then the
    /// shorter name. The lookup table is built on the first call and kept for the lifetime of this `ELFFile`.
    public func function(containing address: UInt64) -> ELFSymbol? {
        let index = FunctionIndexTable.shared.index(of: self)
        return index.entry(containing: address).map { index.entries[$0].symbol }
    }
}

/// The function symbols of one file, one per address, sorted by address.
struct FunctionIndex: Sendable {
    struct Entry: Sendable {
        let symbol: ELFSymbol
        /// The exclusive end of the addresses the symbol covers: `value + size`, or for a symbol of size 0 the end of
        /// its section (a later symbol is found first by the search, which bounds it further).
        let end: UInt64
        /// The nearest earlier sized entry whose range contains this entry's start, or nil: where an address past
        /// this entry's end may still belong.
        let enclosing: Int?
    }

    let entries: [Entry]

    /// How many enclosing entries a lookup tries before giving up. Real nesting is one or two deep; a hostile
    /// symbol table could chain every symbol.
    private static let maximumEnclosingSteps = 8

    init(file: ELFFile) {
        self.init(symbols: file.symbols(), sections: file.sections)
    }

    init(symbols: [ELFSymbol], sections: [ELFSection]) {
        let functions = symbols
            .filter { Self.isFunction($0, sections: sections) }
            .sorted { $0.value != $1.value ? $0.value < $1.value : Self.preference($0) < Self.preference($1) }

        var entries: [Entry] = []
        entries.reserveCapacity(functions.count)
        // Indices of sized entries that may contain later ones, innermost last.
        var openSized: [Int] = []
        for symbol in functions where entries.last?.symbol.value != symbol.value {
            while let innermost = openSized.last, entries[innermost].end <= symbol.value { openSized.removeLast() }
            entries.append(Entry(symbol: symbol, end: Self.end(of: symbol, sections: sections), enclosing: openSized.last))
            if symbol.size > 0 { openSized.append(entries.count - 1) }
        }
        self.entries = entries
    }

    /// The index of the entry containing `address`, or nil.
    func entry(containing address: UInt64) -> Int? {
        // The number of entries starting at or below the address.
        var low = 0
        var high = entries.count
        while low < high {
            let middle = low + (high - low) / 2
            if entries[middle].symbol.value <= address { low = middle + 1 } else { high = middle }
        }
        var candidate = low > 0 ? low - 1 : nil
        var steps = 0
        while let index = candidate, steps <= Self.maximumEnclosingSteps {
            if address < entries[index].end { return index }
            candidate = entries[index].enclosing
            steps += 1
        }
        return nil
    }

    private static let typeNone: UInt8 = 0
    private static let typeIndirectFunction: UInt8 = 10  // STT_GNU_IFUNC: the symbol's value is its resolver's code

    private static func isFunction(_ symbol: ELFSymbol, sections: [ELFSection]) -> Bool {
        switch symbol.type {
        case ELFSymbol.typeFunction:
            return true
        case typeNone, typeIndirectFunction:
            // Untyped symbols also name data and linker-defined markers (`_end`, `__bss_start`); only those in
            // code are taken.
            return Int(symbol.sectionIndex) < sections.count && sections[Int(symbol.sectionIndex)].isExecutable
        default:
            return false
        }
    }

    private static func end(of symbol: ELFSymbol, sections: [ELFSection]) -> UInt64 {
        if symbol.size > 0 {
            let (end, overflow) = symbol.value.addingReportingOverflow(symbol.size)
            return overflow ? UInt64.max : end
        }
        guard Int(symbol.sectionIndex) < sections.count else { return UInt64.max }  // absolute: nothing bounds it
        let section = sections[Int(symbol.sectionIndex)]
        let (sectionEnd, overflow) = section.address.addingReportingOverflow(section.size)
        // A symbol outside its own section (a malformed file) covers nothing.
        guard !overflow, symbol.value >= section.address, symbol.value < sectionEnd else { return symbol.value }
        return sectionEnd
    }

    /// Sort key among symbols at the same address; smaller is preferred (see `ELFFile.function(containing:)`).
    private static func preference(_ symbol: ELFSymbol) -> (UInt64, Int, Int, Int, Int, String) {
        let typeRank = symbol.type == ELFSymbol.typeFunction ? 0 : symbol.type == typeIndirectFunction ? 1 : 2
        let bindingRank = symbol.binding == ELFSymbol.bindingLocal ? 1 : 0
        let leadingUnderscores = symbol.name.utf8.prefix { $0 == UInt8(ascii: "_") }.count
        return (UInt64.max - symbol.size, typeRank, leadingUnderscores, bindingRank, symbol.name.utf8.count, symbol.name)
    }
}

/// The `FunctionIndex` of each live `ELFFile`, built on first use. A side table because `ELFFile` is declared in
/// another file and extensions cannot add stored properties. Files are held weakly, so the table does not keep
/// their contents alive; entries of released files are dropped whenever another file's index is added.
private final class FunctionIndexTable: @unchecked Sendable {
    static let shared = FunctionIndexTable()

    private final class Entry {
        weak var file: ELFFile?
        let index: FunctionIndex

        init(file: ELFFile, index: FunctionIndex) {
            self.file = file
            self.index = index
        }
    }

    private let lock = Lock()
    private var entries: [ObjectIdentifier: Entry] = [:]

    func index(of file: ELFFile) -> FunctionIndex {
        let key = ObjectIdentifier(file)
        if let index = existing(for: file, key: key) { return index }
        // Built outside the lock so that a large file does not hold up lookups in others; two threads asking for
        // the same new file both build it and the first one stored wins.
        let built = FunctionIndex(file: file)
        lock.lock()
        defer { lock.unlock() }
        // An identifier is only unique among live objects: an entry whose file is gone belongs to a released file.
        if let entry = entries[key], entry.file === file { return entry.index }
        entries = entries.filter { $0.value.file != nil }
        entries[key] = Entry(file: file, index: built)
        return built
    }

    private func existing(for file: ELFFile, key: ObjectIdentifier) -> FunctionIndex? {
        lock.lock()
        defer { lock.unlock() }
        guard let entry = entries[key], entry.file === file else { return nil }
        return entry.index
    }
}
