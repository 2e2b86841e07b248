/// The flame graph page around its data (FlameGraphHTMLExporter): Resources/flamegraph.html with
/// flamegraph.css and flamegraph.js inline in place of their markers, and nothing loaded from anywhere (the
/// Content-Security-Policy forbids it too, in case a later edit tries).
///
/// SwiftPM embeds the three files in the binary (`.embedInCode` in Package.swift) rather than in a resource
/// bundle: the binary is copied alone to the hosts it profiles, so nothing is looked up at run time.
///
/// Names from the profile reach the page only through `JSON.parse` and `textContent` or the canvas, never
/// through markup, so a frame called `<img src=x onerror=...>` is shown as those characters.
enum FlameGraphPage {
    /// The page up to its data, and after it.
    static let (beforeData, afterData) = assemble()

    private static func assemble() -> ([UInt8], [UInt8]) {
        let (head, afterStyle) = split(PackageResources.flamegraph_html, at: "{{flamegraph.css}}")
        let (middle, afterData) = split(afterStyle, at: "{{profile data}}")
        let (beforeScript, tail) = split(afterData, at: "{{flamegraph.js}}")
        return (head + PackageResources.flamegraph_css + middle, beforeScript + PackageResources.flamegraph_js + tail)
    }

    /// The bytes before and after `marker`, which the template holds once: a broken template stops the first
    /// export, which every flame graph test makes, rather than writing a page without its script.
    private static func split(_ template: [UInt8], at marker: String) -> ([UInt8], [UInt8]) {
        let marker = Array(marker.utf8)
        guard let range = template.firstRange(of: marker), template[range.upperBound...].firstRange(of: marker) == nil
        else { preconditionFailure("flamegraph.html must hold \(String(decoding: marker, as: UTF8.self)) once") }
        return (Array(template[..<range.lowerBound]), Array(template[range.upperBound...]))
    }
}
