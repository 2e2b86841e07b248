/// How to compute the Canonical Frame Address (DWARF 5 §6.4.1): the value of the stack pointer at the call site.
enum CFARule: Equatable {
    case registerOffset(register: UInt64, offset: Int64)
    /// `DW_CFA_def_cfa_expression`: a DWARF expression whose value is the CFA; its bytes, operands included.
    case expression(ArraySlice<UInt8>)
}

/// How to recover a register's value in the caller (DWARF 5 §6.4.1, "register rules").
enum RegisterRule: Equatable {
    /// No instruction mentioned the register: by the x86_64 psABI convention it is preserved (as `sameValue`).
    case unspecified
    /// `DW_CFA_undefined`: not recoverable. For the return address this marks the outermost frame.
    case undefined
    case sameValue
    /// Saved at CFA + offset.
    case offset(Int64)
    /// Its value is CFA + offset.
    case valueOffset(Int64)
    /// Held in another register.
    case register(UInt64)
    case expression
    case valueExpression
}

/// The rules that hold from one address on, reduced to what an x86_64 unwinder needs: the CFA, rbp and the
/// return address. Other registers are parsed and dropped.
struct CallFrameRow: Equatable {
    var cfa: CFARule?
    var framePointer: RegisterRule = .unspecified
    var returnAddress: RegisterRule = .unspecified
}

/// A row of an FDE's table: the rules that hold from `address` on.
struct AddressedCallFrameRow {
    let address: UInt64
    let row: CallFrameRow
}

/// Interprets the call frame instructions of a CIE and an FDE (DWARF 5 §6.4.2) into the rows of the FDE's table.
///
/// Bounded by construction: every instruction consumes at least one byte of a program whose length was checked,
/// the location only moves forward and interpretation stops once it leaves the FDE, and the state stack has a
/// fixed depth. Anything malformed throws `ELFError`, and the caller drops the FDE.
struct CallFrameProgram {
    static let x86_64FramePointer: UInt64 = 6
    /// The deepest `DW_CFA_remember_state` nesting accepted. GCC nests one level per shrink-wrapped region, a few at
    /// most; libgcc allocates without limit, but a hostile program must not grow memory with its length.
    static let maximumRememberedStates = 64

    let fde: FrameDescriptionEntry
    let bases: PointerEncoding.Bases

    /// The rows of the FDE's table, by increasing address, each holding up to the next one's address (the last up to
    /// `pcEnd`). Rows whose range is empty (an advance by 0, or a location past `pcEnd`) are left out.
    func rows() throws -> [AddressedCallFrameRow] {
        var initial = CallFrameRow()
        var cieInterpreter = Interpreter(program: self, initialRow: nil, location: fde.pcBegin)
        try cieInterpreter.run(fde.cie.initialInstructions, into: &initial, isInitialProgram: true)

        var row = initial
        var interpreter = Interpreter(program: self, initialRow: initial, location: fde.pcBegin)
        try interpreter.run(fde.instructions, into: &row, isInitialProgram: false)
        if interpreter.rowStart < fde.pcEnd { interpreter.rows.append(AddressedCallFrameRow(address: interpreter.rowStart, row: row)) }
        return interpreter.rows
    }

    private struct Interpreter {
        let program: CallFrameProgram
        /// The rules after the CIE's initial instructions, which `DW_CFA_restore*` go back to; nil while running those.
        let initialRow: CallFrameRow?
        var rowStart: UInt64
        var rows: [AddressedCallFrameRow] = []
        var rememberedStates: [CallFrameRow] = []

        init(program: CallFrameProgram, initialRow: CallFrameRow?, location: UInt64) {
            self.program = program
            self.initialRow = initialRow
            self.rowStart = location
        }

        private var cie: CommonInformationEntry { program.fde.cie }

        /// Runs `instructions`, appending a row each time the location moves. Stops early once the location reaches
        /// the end of the FDE: the rules after it describe no instruction of this FDE.
        mutating func run(_ instructions: DWARFCursor, into row: inout CallFrameRow, isInitialProgram: Bool) throws {
            var cursor = instructions
            while !cursor.isAtEnd {
                let opcode = try cursor.u8()
                let operand = opcode & 0x3f
                switch opcode >> 6 {
                case 1:  // DW_CFA_advance_loc: delta in the low 6 bits
                    guard try advance(by: UInt64(operand), row: row, isInitialProgram: isInitialProgram) else { return }
                case 2:  // DW_CFA_offset: register in the low 6 bits, ULEB128 factored offset
                    set(UInt64(operand), to: .offset(try factored(try cursor.uleb128())), in: &row)
                case 3:  // DW_CFA_restore: register in the low 6 bits
                    try restore(UInt64(operand), in: &row)
                default:
                    guard try runExtended(opcode, &cursor, row: &row, isInitialProgram: isInitialProgram) else { return }
                }
            }
        }

