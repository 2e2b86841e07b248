import Profiler

/// Placeholder: being written (issue 4).
public struct FirefoxProfilerExporter: Sendable {
    public init() {}

    public func render(_ profile: Profile) -> [UInt8] {
        []
    }
}
