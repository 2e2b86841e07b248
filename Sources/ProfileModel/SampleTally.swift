/// What a recording's end-of-run summary counts of its samples, kept without the samples: a recording written a period
/// at a time (`record --rotate`) forgets each period's samples once they are written, and its summary still covers
/// every period. Its size follows the profile's tables (one count per stack), not the length of the recording.
public struct SampleTally: Sendable {
    /// How many samples were added.
    public private(set) var count = 0
    /// Nanoseconds the samples stand for: their weights summed. What shares are of when samples weigh unequally
    /// (modes wall and offcpu, whose off-CPU intervals weigh their length).
    public private(set) var weight: UInt64 = 0
    /// Per stack of the profile the samples index into: how many samples have it. Ends at the last stack counted.
    public private(set) var samplesPerStack: [Int] = []
    /// Per stack, as `samplesPerStack`: the weights of the samples that have it, summed.
    public private(set) var weightPerStack: [UInt64] = []
    /// The threads the samples came from.
    public private(set) var threads: Set<ThreadKey> = []

    public init() {}

    public init(_ samples: some Sequence<Sample>) {
        add(samples)
    }

    /// Counts `samples`, which index into the same profile's tables as those counted before.
    public mutating func add(_ samples: some Sequence<Sample>) {
        for sample in samples {
            count += 1
            weight += sample.weight
            let stack = Int(sample.stack)
            if stack >= samplesPerStack.count {
                let added = stack + 1 - samplesPerStack.count
                samplesPerStack += [Int](repeating: 0, count: added)
                weightPerStack += [UInt64](repeating: 0, count: added)
            }
            samplesPerStack[stack] += 1
            weightPerStack[stack] += sample.weight
            threads.insert(ThreadKey(process: sample.process, tid: sample.tid))
        }
    }
}