        /// The opcodes whose top two bits are 0 (DWARF 5 §7.24, Table 7.29). Returns false when interpretation
        /// should stop because the location left the FDE.
        private mutating func runExtended(
            _ opcode: UInt8, _ cursor: inout DWARFCursor, row: inout CallFrameRow, isInitialProgram: Bool
        ) throws -> Bool {
            switch opcode {
            case 0x00: break  // DW_CFA_nop
            case 0x01:  // DW_CFA_set_loc: an address in the CIE's pointer encoding (LSB §10.6.1.1)
                guard !isInitialProgram else { throw ELFError("DW_CFA_set_loc in CIE initial instructions") }
                let target = try cie.pointerEncoding.read(from: &cursor, bases: program.bases)
                // DWARF 5 §6.4.2.1: the new location must be greater than the current one.
                guard target >= rowStart else { throw ELFError("DW_CFA_set_loc moves backwards in FDE at \(program.fde.sectionOffset)") }
                return move(to: target, row: row)
            case 0x02: return try advance(by: UInt64(try cursor.u8()), row: row, isInitialProgram: isInitialProgram)
            case 0x03: return try advance(by: UInt64(try cursor.u16()), row: row, isInitialProgram: isInitialProgram)
            case 0x04: return try advance(by: UInt64(try cursor.u32()), row: row, isInitialProgram: isInitialProgram)
            case 0x05:  // DW_CFA_offset_extended
                let register = try cursor.uleb128()
                set(register, to: .offset(try factored(try cursor.uleb128())), in: &row)
            case 0x06: try restore(try cursor.uleb128(), in: &row)  // DW_CFA_restore_extended
            case 0x07: set(try cursor.uleb128(), to: .undefined, in: &row)
            case 0x08: set(try cursor.uleb128(), to: .sameValue, in: &row)
            case 0x09:  // DW_CFA_register
                let register = try cursor.uleb128()
                set(register, to: .register(try cursor.uleb128()), in: &row)
            case 0x0a:  // DW_CFA_remember_state
                guard rememberedStates.count < CallFrameProgram.maximumRememberedStates else {
                    throw ELFError("DW_CFA_remember_state nested deeper than \(CallFrameProgram.maximumRememberedStates)")
                }
                rememberedStates.append(row)
            case 0x0b:  // DW_CFA_restore_state
                // The CFA rule is part of the remembered state, as in GCC's unwinder and binutils: compilers emit
                // remember/restore around epilogues that change the CFA and rely on it.
                guard let remembered = rememberedStates.popLast() else {
                    throw ELFError("DW_CFA_restore_state without DW_CFA_remember_state")
                }
                row = remembered
            case 0x0c:  // DW_CFA_def_cfa
                let register = try cursor.uleb128()
                row.cfa = .registerOffset(register: register, offset: try nonNegative(try cursor.uleb128()))
            case 0x0d:  // DW_CFA_def_cfa_register: valid only while the CFA is register + offset (§6.4.2.2)
                row.cfa = .registerOffset(register: try cursor.uleb128(), offset: try currentCFAOffset(row))
            case 0x0e:  // DW_CFA_def_cfa_offset: not factored
                let offset = try nonNegative(try cursor.uleb128())
                row.cfa = .registerOffset(register: try currentCFARegister(row), offset: offset)
            case 0x0f: row.cfa = .expression(try cursor.take(try cursor.uleb128()))  // DW_CFA_def_cfa_expression
            case 0x10:  // DW_CFA_expression
                let register = try cursor.uleb128()
                _ = try cursor.take(try cursor.uleb128())
                set(register, to: .expression, in: &row)
            case 0x11:  // DW_CFA_offset_extended_sf
                let register = try cursor.uleb128()
                set(register, to: .offset(try factored(try cursor.sleb128())), in: &row)
            case 0x12:  // DW_CFA_def_cfa_sf
                let register = try cursor.uleb128()
                row.cfa = .registerOffset(register: register, offset: try factored(try cursor.sleb128()))
            case 0x13:  // DW_CFA_def_cfa_offset_sf
                let offset = try factored(try cursor.sleb128())
                row.cfa = .registerOffset(register: try currentCFARegister(row), offset: offset)
            case 0x14:  // DW_CFA_val_offset
                let register = try cursor.uleb128()
                set(register, to: .valueOffset(try factored(try cursor.uleb128())), in: &row)
            case 0x15:  // DW_CFA_val_offset_sf
                let register = try cursor.uleb128()
                set(register, to: .valueOffset(try factored(try cursor.sleb128())), in: &row)
            case 0x16:  // DW_CFA_val_expression
                let register = try cursor.uleb128()
                _ = try cursor.take(try cursor.uleb128())
                set(register, to: .valueExpression, in: &row)
            case 0x2e: _ = try cursor.uleb128()  // DW_CFA_GNU_args_size: outgoing argument size, irrelevant to unwinding
            case 0x2f:  // DW_CFA_GNU_negative_offset_extended: DW_CFA_offset_extended with the offset negated
                let register = try cursor.uleb128()
                let offset = try factored(try cursor.uleb128())
                guard offset != .min else { throw ELFError("DW_CFA_GNU_negative_offset_extended offset overflows") }
                set(register, to: .offset(-offset), in: &row)
            default:
                // The operands of an unknown opcode have unknown size: nothing after it can be decoded.
                throw ELFError("unknown call frame instruction 0x\(String(opcode, radix: 16)) in FDE at \(program.fde.sectionOffset)")
            }
            return true
        }

