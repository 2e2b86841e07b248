/// Rust symbol names in the two manglings rustc emits, printed the way rustc-demangle's alternate form (`{:#}`)
/// prints them: without the legacy hash and without crate disambiguators, since a profile wants the path people wrote.
///
/// - Legacy (`_ZN…17h<16 hex digits>E`): C++-like length-prefixed components whose last one is a hash, with
///   punctuation spelled as `$…$` escapes inside the components.
/// - v0 (`_R…`, RFC 2603): a grammar of paths, types and constants with back-references into the symbol itself.
///
/// The names come from files and processes that may be hostile, so the work is bounded: nesting by
/// `maximumNestingDepth`, output by the caller's length limit, and all parsing, back-references included, by a step
/// budget. Anything malformed is refused (nil) rather than half printed, so that the mangled name is kept.
enum RustDemangler {
    /// Deeper nesting (paths in types in generic arguments, back-references) is refused. It bounds the recursion, and
    /// so the stack, on hostile names. Real names nest deeply too: of the 206,000 Rust symbols of rustc's own
    /// librustc_driver, the deepest (iterator adapters 16 `Chain`s deep) need 89 to 96 levels, so the bound leaves room
    /// above that.
    static let maximumNestingDepth = 128

    /// Parser steps (nodes entered plus bytes read) allowed for one v0 symbol. Back-references can make a short
    /// symbol describe exponentially much; the output limit stops what is printed, this stops what is only parsed.
    static let maximumParserSteps = 200_000

    /// The demangled name of a Rust symbol, or nil when `name` is not one (a `_ZN` name without a Rust hash is left
    /// to the C++ demangler) or is malformed, or demangles to more than `maximumLength` UTF-8 bytes.
    static func demangle(_ name: String, maximumLength: Int) -> String? {
        var bytes = Array(name.utf8)
        // Rust symbols are ASCII; anything else is not one (and keeps the byte arithmetic below simple).
        guard !bytes.isEmpty, bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
        stripLLVMSuffix(&bytes)
        let demangled: (name: [UInt8], rest: ArraySlice<UInt8>)?
        if let inner = dropPrefix(of: bytes, oneOf: ["_ZN", "__ZN"]) {
            demangled = LegacySymbol.demangle(inner)
        } else if let inner = dropPrefix(of: bytes, oneOf: ["_R", "__R"]) {
            demangled = try? V0Printer.demangle(inner, maximumLength: maximumLength)
        } else {
            demangled = nil
        }
        guard let (name, rest) = demangled else { return nil }
        var output = name
        // Compilers append `.`-separated words to a symbol (LLVM's `.exit.i.i`, rustc's `.0.0` for promoted
        // constants); rustc-demangle keeps them, as part of which copy of the function this is. Anything else after
        // the symbol means it was not a Rust symbol after all.
        if !rest.isEmpty {
            guard rest.first == UInt8(ascii: "."), rest.allSatisfy(isSymbolLike) else { return nil }
            output.append(contentsOf: rest)
        }
        guard !output.isEmpty, output.count <= maximumLength else { return nil }
        return String(decoding: output, as: UTF8.self)
    }

    /// ThinLTO renames a local symbol it imports into another module by appending `.llvm.<hex>` (digits, capitals, and
    /// `@` for symbol versions); it says nothing about the function, so it is dropped, as rustc-demangle does.
    private static func stripLLVMSuffix(_ bytes: inout [UInt8]) {
        guard let marker = bytes.firstRange(of: ".llvm.".utf8) else { return }
        let isThinLTOSuffix = bytes[marker.upperBound...].allSatisfy {
            isDigit($0) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains($0) || $0 == UInt8(ascii: "@")
        }
        if isThinLTOSuffix { bytes.removeSubrange(marker.lowerBound...) }
    }

    private static func dropPrefix(of bytes: [UInt8], oneOf prefixes: [String]) -> ArraySlice<UInt8>? {
        for prefix in prefixes {
            let prefixBytes = Array(prefix.utf8)
            if bytes.count > prefixBytes.count, bytes.starts(with: prefixBytes) { return bytes[prefixBytes.count...] }
        }
        return nil
    }

    private static func isSymbolLike(_ byte: UInt8) -> Bool {
        // ASCII letters, digits and punctuation: no spaces or control characters.
        (0x21...0x7E).contains(byte)
    }

    fileprivate static func isDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    fileprivate static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }

    fileprivate static func appendUTF8(_ scalar: Unicode.Scalar, to output: inout [UInt8]) {
        UTF8.encode(scalar) { output.append($0) }
    }
}

// MARK: - Legacy

