/// One function's share of some samples.
public struct FunctionCount: Equatable, Sendable {
    /// The function's label (`Frame.LabelStyle.function`): own and total add up over its lines.
    public var name: String
    /// Samples whose leaf frame is the function.
    public var own: Int
    /// Samples with the function anywhere on the stack, once per sample however often recursion repeats it.
    public var total: Int

    public init(name: String, own: Int, total: Int) {
        self.name = name
        self.own = own
        self.total = total
    }
}

/// One function's share of some samples' time: what the shares of `top` and `report` are of when samples weigh
/// unequally (modes wall and offcpu, whose off-CPU intervals weigh their length).
public struct FunctionWeight: Equatable, Sendable {
    /// The function's label (`Frame.LabelStyle.function`).
    public var name: String
    /// Nanoseconds of the samples whose leaf frame is the function.
    public var own: UInt64
    /// Nanoseconds of the samples with the function anywhere on the stack, once per sample however often recursion
    /// repeats it.
    public var total: UInt64

    public init(name: String, own: UInt64, total: UInt64) {
        self.name = name
        self.own = own
        self.total = total
    }
}

/// The functions of a profile's stacks, worked out once per frame and per stack so that own and total samples can be
/// counted, or weighed, as often as needed (`top` counts at every refresh). A Profile's frames and stacks only ever
/// grow, so a table follows a growing profile by adding what came after the part it knows.
public struct FunctionTable: Sendable {
    /// Function labels, interned: frames on different lines of one function are one function.
    private var names = InternTable<String>()
    /// Per profile frame: its function.
    private var frameFunctions: [Int32] = []
    /// Per profile stack: its leaf's function (nil for an empty stack) and every function on it once.
    private var stackFunctions: [(leaf: Int32?, distinct: [Int32])] = []
    /// Per profile stack: its frames, to work its functions out again when a frame is relabelled.
    private var stackFrames: [[Int32]] = []

    public init() {}

    public init(_ profile: Profile) {
        add(frames: profile.frames, stacks: profile.stacks)
    }

    /// How many of the profile's frames the table knows: the profile's first `knownFrames`.
    public var knownFrames: Int { frameFunctions.count }
    /// How many of the profile's stacks the table knows: the profile's first `knownStacks`.
    public var knownStacks: Int { stackFunctions.count }

    /// Adds the profile's frames and stacks that follow those known, in the profile's order.
    public mutating func add(frames: some Sequence<Frame>, stacks: some Sequence<[Int32]>) {
        for frame in frames { frameFunctions.append(names.intern(frame.label(.function))) }
        for stack in stacks {
            stackFunctions.append(functions(of: stack))
            stackFrames.append(stack)
        }
    }

    /// Gives frames new labels (`top`: names that arrived from debug files after their frames were added), each
    /// frame by its index in the profile; frames not known yet are left alone.
    public mutating func relabel(_ frames: [Int32: Frame]) {
        guard !frames.isEmpty else { return }
        for (index, frame) in frames where index >= 0 && Int(index) < frameFunctions.count {
            frameFunctions[Int(index)] = names.intern(frame.label(.function))
        }
        stackFunctions = stackFrames.map(functions(of:))
    }

    private func functions(of stack: [Int32]) -> (leaf: Int32?, distinct: [Int32]) {
        let functions = stack.map { frameFunctions[Int($0)] }
        var seen = Set<Int32>()
        return (leaf: functions.last, distinct: functions.filter { seen.insert($0).inserted })
    }

    /// Every function of the counted stacks with its own and total samples: most own samples first, then most total,
    /// then by name. `samplesPerStack[i]`: how many samples have the profile's stack `i`.
    public func count(samplesPerStack: [Int]) -> [FunctionCount] {
        let (own, total) = sums(samplesPerStack)
        return names.elements.indices.filter { total[$0] > 0 }
            .map { FunctionCount(name: names.elements[$0], own: own[$0], total: total[$0]) }
            .sorted { ($0.own, $0.total, $1.name) > ($1.own, $1.total, $0.name) }
    }

    /// Every function of the weighed stacks with its own and total nanoseconds: most own time first, then most
    /// total, then by name. `weightPerStack[i]`: the weights of the samples that have the profile's stack `i`,
    /// summed.
    public func weigh(weightPerStack: [UInt64]) -> [FunctionWeight] {
        let (own, total) = sums(weightPerStack)
        return names.elements.indices.filter { total[$0] > 0 }
            .map { FunctionWeight(name: names.elements[$0], own: own[$0], total: total[$0]) }
            .sorted { ($0.own, $0.total, $1.name) > ($1.own, $1.total, $0.name) }
    }

    /// Per function: the amounts of the stacks it is the leaf of, and of the stacks it is on.
    private func sums<Amount: FixedWidthInteger>(_ amountPerStack: [Amount]) -> (own: [Amount], total: [Amount]) {
        var own = [Amount](repeating: 0, count: names.count)
        var total = [Amount](repeating: 0, count: names.count)
        for (stack, amount) in amountPerStack.enumerated() where amount > 0 {
            let functions = stackFunctions[stack]
            if let leaf = functions.leaf { own[Int(leaf)] += amount }
            for function in functions.distinct { total[Int(function)] += amount }
        }
        return (own, total)
    }
}

extension Profile {
    /// Every function of the profile's samples with its own and total samples, ordered as `FunctionTable.count` does.
    public func functionCounts() -> [FunctionCount] {
        var samplesPerStack = [Int](repeating: 0, count: stacks.count)
        for sample in samples { samplesPerStack[Int(sample.stack)] += 1 }
        return FunctionTable(self).count(samplesPerStack: samplesPerStack)
    }

    /// Every function of the profile's samples with its own and total nanoseconds, ordered as `FunctionTable.weigh`
    /// does.
    public func functionWeights() -> [FunctionWeight] {
        var weightPerStack = [UInt64](repeating: 0, count: stacks.count)
        for sample in samples { weightPerStack[Int(sample.stack)] += sample.weight }
        return FunctionTable(self).weigh(weightPerStack: weightPerStack)
    }
}
