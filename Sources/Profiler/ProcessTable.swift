import CPython
import ProfileModel

/// One registered process: everything the recording keeps of it, in one value, dropped at once when the process
/// exits or execs another program.
struct ProcessState {
    /// Which registration this is: a pid forgotten and registered again (an exec, a pid the kernel reused) gets
    /// another, so that work begun for the old one (native tables compiling meanwhile) is not applied to the new one.
    let registration: UInt64
    /// What the profile records of it. It enters the profile with its first sample: a process never sampled (most of
    /// a busy host's short-lived ones) leaves nothing behind.
    let description: ProfiledProcess
    /// Its index in the profile's processes, from its first sample on.
    var instance: Int32?
    /// nil for a process that does not run Python.
    let interpreter: PythonInterpreter?
    /// Turns its records into stacks. Only the drain thread uses it.
    let decoder: StackDecoder<Int32>
    /// Its executable mappings, once loaded (native recordings only).
    var native: NativeProcess?
    /// `native` changed since the decoder was given it.
    var nativeChanged = false
    /// Its samples reached code in no known mapping (a library loaded later): its maps are to be read again.
    var mappingsStale = false
    /// When its maps were last read again.
    var lastRefresh: UInt64 = 0
    /// When a sample first reached code in no known mapping since its mappings were last given to the unwinder: the
    /// start of the gap a library loaded while recording leaves (`closeUnknownCodeGap`).
    var unknownCodeSince: UInt64?
}

/// The registered processes by pid, one `ProcessState` each. A plain value: the Recorder keeps it under its lock,
/// every change goes through the methods below, and forgetting a pid forgets all of it.
struct ProcessTable {
    private var processes: [Int32: ProcessState] = [:]
    private var lastRegistration: UInt64 = 0
    /// Processes forgotten so far.
    private(set) var forgotten = 0

    var count: Int { processes.count }

    subscript(pid: Int32) -> ProcessState? { processes[pid] }

    func contains(_ pid: Int32) -> Bool { processes[pid] != nil }

    /// Registers a process, replacing what was registered under its pid; returns its registration.
    mutating func register(pid: Int32, description: ProfiledProcess, interpreter: PythonInterpreter?,
                           decoder: StackDecoder<Int32>) -> UInt64 {
        lastRegistration += 1
        processes[pid] = ProcessState(registration: lastRegistration, description: description, interpreter: interpreter,
                                      decoder: decoder)
        return lastRegistration
    }

    /// Forgets a process; returns what it was, nil if it was not registered.
    mutating func forget(_ pid: Int32) -> ProcessState? {
        guard let state = processes.removeValue(forKey: pid) else { return nil }
        forgotten += 1
        return state
    }

    /// Every registered process's state (at the end of a recording).
    var states: Dictionary<Int32, ProcessState>.Values { processes.values }

    /// The state to decode a record of `pid` with, its decoder given the process's current mappings first.
    mutating func stateForDecoding(_ pid: Int32) -> ProcessState? {
        guard let state = processes[pid] else { return nil }
        if state.nativeChanged {
            // Addresses may now belong to other files: the decoder resolves them again.
            state.decoder.native = state.native
            processes[pid]?.nativeChanged = false
        }
        return state
    }

    /// Records the profile index of a process's first sample, unless it was forgotten or registered again meanwhile.
    mutating func setInstance(_ instance: Int32, pid: Int32, registration: UInt64) {
        guard processes[pid]?.registration == registration else { return }
        processes[pid]?.instance = instance
    }

    /// Gives a process its (new) mappings; false, changing nothing, if it was forgotten or registered again since
    /// `registration`.
    mutating func setNative(_ native: NativeProcess, pid: Int32, registration: UInt64) -> Bool {
        guard processes[pid]?.registration == registration else { return false }
        processes[pid]?.native = native
        processes[pid]?.nativeChanged = true
        return true
    }

    /// Its samples reached code in no known mapping; true if it was not marked so already (and has mappings to
    /// read again).
    mutating func markStale(_ pid: Int32, now: UInt64) -> Bool {
        guard let state = processes[pid], state.native != nil else { return false }
        if state.unknownCodeSince == nil { processes[pid]?.unknownCodeSince = now }
        guard !state.mappingsStale else { return false }
        processes[pid]?.mappingsStale = true
        return true
    }

    /// Its maps were read again and had changed (`registration` still its): how long ago a sample first reached the code
    /// they now cover, if one did; the gap is closed.
    mutating func closeUnknownCodeGap(_ pid: Int32, registration: UInt64, now: UInt64) -> UInt64? {
        guard let state = processes[pid], state.registration == registration, let since = state.unknownCodeSince else { return nil }
        processes[pid]?.unknownCodeSince = nil
        return now >= since ? now - since : 0
    }

    /// The stale processes whose maps were last read at least `interval` ago, now marked read.
    mutating func takeDueRefreshes(now: UInt64, interval: UInt64)
        -> [(pid: Int32, registration: UInt64, native: NativeProcess, interpreterFile: String?)]
    {
        var due: [(pid: Int32, registration: UInt64, native: NativeProcess, interpreterFile: String?)] = []
        for (pid, state) in processes where state.mappingsStale && now - state.lastRefresh >= interval {
            guard let native = state.native else { continue }
            due.append((pid, state.registration, native, state.interpreter?.binaryPath))
            processes[pid]?.mappingsStale = false
            processes[pid]?.lastRefresh = now
        }
        return due
    }

    /// When the next stale process's maps are due to be read again, if any is stale.
    func nextRefresh(interval: UInt64) -> UInt64? {
        processes.values.filter(\.mappingsStale).map { $0.lastRefresh + interval }.min()
    }
}