/// `_ZN` followed by length-prefixed components and `E`; rustc's last component is `h` and 16 hex digits, a hash of
/// the crate and the item's type that tells monomorphizations apart.
private enum LegacySymbol {
    /// The printed path and what follows the closing `E`, or nil when `inner` (the symbol after `_ZN`) is not a
    /// legacy Rust symbol.
    static func demangle(_ inner: ArraySlice<UInt8>) -> (name: [UInt8], rest: ArraySlice<UInt8>)? {
        guard let (components, rest) = components(of: inner), components.count >= 2,
              let hash = components.last, isHash(hash)
        else { return nil }
        var output: [UInt8] = []
        for (index, component) in components.dropLast().enumerated() {
            if index > 0 { output.append(contentsOf: "::".utf8) }
            appendUnescaped(component, to: &output)
        }
        return (output, rest)
    }

    private static func components(of inner: ArraySlice<UInt8>) -> ([ArraySlice<UInt8>], ArraySlice<UInt8>)? {
        var components: [ArraySlice<UInt8>] = []
        var position = inner.startIndex
        while position < inner.endIndex, inner[position] != UInt8(ascii: "E") {
            guard RustDemangler.isDigit(inner[position]) else { return nil }
            var length = 0
            while position < inner.endIndex, RustDemangler.isDigit(inner[position]) {
                // A length beyond the name fails below; stopping early keeps the arithmetic from overflowing.
                length = length * 10 + Int(inner[position] - UInt8(ascii: "0"))
                guard length <= inner.count else { return nil }
                position += 1
            }
            guard length > 0, inner.endIndex - position >= length else { return nil }
            components.append(inner[position..<(position + length)])
            position += length
        }
        guard position < inner.endIndex else { return nil }  // no closing `E`
        return (components, inner[(position + 1)...])
    }

    private static func isHash(_ component: ArraySlice<UInt8>) -> Bool {
        component.count == 17 && component.first == UInt8(ascii: "h")
            && component.dropFirst().allSatisfy(RustDemangler.isHexDigit)
    }

    /// rustc spells characters that symbol names cannot hold as `$…$` escapes, `::` inside a component as `..`,
    /// and puts `_` before a component that would otherwise start with `$`.
    private static func appendUnescaped(_ component: ArraySlice<UInt8>, to output: inout [UInt8]) {
        var rest = component
        if rest.starts(with: "_$".utf8) { rest = rest.dropFirst() }
        while let first = rest.first {
            if first == UInt8(ascii: ".") {
                if rest.dropFirst().first == UInt8(ascii: ".") {
                    output.append(contentsOf: "::".utf8)
                    rest = rest.dropFirst(2)
                } else {
                    output.append(first)
                    rest = rest.dropFirst()
                }
            } else if first == UInt8(ascii: "$") {
                guard let end = rest.dropFirst().firstIndex(of: UInt8(ascii: "$")),
                      let character = unescape(rest[(rest.startIndex + 1)..<end])
                else { break }  // not an escape: printed as it is, below
                RustDemangler.appendUTF8(character, to: &output)
                rest = rest[(end + 1)...]
            } else {
                let end = rest.firstIndex { $0 == UInt8(ascii: "$") || $0 == UInt8(ascii: ".") } ?? rest.endIndex
                output.append(contentsOf: rest[..<end])
                rest = rest[end...]
            }
        }
        output.append(contentsOf: rest)
    }

    private static let namedEscapes: [String: Unicode.Scalar] = [
        "SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")", "C": ",",
    ]

    /// The character an escape's text (between the `$`s) stands for: a name above, or `u` and the code point in
    /// lower-case hex. Control characters are refused, as rustc-demangle refuses them: a profile should not carry them.
    private static func unescape(_ escape: ArraySlice<UInt8>) -> Unicode.Scalar? {
        let text = String(decoding: escape, as: UTF8.self)
        if let named = namedEscapes[text] { return named }
        guard escape.first == UInt8(ascii: "u"), escape.count >= 2,
              escape.dropFirst().allSatisfy(isLowerHexDigit),
              let value = UInt32(text.dropFirst(), radix: 16), let scalar = Unicode.Scalar(value),
              scalar.properties.generalCategory != .control
        else { return nil }
        return scalar
    }
}

// MARK: - v0

private struct InvalidSymbol: Error {}

/// An identifier of a v0 symbol: ASCII, or (after a `u` tag) an ASCII part and the Punycode deltas of the
/// non-ASCII characters.
private struct Identifier {
    var ascii: ArraySlice<UInt8>
    var punycode: ArraySlice<UInt8>

