import CPython

/// What process following knows: the tree under `--subprocesses` roots, forked Python children to register, and
/// exec'ed processes whose interpreter is still to be located. (The registered processes are the Recorder's
/// `ProcessTable`.)
struct ProcessFollowing {
    var tree: Set<Int32> = []
    /// The processes the user named (`--pid`, the command `record --` launched): a target is the process, so one that
    /// execs another program is located again, as with `--subprocesses` and `--all`. (Also a registration made between
    /// an exec's new memory map and its exec event is then not lost: the event forgets it, the next locate restores it.)
    var namedTargets: Set<Int32> = []
    /// Forked children of registered Python processes, to register with their parent's interpreter.
    var forks: [(parent: PythonInterpreter, child: Int32)] = []
    /// pid -> (next attempt, delay before the one after), in nanoseconds.
    var pending: [Int32: (next: UInt64, delay: UInt64)] = [:]

    /// A process the user named: followed across exec, and the root of a tree with `--subprocesses`.
    mutating func name(_ pid: Int32, subprocesses: Bool) {
        namedTargets.insert(pid)
        if subprocesses { tree.insert(pid) }
    }

    static let firstDelay: UInt64 = 1_000_000
    static let lastDelay: UInt64 = 512_000_000

    mutating func schedule(_ pid: Int32, now: UInt64) {
        pending[pid] = (now, Self.firstDelay)
    }

    /// Removes a queued fork; false if it is no longer queued (it exec'ed, or was taken already).
    mutating func takeFork(_ child: Int32) -> Bool {
        guard let index = forks.firstIndex(where: { $0.child == child }) else { return false }
        forks.remove(at: index)
        return true
    }

    /// When the next attempt is due, if any process is waiting for one.
    var nextAttempt: UInt64? { pending.values.map(\.next).min() }

    /// The processes whose next attempt is due, the longest due first (a backlog is worked off in order).
    func due(now: UInt64) -> [Int32] {
        pending.filter { $0.value.next <= now }.sorted { $0.value.next < $1.value.next }.map(\.key)
    }

    /// Not Python yet: the loader may still be mapping libpython. Tries again later, doubling the delay; gives up
    /// after the last one.
    mutating func retry(_ pid: Int32, now: UInt64) {
        guard let (_, delay) = pending[pid], delay <= Self.lastDelay else {
            pending[pid] = nil
            return
        }
        pending[pid] = (now + delay, delay * 2)
    }
}
