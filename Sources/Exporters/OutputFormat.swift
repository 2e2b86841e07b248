import ProfileModel

/// The file formats a profile can be written in.
public enum OutputFormat: String, CaseIterable, Sendable {
    /// Brendan Gregg's folded ("collapsed") stacks, for flamegraph.pl, inferno and most flame graph tools.
    case folded
    /// speedscope's JSON file format, one sampled profile per thread.
    case speedscope
    /// A self-contained interactive flame graph page.
    case html
    /// The Firefox Profiler's processed profile format: a timeline per thread.
    case firefox
    /// pprof's gzip-compressed profile.proto, for `go tool pprof`, Pyroscope and Parca.
    case pprof

    /// The extensions that name a format, each before any that ends it (`.firefox.json` before `.json`).
    private static let extensions: [(suffix: String, format: OutputFormat)] = [
        (".folded", .folded), (".collapsed", .folded), (".txt", .folded),
        (".html", .html), (".htm", .html),
        (".firefox.json", .firefox),
        (".pb.gz", .pprof), (".pprof", .pprof), (".pb", .pprof),
        // `.speedscope.json` is the conventional name; any other JSON file means speedscope too.
        (".speedscope.json", .speedscope), (".json", .speedscope),
    ]

    /// Chooses the format from the output path's extension, case-insensitively; nil when it names none.
    public init?(path: String) {
        guard let match = Self.match(path) else { return nil }
        self = match.format
    }

    /// The whole extension of the path's file name that names a format, as the path spells it, with its dot:
    /// `.speedscope.json` for `run.speedscope.json`, `.pb.gz` for `cpu.PB.GZ` (`.PB.GZ`); nil when it names none.
    public static func knownExtension(of path: String) -> String? {
        guard let match = match(path) else { return nil }
        let fileName = path.split(separator: "/").last ?? ""
        return String(fileName.suffix(match.suffix.count))
    }

    private static func match(_ path: String) -> (suffix: String, format: OutputFormat)? {
        let fileName = path.split(separator: "/").last.map { $0.lowercased() } ?? ""
        return extensions.first { fileName.hasSuffix($0.suffix) }
    }

    /// The extension, without the leading dot, to give a file of this format when the user names none.
    public var fileExtension: String {
        switch self {
        case .folded: "folded"
        case .speedscope: "speedscope.json"
        case .html: "html"
        case .firefox: "firefox.json"
        case .pprof: "pb.gz"
        }
    }

    /// The format as the line that names a written file says it: folded adds what its counts are, which the file
    /// cannot say itself (the other formats carry their unit).
    public func written(mode: ProfileMode) -> String {
        self == .folded ? "\(rawValue); \(FoldedExporter.unitDescription(for: mode))" : rawValue
    }

    /// The profile as the bytes of a file in this format, with each exporter's default options.
    public func render(_ profile: Profile) -> [UInt8] {
        switch self {
        case .folded: FoldedExporter().render(profile)
        case .speedscope: SpeedscopeExporter().render(profile)
        case .html: FlameGraphHTMLExporter().render(profile)
        case .firefox: FirefoxProfilerExporter().render(profile)
        case .pprof: PprofExporter().render(profile)
        }
    }
}
