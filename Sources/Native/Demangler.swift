import CSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Turns mangled symbol names into the names people write.
public enum Demangler {
    /// Longer names are returned unchanged. Both demanglers recurse on nested types, and the names come from files
    /// that may be hostile: the bound keeps their work and stack depth small. Real mangled names, even of
    /// template-heavy C++, are far shorter.
    public static let maximumMangledLength = 4096
    /// A demangled name longer than this is dropped for the mangled one: back-references let a short mangled
    /// name expand to a very long one, which would bloat every profile that contains the frame.
    public static let maximumDemangledLength = 16384

    /// Rust names (legacy `_ZN…17h<hash>E` and v0 `_R…`) through ``RustDemangler``, as `path::to::function`
    /// without hashes; C++ names (Itanium ABI, `_Z…`) through libstdc++'s `__cxa_demangle`, Swift names (`$s…`,
    /// `$S…`, `$e…`, `_T0…`) through the Swift runtime's `swift_demangle`; anything else, and anything they reject,
    /// unchanged. C++ parameter lists are kept: they tell overloads apart.
    public static func demangle(_ name: String) -> String {
        guard name.utf8.count <= maximumMangledLength else { return name }
        let demangled: String?
        // Rust first: legacy Rust names are valid C++ names too (`_ZN…E`), which `__cxa_demangle` would print with
        // the hash and the `$LT$`-style escapes left in.
        if let rust = RustDemangler.demangle(name, maximumLength: maximumDemangledLength) {
            demangled = rust
        } else if name.hasPrefix("_Z") {
            demangled = name.withCString { takeMallocated(csystem_demangle_cxx($0)) }
        } else if swiftPrefixes.contains(where: name.hasPrefix) {
            demangled = name.withCString { takeMallocated(swift_demangle($0, strlen($0), nil, nil, 0)) }
        } else {
            demangled = nil
        }
        guard let demangled, !demangled.isEmpty, demangled.utf8.count <= maximumDemangledLength else { return name }
        return demangled
    }

    /// Swift 5+ (`$s`), Swift 4.2 (`$S`), Embedded Swift (`$e`) and Swift 4 (`_T0`) manglings; the `_` forms are
    /// how Darwin spells them in symbol tables.
    private static let swiftPrefixes = ["$s", "$S", "$e", "_$s", "_$S", "_$e", "_T0"]

    private static func takeMallocated(_ pointer: UnsafeMutablePointer<CChar>?) -> String? {
        guard let pointer else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }
}
