import CBPF

/// The BPF program's named counters, as `PYBPFPROF_COUNTERS` in bpf/pybpfprof.h defines them: the enum and each
/// counter's label and kind come from that one list, so every counter has a label.
enum CounterCatalog {
    struct Entry {
        let counter: counter
        /// Its label in the summary.
        let name: String
        /// Whether it counts errors rather than normal events (cache misses, threads that run no Python).
        let isError: Bool
    }

    /// Every counter, in the order of the enum.
    static let entries: [Entry] = (0..<COUNTER_COUNT.rawValue).map { value in
        var isError: Int32 = 0
        let label = cbpf_counter_label(value, &isError).map { String(cString: $0) } ?? ""
        return Entry(counter: counter(rawValue: value), name: label, isError: isError != 0)
    }
}