        /// `DW_CFA_advance_loc*`: moves by `delta` times the code alignment factor. Returns false once the
        /// location reaches the end of the FDE (including by overflow): the rest of the program describes no
        /// instruction of it.
        private mutating func advance(by delta: UInt64, row: CallFrameRow, isInitialProgram: Bool) throws -> Bool {
            guard !isInitialProgram else { throw ELFError("DW_CFA_advance_loc in CIE initial instructions") }
            let (distance, distanceOverflow) = delta.multipliedReportingOverflow(by: cie.codeAlignmentFactor)
            let (target, targetOverflow) = rowStart.addingReportingOverflow(distance)
            guard !distanceOverflow, !targetOverflow else { return move(to: .max, row: row) }
            return move(to: target, row: row)
        }

        private mutating func move(to target: UInt64, row: CallFrameRow) -> Bool {
            guard target > rowStart else { return true }
            let end = program.fde.pcEnd
            if rowStart < end { rows.append(AddressedCallFrameRow(address: rowStart, row: row)) }
            rowStart = target
            return target < end
        }

        private mutating func restore(_ register: UInt64, in row: inout CallFrameRow) throws {
            // DW_CFA_restore: back to the rule the CIE's initial instructions assigned (§6.4.2.3), which makes no
            // sense inside those instructions themselves.
            guard let initialRow else { throw ELFError("DW_CFA_restore in CIE initial instructions") }
            if register == CallFrameProgram.x86_64FramePointer { row.framePointer = initialRow.framePointer }
            if register == cie.returnAddressRegister { row.returnAddress = initialRow.returnAddress }
        }

        private func set(_ register: UInt64, to rule: RegisterRule, in row: inout CallFrameRow) {
            if register == CallFrameProgram.x86_64FramePointer { row.framePointer = rule }
            if register == cie.returnAddressRegister { row.returnAddress = rule }
        }

        private func factored(_ value: UInt64) throws -> Int64 {
            guard let signed = Int64(exactly: value) else { throw ELFError("factored offset \(value) overflows") }
            return try factored(signed)
        }

        private func factored(_ value: Int64) throws -> Int64 {
            let (product, overflow) = value.multipliedReportingOverflow(by: cie.dataAlignmentFactor)
            guard !overflow else { throw ELFError("factored offset \(value) × \(cie.dataAlignmentFactor) overflows") }
            return product
        }

        private func nonNegative(_ value: UInt64) throws -> Int64 {
            guard let signed = Int64(exactly: value) else { throw ELFError("CFA offset \(value) overflows") }
            return signed
        }

        private func currentCFARegister(_ row: CallFrameRow) throws -> UInt64 {
            guard case let .registerOffset(register, _) = row.cfa else {
                throw ELFError("CFA offset changed while the CFA is not register + offset, in FDE at \(program.fde.sectionOffset)")
            }
            return register
        }

        private func currentCFAOffset(_ row: CallFrameRow) throws -> Int64 {
            guard case let .registerOffset(_, offset) = row.cfa else {
                throw ELFError("CFA register changed while the CFA is not register + offset, in FDE at \(program.fde.sectionOffset)")
            }
            return offset
        }
    }
}
