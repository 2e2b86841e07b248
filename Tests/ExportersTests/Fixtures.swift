import ProfileModel

/// A recording of two processes and three threads at 100 Hz (a 10 ms period), with every kind of frame,
/// samples out of time order, and one stack shared by two threads.
enum Fixture {
    static let appModule = Frame(kind: .python, name: "<module>", file: "app.py", line: 30)
    static let main = Frame(kind: .python, name: "main", file: "app.py", line: 25)
    static let serve = Frame(kind: .python, name: "Server.serve", file: "app.py", line: 12)
    static let workerRun = Frame(kind: .python, name: "Worker.run", file: "worker.py", line: 8)
    static let evalFrame = Frame(kind: .native, name: "_PyEval_EvalFrameDefault", file: "libpython3.12.so.1.0")
    static let syscall = Frame(kind: .kernel, name: "do_syscall_64")
    static let batchModule = Frame(kind: .python, name: "<module>", file: "/srv/batch.py", line: 1)
    /// Python frames whose line, or file and line, are unknown.
    static let compute = Frame(kind: .python, name: "compute", file: "/srv/batch.py")
    static let helper = Frame(kind: .python, name: "helper")

    static let period: UInt64 = 10_000_000
    static let ms: UInt64 = 1_000_000

    /// The main thread's samples in time order; the profile records them out of order.
    static let mainThreadStacks: [[Frame]] = [
        [appModule, main, serve],
        [appModule, main, serve],
        [appModule, main, serve, evalFrame, syscall],
        [appModule, main],
    ]
    static let workerStacks: [[Frame]] = [
        [.truncated, workerRun],
        [.truncated, workerRun],
        [appModule, main],
    ]
    static let batchStacks: [[Frame]] = [
        [batchModule, compute, helper],
        [batchModule, compute],
    ]

    static var profile: Profile {
        var profile = Profile(sampleRate: 100, startDate: 1_714_564_800)  // 2024-05-01T12:00:00Z
        _ = profile.add(ProfiledProcess(pid: 100, commandLine: "/usr/bin/python3 app.py", pythonVersion: "3.12.1"))
        _ = profile.add(ProfiledProcess(pid: 200, commandLine: "/usr/local/bin/python3.11 -m batch", pythonVersion: "3.11.9"))
        profile.append(time: 0 * ms, cpu: 0, pid: 100, tid: 100, threadName: "MainThread", stack: mainThreadStacks[0])
        profile.append(time: 5 * ms, cpu: 1, pid: 100, tid: 101, threadName: "worker", stack: workerStacks[0])
        profile.append(time: 1 * ms, cpu: 0, pid: 200, tid: 200, threadName: "MainThread", stack: batchStacks[0])
        profile.append(time: 20 * ms, cpu: 0, pid: 100, tid: 100, threadName: "MainThread", stack: mainThreadStacks[2])
        profile.append(time: 10 * ms, cpu: 1, pid: 100, tid: 100, threadName: "MainThread", stack: mainThreadStacks[1])
        profile.append(time: 15 * ms, cpu: 1, pid: 100, tid: 101, threadName: "worker", stack: workerStacks[1])
        profile.append(time: 11 * ms, cpu: 0, pid: 200, tid: 200, threadName: "MainThread", stack: batchStacks[1])
        profile.append(time: 30 * ms, cpu: 0, pid: 100, tid: 100, threadName: "MainThread", stack: mainThreadStacks[3])
        profile.append(time: 25 * ms, cpu: 1, pid: 100, tid: 101, threadName: "worker", stack: workerStacks[2])
        profile.duration = 40 * ms
        return profile
    }
}

/// On-CPU and off-CPU time of unequal weights, as `record --mode wall` records them: the main thread runs
/// `Server.serve` for one 10 ms sampling period, then sleeps in `wait` for 1 s, an interval whose sample is taken
/// at its end. The sleep is 1 s of the 1.01 s the samples stand for: 99.0099%.
enum IntervalFixture {
    static let wait = Frame(kind: .python, name: "wait", file: "/usr/lib/python3.12/threading.py", line: 355)
    static let runningStack = Fixture.mainThreadStacks[0]
    static let sleepingStack = [Fixture.appModule, Fixture.main, wait, .offCPUSleeping]
    static let second: UInt64 = 1_000_000_000

    /// The profile as recorded in `mode`: the formats tell the modes apart by it, not by the samples.
    static func profile(_ mode: ProfileMode = .wall) -> Profile {
        var profile = Profile(sampleRate: 100, startDate: 1_714_564_800)
        profile.mode = mode
        _ = profile.add(ProfiledProcess(pid: 100, commandLine: "/usr/bin/python3 app.py", pythonVersion: "3.12.1"))
        profile.append(time: 10 * Fixture.ms, pid: 100, tid: 100, threadName: "MainThread", stack: runningStack)
        profile.append(time: 10 * Fixture.ms + second, pid: 100, tid: 100, threadName: "MainThread", stack: sleepingStack,
                       weight: second)
        profile.duration = 20 * Fixture.ms + second
        return profile
    }
}
