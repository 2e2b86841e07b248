/// The last component of a path, as NSString's `lastPathComponent` gives it (FoundationEssentials keeps its own
/// internal): "decoder.py" for "/usr/lib/python3.12/json/decoder.py" and for "json/decoder.py/", "/" for "/", the
/// whole string when it has no "/" ("<frozen posixpath>", "[vdso]"). A function rather than a String property so
/// that it does not clash with Foundation's in the tests, which import both.
public func lastPathComponent(_ path: String) -> String {
    guard let lastNonSlash = path.lastIndex(where: { $0 != "/" }) else { return path.isEmpty ? "" : "/" }
    let trimmed = path[...lastNonSlash]
    guard let slash = trimmed.lastIndex(of: "/") else { return String(trimmed) }
    return String(trimmed[trimmed.index(after: slash)...])
}
