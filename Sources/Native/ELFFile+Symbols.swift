extension ELFFile {
    /// The defined symbol called `name`, from `.symtab` (full, if not stripped) or else `.dynsym` (exported only).
    /// When several symbols share the name, a global or weak one wins over file-local statics.
    /// The first call builds an index of all symbols; later calls are dictionary lookups.
    public func symbol(named name: String) -> ELFSymbol? {
        index.byName[name]
    }

    /// All defined symbols of `.symtab` and `.dynsym`, without the copies that appear in both.
    /// Section and file symbols (`STT_SECTION`, `STT_FILE`) and unnamed symbols are left out: they name no code or data.
    public func symbols() -> [ELFSymbol] {
        index.all
    }

    private var index: SymbolIndex {
        symbolIndex.value { SymbolIndex(tables: symbolTablesInLookupOrder.map(definedSymbols(in:))) }
    }

    /// The first defined symbol called `name`, `.dynsym` first, found by comparing name bytes in place: for a
    /// caller that asks a file it reads once for one or two names (is this file an interpreter?), much cheaper
    /// than `symbol(named:)`, which indexes every symbol first.
    public func scanForSymbol(named name: String) -> ELFSymbol? {
        let wanted = Array(name.utf8)
        let tables = sections.filter { $0.type == ELFSection.typeDynamicSymbolTable } + sections.filter { $0.type == ELFSection.typeSymbolTable }
        for table in tables {
            guard let names = try? data(of: sections[Int(table.link)]), let symbols = try? data(of: table) else { continue }
            var recordStart = symbols.startIndex
            while recordStart + ELFLayout.symbolSize <= symbols.endIndex {
                defer { recordStart += ELFLayout.symbolSize }
                let nameOffset = Int(symbols.littleEndianValue(at: recordStart + SymbolField.name, width: 4))
                let nameStart = names.startIndex + nameOffset
                guard nameOffset >= 0, nameOffset + wanted.count < names.count,
                      names[nameStart + wanted.count] == 0, names[nameStart..<(nameStart + wanted.count)].elementsEqual(wanted),
                      let record = ELFRecord(symbols, offset: UInt64(recordStart - symbols.startIndex), size: ELFLayout.symbolSize)
                else { continue }
                let info = record.u8(SymbolField.info)
                let sectionIndex = record.u16(SymbolField.sectionIndex)
                guard sectionIndex != ELFSymbol.sectionIndexUndefined else { continue }
                return ELFSymbol(
                    name: name, value: record.u64(SymbolField.value), size: record.u64(SymbolField.size), type: info & 0xf,
                    binding: info >> 4, sectionIndex: sectionIndex)
            }
        }
        return nil
    }

    private var symbolTablesInLookupOrder: [ELFSection] {
        sections.filter { $0.type == ELFSection.typeSymbolTable } + sections.filter { $0.type == ELFSection.typeDynamicSymbolTable }
    }

    /// The defined, named symbols of one table. The table's shape and its string table link were validated at
    /// init; a symbol whose name offset is outside the string table is skipped rather than failing the whole table.
    private func definedSymbols(in table: ELFSection) -> [ELFSymbol] {
        guard let names = try? data(of: sections[Int(table.link)]), let symbols = try? data(of: table),
              let records = ELFRecord.table(symbols, count: table.size / UInt64(ELFLayout.symbolSize), size: ELFLayout.symbolSize)
        else { return [] }
        return records.compactMap { record in
            let info = record.u8(SymbolField.info)
            let type = info & 0xf
            let sectionIndex = record.u16(SymbolField.sectionIndex)
            guard sectionIndex != ELFSymbol.sectionIndexUndefined, type != ELFSymbol.typeSection, type != ELFSymbol.typeFile,
                  let name = names.nulTerminatedString(at: UInt64(record.u32(SymbolField.name))), !name.isEmpty
            else { return nil }
            return ELFSymbol(
                name: name, value: record.u64(SymbolField.value), size: record.u64(SymbolField.size), type: type, binding: info >> 4,
                sectionIndex: sectionIndex
            )
        }
    }
}

/// Every defined symbol of a file, deduplicated, plus a by-name lookup.
struct SymbolIndex {
    let all: [ELFSymbol]
    let byName: [String: ELFSymbol]

    /// `tables` in lookup order (`.symtab` before `.dynsym`).
    init(tables: [[ELFSymbol]]) {
        struct Identity: Hashable {
            let name: String
            let value: UInt64
        }
        var all: [ELFSymbol] = []
        var seen = Set<Identity>()
        var byName: [String: ELFSymbol] = [:]
        for symbol in tables.joined() {
            if seen.insert(Identity(name: symbol.name, value: symbol.value)).inserted {
                all.append(symbol)
            }
            if let existing = byName[symbol.name] {
                let replacesLocal = existing.binding == ELFSymbol.bindingLocal && symbol.binding != ELFSymbol.bindingLocal
                if replacesLocal { byName[symbol.name] = symbol }
            } else {
                byName[symbol.name] = symbol
            }
        }
        self.all = all
        self.byName = byName
    }
}

/// Builds the symbol index on first use, once, even when several threads ask at the same time.
final class LazySymbolIndex: @unchecked Sendable {
    private let lock = Lock()
    private var built: SymbolIndex?

    func value(build: () -> SymbolIndex) -> SymbolIndex {
        lock.lock()
        defer { lock.unlock() }
        if let built { return built }
        let index = build()
        built = index
        return index
    }
}