    var isEmpty: Bool { ascii.isEmpty && punycode.isEmpty }
}

/// A recursive-descent parser of the v0 grammar that prints as it parses, as rustc-demangle does: a back-reference
/// is printed by parsing again at the position it names.
private struct V0Printer {
    private let symbol: ArraySlice<UInt8>
    private var position: Int
    private var output: [UInt8] = []
    private let maximumLength: Int
    private var depth = 0
    private var stepsLeft = RustDemangler.maximumParserSteps
    /// False while parsing what is not printed (an impl's own path, the instantiating crate); back-references are
    /// then not followed, since only the syntax matters.
    private var printing = true
    /// Lifetimes bound by enclosing `for<…>` binders: a lifetime's index counts back from the innermost.
    private var boundLifetimes = 0

    private init(symbol: ArraySlice<UInt8>, maximumLength: Int) {
        self.symbol = symbol
        self.position = symbol.startIndex
        self.maximumLength = maximumLength
    }

    /// The printed path of `symbol` (the name after `_R`) and what follows it.
    static func demangle(
        _ symbol: ArraySlice<UInt8>, maximumLength: Int
    ) throws -> (name: [UInt8], rest: ArraySlice<UInt8>) {
        var printer = V0Printer(symbol: symbol, maximumLength: maximumLength)
        guard let first = printer.peek(), isUpper(first) else { throw InvalidSymbol() }
        try printer.printPath(inValue: true)
        // The crate that instantiated a generic item: it tells copies apart, not what the function is.
        if let next = printer.peek(), isUpper(next) {
            try printer.skipping { try $0.printPath(inValue: false) }
        }
        return (printer.output, symbol[printer.position...])
    }

    // MARK: Reading

    private func peek() -> UInt8? {
        position < symbol.endIndex ? symbol[position] : nil
    }

    private mutating func eat(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        position += 1
        return true
    }

    private mutating func next() throws -> UInt8 {
        guard let byte = peek() else { throw InvalidSymbol() }
        try spend(1)
        position += 1
        return byte
    }

    private mutating func spend(_ steps: Int) throws {
        stepsLeft -= steps
        guard stepsLeft >= 0 else { throw InvalidSymbol() }
    }

    /// One more level of nesting for the duration of `body`.
    private mutating func nested(_ body: (inout V0Printer) throws -> Void) throws {
        depth += 1
        guard depth <= RustDemangler.maximumNestingDepth else { throw InvalidSymbol() }
        try spend(1)
        try body(&self)
        depth -= 1
    }

    private mutating func skipping(_ body: (inout V0Printer) throws -> Void) throws {
        let wasPrinting = printing
        printing = false
        try body(&self)
        printing = wasPrinting
    }

    /// `_` is 0; otherwise base-62 digits (0-9, a-z, A-Z) then `_`, standing for their value plus one.
    private mutating func base62Number() throws -> UInt64 {
        if eat(UInt8(ascii: "_")) { return 0 }
        var value: UInt64 = 0
        while !eat(UInt8(ascii: "_")) {
            let byte = try next()
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): digit = 10 + byte - UInt8(ascii: "a")
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): digit = 36 + byte - UInt8(ascii: "A")
            default: throw InvalidSymbol()
            }
            let (shifted, overflow) = value.multipliedReportingOverflow(by: 62)
            let (sum, carry) = shifted.addingReportingOverflow(UInt64(digit))
            guard !overflow, !carry else { throw InvalidSymbol() }
            value = sum
        }
        let (result, overflow) = value.addingReportingOverflow(1)
        guard !overflow else { throw InvalidSymbol() }
        return result
    }

    /// An optional number after `tag`: 0 when absent, else the number plus one.
    private mutating func optionalBase62Number(tag: UInt8) throws -> UInt64 {
        guard eat(tag) else { return 0 }
        let (result, overflow) = try base62Number().addingReportingOverflow(1)
        guard !overflow else { throw InvalidSymbol() }
        return result
    }

    private mutating func disambiguator() throws -> UInt64 {
        try optionalBase62Number(tag: UInt8(ascii: "s"))
    }

    /// Lower-case hex digits up to `_`.
    private mutating func hexNibbles() throws -> ArraySlice<UInt8> {
        let start = position
        while true {
            let byte = try next()
            if byte == UInt8(ascii: "_") { return symbol[start..<(position - 1)] }
            guard isLowerHexDigit(byte) else { throw InvalidSymbol() }
        }
    }

    private mutating func identifier() throws -> Identifier {
        let isPunycode = eat(UInt8(ascii: "u"))
        guard let first = peek(), RustDemangler.isDigit(first) else { throw InvalidSymbol() }
        var length = 0
        position += 1
        if first != UInt8(ascii: "0") {
            length = Int(first - UInt8(ascii: "0"))
            while let byte = peek(), RustDemangler.isDigit(byte) {
                length = length * 10 + Int(byte - UInt8(ascii: "0"))
                // Longer than the symbol: refused before the arithmetic can overflow.
                guard length <= symbol.count else { throw InvalidSymbol() }
                position += 1
            }
        }
        // Separates the length from an identifier that starts with a digit or `_`.
        _ = eat(UInt8(ascii: "_"))
        guard symbol.endIndex - position >= length else { throw InvalidSymbol() }
        try spend(length)
        let text = symbol[position..<(position + length)]
        position += length
        guard isPunycode else { return Identifier(ascii: text, punycode: []) }
        // The deltas follow the last `_`; without one, everything is deltas.
        let split = text.lastIndex(of: UInt8(ascii: "_"))
        let identifier = Identifier(
            ascii: split.map { text[..<$0] } ?? [], punycode: split.map { text[($0 + 1)...] } ?? text)
        guard !identifier.punycode.isEmpty else { throw InvalidSymbol() }
        return identifier
    }

    /// The target of a back-reference (`B` already read) printed by `body`, which parses at the position named.
    /// Only earlier positions are allowed, so a back-reference cannot reach itself.
    private mutating func backReference(_ body: (inout V0Printer) throws -> Void) throws {
        let tagPosition = position - 1
        let offset = try base62Number()
        guard offset < UInt64(tagPosition - symbol.startIndex) else { throw InvalidSymbol() }
        guard printing else { return }
        let resumeAt = position
        position = symbol.startIndex + Int(offset)
        try nested(body)
        position = resumeAt
    }

    // MARK: Printing

    private mutating func print(_ text: StaticString) throws {
        guard printing else { return }
        // Through the buffer: a one-character literal may be stored as a scalar rather than as a pointer.
        text.withUTF8Buffer { output.append(contentsOf: $0) }
        try checkLength()
    }

    private mutating func print<Bytes: Collection>(bytes: Bytes) throws where Bytes.Element == UInt8 {
        guard printing else { return }
        output.append(contentsOf: bytes)
        try checkLength()
    }

    private mutating func print(number: UInt64) throws {
        try print(bytes: String(number).utf8)
    }

    private mutating func print(scalar: Unicode.Scalar) throws {
        guard printing else { return }
        RustDemangler.appendUTF8(scalar, to: &output)
        try checkLength()
    }

    private func checkLength() throws {
        guard output.count <= maximumLength else { throw InvalidSymbol() }
    }

    private mutating func print(_ identifier: Identifier) throws {
        guard printing else { return }
        if identifier.punycode.isEmpty {
            try print(bytes: identifier.ascii)
        } else if let decoded = Punycode.decode(ascii: identifier.ascii, deltas: identifier.punycode) {
            for scalar in decoded { try print(scalar: scalar) }
        } else {
            // rustc-demangle's form for what it cannot decode: standard Punycode, `-` before the deltas.
            try print("punycode{")
            if !identifier.ascii.isEmpty {
                try print(bytes: identifier.ascii)
                try print("-")
            }
            try print(bytes: identifier.punycode)
            try print("}")
        }
    }

    /// `'_` for 0, else a lifetime bound by an enclosing binder: `'a` for the outermost, then `'b`, … and `'_26` on.
    private mutating func printLifetime(index: UInt64) throws {
        guard printing else { return }
        try print("'")
        if index == 0 { return try print("_") }
        guard index <= UInt64(boundLifetimes) else { throw InvalidSymbol() }
        let fromOutermost = UInt64(boundLifetimes) - index
        if fromOutermost < 26 {
            try print(bytes: [UInt8(ascii: "a") + UInt8(fromOutermost)])
        } else {
            try print("_")
            try print(number: fromOutermost)
        }
    }

    /// An optional binder (`G` and a count) of late-bound lifetimes, printed as `for<'a, …> ` before `body`.
    private mutating func inBinder(_ body: (inout V0Printer) throws -> Void) throws {
        let count = try optionalBase62Number(tag: UInt8(ascii: "G"))
        // Each binder prints at least `'a`: more than the output can hold is malformed.
        guard count <= UInt64(maximumLength) else { throw InvalidSymbol() }
        let outerLifetimes = boundLifetimes
        if count > 0 {
            try print("for<")
            for index in 0..<Int(count) {
                if index > 0 { try print(", ") }
                boundLifetimes += 1
                try printLifetime(index: 1)
            }
            try print("> ")
        }
        try body(&self)
        boundLifetimes = outerLifetimes
    }

    /// Elements printed by `element`, separated by `separator`, up to the closing `E`; returns how many.
    @discardableResult
    private mutating func printList(
        separator: StaticString, _ element: (inout V0Printer) throws -> Void
    ) throws -> Int {
        var count = 0
        while !eat(UInt8(ascii: "E")) {
            if count > 0 { try print(separator) }
            try element(&self)
            count += 1
        }
        return count
    }

    /// `inValue` paths are where an expression could be: generic arguments there need the turbofish (`::<`).
    private mutating func printPath(inValue: Bool) throws {
        try nested { this in
            let tag = try this.next()
            switch tag {
            case UInt8(ascii: "C"):  // crate root; its disambiguator (a hash) is not printed
                _ = try this.disambiguator()
                let name = try this.identifier()
                try this.print(name)
            case UInt8(ascii: "N"):
                let namespace = try this.next()
                guard isUpper(namespace) || isLower(namespace) else { throw InvalidSymbol() }
                try this.printPath(inValue: inValue)
                let disambiguator = try this.disambiguator()
                let name = try this.identifier()
                if isUpper(namespace) {
                    // Closures, shims and other items without a name of their own: `{closure#0}`.
                    try this.print("::{")
                    switch namespace {
                    case UInt8(ascii: "C"): try this.print("closure")
                    case UInt8(ascii: "S"): try this.print("shim")
                    default: try this.print(bytes: [namespace])
                    }
                    if !name.isEmpty {
                        try this.print(":")
                        try this.print(name)
                    }
                    try this.print("#")
                    try this.print(number: disambiguator)
                    try this.print("}")
                } else if !name.isEmpty {
                    try this.print("::")
                    try this.print(name)
                }
            case UInt8(ascii: "M"), UInt8(ascii: "X"), UInt8(ascii: "Y"):
                // `M`: inherent impl `<Type>`; `X`: trait impl `<Type as Trait>`; `Y`: trait item `<Type as Trait>`.
                if tag != UInt8(ascii: "Y") {
                    // The impl's own path (the module it is in) is not printed.
                    _ = try this.disambiguator()
                    try this.skipping { try $0.printPath(inValue: false) }
                }
                try this.print("<")
                try this.printType()
                if tag != UInt8(ascii: "M") {
                    try this.print(" as ")
                    try this.printPath(inValue: false)
                }
                try this.print(">")
            case UInt8(ascii: "I"):
                try this.printPath(inValue: inValue)
                if inValue { try this.print("::") }
                try this.print("<")
                try this.printList(separator: ", ") { try $0.printGenericArgument() }
                try this.print(">")
            case UInt8(ascii: "B"):
                try this.backReference { try $0.printPath(inValue: inValue) }
            default:
                throw InvalidSymbol()
            }
        }
    }

    private mutating func printGenericArgument() throws {
        if eat(UInt8(ascii: "L")) {
            let lifetime = try base62Number()
            try printLifetime(index: lifetime)
        } else if eat(UInt8(ascii: "K")) {
            try printConst(inValue: false)
        } else {
            try printType()
        }
    }

    private mutating func printType() throws {
        let tag = try next()
        if let basic = basicType(tag) { return try print(bytes: basic.utf8) }
        try nested { this in
            switch tag {
            case UInt8(ascii: "R"), UInt8(ascii: "Q"):  // `&T`, `&mut T`
                try this.print("&")
                if this.eat(UInt8(ascii: "L")) {
                    let lifetime = try this.base62Number()
                    if lifetime != 0 {
                        try this.printLifetime(index: lifetime)
                        try this.print(" ")
                    }
                }
                if tag == UInt8(ascii: "Q") { try this.print("mut ") }
                try this.printType()
            case UInt8(ascii: "P"):
                try this.print("*const ")
                try this.printType()
            case UInt8(ascii: "O"):
                try this.print("*mut ")
                try this.printType()
            case UInt8(ascii: "A"), UInt8(ascii: "S"):  // `[T; N]`, `[T]`
                try this.print("[")
                try this.printType()
                if tag == UInt8(ascii: "A") {
                    try this.print("; ")
                    try this.printConst(inValue: true)
                }
                try this.print("]")
            case UInt8(ascii: "T"):
                try this.print("(")
                let count = try this.printList(separator: ", ") { try $0.printType() }
                if count == 1 { try this.print(",") }
                try this.print(")")
            case UInt8(ascii: "F"):
                try this.inBinder { try $0.printFunctionSignature() }
            case UInt8(ascii: "D"):
                try this.print("dyn ")
                try this.inBinder { this in
                    try this.printList(separator: " + ") { try $0.printDynTrait() }
                }
                guard this.eat(UInt8(ascii: "L")) else { throw InvalidSymbol() }
                let lifetime = try this.base62Number()
                if lifetime != 0 {
                    try this.print(" + ")
                    try this.printLifetime(index: lifetime)
                }
            case UInt8(ascii: "B"):
                try this.backReference { try $0.printType() }
            case UInt8(ascii: "W"):  // pattern type: `u32 is 1..=9`
                try this.printType()
                try this.print(" is ")
                try this.printPattern()
            default:
                // A named type: a path, whose tag is read again.
                this.position -= 1
                try this.printPath(inValue: false)
            }
        }
    }

    /// `[unsafe] [extern "abi"] fn(args) [-> ret]`, after the binder.
    private mutating func printFunctionSignature() throws {
        let isUnsafe = eat(UInt8(ascii: "U"))
        var abi: ArraySlice<UInt8>?
        if eat(UInt8(ascii: "K")) {
            if eat(UInt8(ascii: "C")) {
                abi = ArraySlice("C".utf8)
            } else {
                let name = try identifier()
                guard !name.ascii.isEmpty, name.punycode.isEmpty else { throw InvalidSymbol() }
                abi = name.ascii
            }
        }
        if isUnsafe { try print("unsafe ") }
        if let abi {
            // `-` in an ABI name (`C-unwind`) is mangled as `_`.
            try print("extern \"")
            try print(bytes: abi.map { $0 == UInt8(ascii: "_") ? UInt8(ascii: "-") : $0 })
            try print("\" ")
        }
        try print("fn(")
        try printList(separator: ", ") { try $0.printType() }
        try print(")")
        // `()` returns are not printed.
        if !eat(UInt8(ascii: "u")) {
            try print(" -> ")
            try printType()
        }
    }

    /// A trait of a `dyn` type, with its associated type bindings (`p`) inside its generic arguments:
    /// `Iterator<Item = u8>`.
    private mutating func printDynTrait() throws {
        var open = try printPathMaybeOpenGenerics()
        while eat(UInt8(ascii: "p")) {
            try print(open ? ", " : "<")
            open = true
            let name = try identifier()
            try print(name)
            try print(" = ")
            try printType()
        }
        if open { try print(">") }
    }

    /// A path whose generic arguments, if any, are left open (no `>`) for bindings to follow; returns whether open.
    private mutating func printPathMaybeOpenGenerics() throws -> Bool {
        if eat(UInt8(ascii: "B")) {
            var open = false
            try backReference { open = try $0.printPathMaybeOpenGenerics() }
            return open
        } else if eat(UInt8(ascii: "I")) {
            try printPath(inValue: false)
            try print("<")
            try printList(separator: ", ") { try $0.printGenericArgument() }
            return true
        } else {
            try printPath(inValue: false)
            return false
        }
    }

    private mutating func printPattern() throws {
        switch try next() {
        case UInt8(ascii: "R"):
            try printConst(inValue: false)
            try print("..=")
            try printConst(inValue: false)
        case UInt8(ascii: "O"):
            try nested { this in
                try this.printPattern()
                while !this.eat(UInt8(ascii: "E")) {
                    try this.print(" | ")
                    try this.printPattern()
                }
            }
        case UInt8(ascii: "N"):
            try print("!null")
        default:
            throw InvalidSymbol()
        }
    }

    /// A constant: a generic argument (`inValue` false: anything but a literal is braced, as Rust requires) or part
    /// of another constant.
    private mutating func printConst(inValue: Bool) throws {
        let tag = try next()
        try nested { this in
            var braced = false
            func openBrace(_ this: inout V0Printer) throws {
                guard !inValue else { return }
                braced = true
                try this.print("{")
            }
            switch tag {
            case UInt8(ascii: "p"):  // a placeholder
                try this.print("_")
            case UInt8(ascii: "h"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "y"), UInt8(ascii: "o"),
                UInt8(ascii: "j"):
                try this.printUnsigned()
            case UInt8(ascii: "a"), UInt8(ascii: "s"), UInt8(ascii: "l"), UInt8(ascii: "x"), UInt8(ascii: "n"),
                UInt8(ascii: "i"):
                if this.eat(UInt8(ascii: "n")) { try this.print("-") }
                try this.printUnsigned()
            case UInt8(ascii: "b"):
                switch parseUInt64(try this.hexNibbles()) {
                case 0?: try this.print("false")
                case 1?: try this.print("true")
                default: throw InvalidSymbol()
                }
            case UInt8(ascii: "c"):
                guard let value = parseUInt64(try this.hexNibbles()), value <= UInt64(UInt32.max),
                      let scalar = Unicode.Scalar(UInt32(value))
                else { throw InvalidSymbol() }
                try this.printQuoted([scalar], quote: "'")
            case UInt8(ascii: "e"):
                // A `str` value: `*"…"`, since the literal alone would be a `&str`.
                try openBrace(&this)
                try this.print("*")
                try this.printStringLiteral()
            case UInt8(ascii: "R"), UInt8(ascii: "Q"):
                if tag == UInt8(ascii: "R"), this.eat(UInt8(ascii: "e")) {
                    try this.printStringLiteral()  // `"…"` rather than `&*"…"`
                } else {
                    try openBrace(&this)
                    try this.print(tag == UInt8(ascii: "R") ? "&" : "&mut ")
                    try this.printConst(inValue: true)
                }
            case UInt8(ascii: "A"):
                try openBrace(&this)
                try this.print("[")
                try this.printList(separator: ", ") { try $0.printConst(inValue: true) }
                try this.print("]")
            case UInt8(ascii: "T"):
                try openBrace(&this)
                try this.print("(")
                let count = try this.printList(separator: ", ") { try $0.printConst(inValue: true) }
                if count == 1 { try this.print(",") }
                try this.print(")")
            case UInt8(ascii: "V"):  // a value of a struct or enum variant
                try openBrace(&this)
                try this.printPath(inValue: true)
                switch try this.next() {
                case UInt8(ascii: "U"):
                    break
                case UInt8(ascii: "T"):
                    try this.print("(")
                    try this.printList(separator: ", ") { try $0.printConst(inValue: true) }
                    try this.print(")")
                case UInt8(ascii: "S"):
                    try this.print(" { ")
                    try this.printList(separator: ", ") { this in
                        _ = try this.disambiguator()
                        let name = try this.identifier()
                try this.print(name)
                        try this.print(": ")
                        try this.printConst(inValue: true)
                    }
                    try this.print(" }")
                default:
                    throw InvalidSymbol()
                }
            case UInt8(ascii: "B"):
                try this.backReference { try $0.printConst(inValue: inValue) }
            default:
                throw InvalidSymbol()
            }
            if braced { try this.print("}") }
        }
    }

    /// Hex digits as a decimal number, or as `0x…` when past 64 bits.
    private mutating func printUnsigned() throws {
        let nibbles = try hexNibbles()
        if let value = parseUInt64(nibbles) {
            try print(number: value)
        } else {
            try print("0x")
            try print(bytes: nibbles)
        }
    }

    /// A `str` constant: its UTF-8 bytes as hex digit pairs.
    private mutating func printStringLiteral() throws {
        let nibbles = try hexNibbles()
        guard nibbles.count % 2 == 0 else { throw InvalidSymbol() }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(nibbles.count / 2)
        var index = nibbles.startIndex
        while index < nibbles.endIndex {
            bytes.append(hexValue(nibbles[index]) << 4 | hexValue(nibbles[index + 1]))
            index += 2
        }
        var scalars: [Unicode.Scalar] = []
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        decoding: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar)
            case .emptyInput: break decoding
            case .error: throw InvalidSymbol()
            }
        }
        try printQuoted(scalars, quote: "\"")
    }

    /// Characters quoted and escaped like Rust's `char::escape_debug`, except that a quote of the other kind is not
    /// escaped.
    private mutating func printQuoted(_ scalars: [Unicode.Scalar], quote: Unicode.Scalar) throws {
        try print(scalar: quote)
        for scalar in scalars {
            switch scalar {
            case "\0": try print("\\0")
            case "\t": try print("\\t")
            case "\r": try print("\\r")
            case "\n": try print("\\n")
            case "\\": try print("\\\\")
            case "'" where quote == "'": try print("\\'")
            case "\"" where quote == "\"": try print("\\\"")
            default:
                if needsEscape(scalar) {
                    try print("\\u{")
                    try print(bytes: String(scalar.value, radix: 16).utf8)
                    try print("}")
                } else {
                    try print(scalar: scalar)
                }
            }
        }
        try print(scalar: quote)
    }
}

/// What Rust's `escape_debug` writes as `\u{…}`: characters that do not print by themselves. Rust decides with its
/// own tables; Swift's Unicode properties give the same answer for the characters that occur in practice.
private func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
    let properties = scalar.properties
    if properties.isGraphemeExtend { return true }
    switch properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator:
        return true
    case .spaceSeparator:
        return scalar != " "
    default:
        return false
    }
}

private func isLowerHexDigit(_ byte: UInt8) -> Bool {
    RustDemangler.isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
}

private func isUpper(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
}

private func isLower(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
}

private func hexValue(_ nibble: UInt8) -> UInt8 {
    RustDemangler.isDigit(nibble) ? nibble - UInt8(ascii: "0") : nibble - UInt8(ascii: "a") + 10
}

/// The value of lower-case hex digits, or nil past 64 bits (leading zeros do not count).
private func parseUInt64(_ nibbles: ArraySlice<UInt8>) -> UInt64? {
    let significant = nibbles.drop { $0 == UInt8(ascii: "0") }
    guard significant.count <= 16 else { return nil }
    return significant.reduce(0) { $0 << 4 | UInt64(hexValue($1)) }
}

/// The one-letter types of the v0 grammar.
private func basicType(_ tag: UInt8) -> String? {
    switch tag {
    case UInt8(ascii: "a"): "i8"
    case UInt8(ascii: "b"): "bool"
    case UInt8(ascii: "c"): "char"
    case UInt8(ascii: "d"): "f64"
    case UInt8(ascii: "e"): "str"
    case UInt8(ascii: "f"): "f32"
    case UInt8(ascii: "h"): "u8"
    case UInt8(ascii: "i"): "isize"
    case UInt8(ascii: "j"): "usize"
    case UInt8(ascii: "l"): "i32"
    case UInt8(ascii: "m"): "u32"
    case UInt8(ascii: "n"): "i128"
    case UInt8(ascii: "o"): "u128"
    case UInt8(ascii: "p"): "_"
    case UInt8(ascii: "s"): "i16"
    case UInt8(ascii: "t"): "u16"
    case UInt8(ascii: "u"): "()"
    case UInt8(ascii: "v"): "..."
    case UInt8(ascii: "x"): "i64"
    case UInt8(ascii: "y"): "u64"
    case UInt8(ascii: "z"): "!"
    default: nil
    }
}

// MARK: - Punycode

/// RFC 3492's decoder with its parameters, for identifiers that are not ASCII.
private enum Punycode {
    /// Longer identifiers are printed in rustc-demangle's `punycode{…}` form instead, as rustc-demangle does.
    static let maximumDecodedLength = 128

    static func decode(ascii: ArraySlice<UInt8>, deltas: ArraySlice<UInt8>) -> [Unicode.Scalar]? {
        let base = 36, tMin = 1, tMax = 26, skew = 38
        var output = ascii.map { Unicode.Scalar($0) }
        guard output.count <= maximumDecodedLength, !deltas.isEmpty else { return nil }
        var damp = 700, bias = 72, index = 0, codePoint = 0x80
        var remaining = deltas[...]
        while !remaining.isEmpty {
            // One variable-length delta.
            var delta = 0, weight = 1, k = 0
            while true {
                k += base
                let threshold = min(max(k - bias, tMin), tMax)
                guard let byte = remaining.popFirst() else { return nil }
                let digit: Int
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"): digit = Int(byte - UInt8(ascii: "a"))
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = 26 + Int(byte - UInt8(ascii: "0"))
                default: return nil
                }
                let (product, productOverflow) = digit.multipliedReportingOverflow(by: weight)
                let (sum, sumOverflow) = delta.addingReportingOverflow(product)
                guard !productOverflow, !sumOverflow else { return nil }
                delta = sum
                if digit < threshold { break }
                let (nextWeight, weightOverflow) = weight.multipliedReportingOverflow(by: base - threshold)
                guard !weightOverflow else { return nil }
                weight = nextWeight
            }
            let length = output.count + 1
            let (position, positionOverflow) = index.addingReportingOverflow(delta)
            guard !positionOverflow else { return nil }
            let (nextCodePoint, codePointOverflow) = codePoint.addingReportingOverflow(position / length)
            guard !codePointOverflow, nextCodePoint <= 0x10FFFF, let scalar = Unicode.Scalar(UInt32(nextCodePoint)),
                  length <= maximumDecodedLength
            else { return nil }
            codePoint = nextCodePoint
            index = position % length
            output.insert(scalar, at: index)
            index += 1
            if remaining.isEmpty { break }
            // Bias adaptation.
            delta /= damp
            damp = 2
            delta += delta / length
            var shift = 0
            while delta > ((base - tMin) * tMax) / 2 {
                delta /= base - tMin
                shift += base
            }
            bias = shift + ((base - tMin + 1) * delta) / (delta + skew)
        }
        return output
    }
}
