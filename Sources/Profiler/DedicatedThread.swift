import CSystem
import Dispatch
import Glibc
import Native

/// A thread of its own (a pthread) that runs one closure, for work that blocks for the whole recording (the drain
/// loop, the recording loop) and so must not take a Dispatch worker: what Foundation's Thread gave, without
/// Foundation. Released before `join()`, the thread is detached and runs on.
final class DedicatedThread {
    private let thread: pthread_t
    private var joined = false

    /// What the new thread runs, passed through pthread_create's context pointer.
    private final class Start {
        let name: String
        let body: () -> Void

        init(name: String, body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts the thread. `name` becomes its comm (ps -L, top -H, /proc/PID/task/TID/comm): 15 bytes of it.
    init(name: String, body: @escaping () -> Void) throws {
        let start = Unmanaged.passRetained(Start(name: name, body: body))
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { context in
            let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
            _ = csystem_set_thread_name(start.name)
            start.body()
            return nil
        }, start.toOpaque())
        guard result == 0 else {
            start.release()
            throw ThreadStartError(name: name, errorNumber: result)
        }
        self.thread = thread
    }

    /// Waits until the closure has returned.
    func join() {
        guard !joined else { return }
        pthread_join(thread, nil)
        joined = true
    }

    deinit {
        if !joined { pthread_detach(thread) }
    }
}

struct ThreadStartError: Error, CustomStringConvertible {
    let name: String
    let errorNumber: Int32

    var description: String { "cannot start thread \(name): \(String(cString: strerror(errorNumber)))" }
}

/// A value computed on another thread while the caller does something else: start-up reads /proc/kallsyms (about
/// 50 ms of the kernel's time) while the BPF object loads, since sampling needs both.
final class BackgroundResult<Value> {
    private let done = DispatchSemaphore(value: 0)
    private let lock = Lock()
    private var result: Result<Value, Error>?

    /// `then` runs on the same thread once the result is there (to wake whoever polls `finished`). A thread of its
    /// own, not a Dispatch worker: Dispatch ran two of these one after the other while the caller blocked in the BPF
    /// load, and the second was what sampling waited for. Computed at once, here, if no thread can be started.
    init(_ compute: @escaping () throws -> Value, then: @escaping () -> Void = {}) {
        let run = { [self] in
            let outcome = Result { try compute() }
            lock.withLock { result = outcome }
            done.signal()
            then()
        }
        do {
            _ = try DedicatedThread(name: "pybpfprof-start", body: run)
        } catch {
            run()
        }
    }

    /// A value there already.
    static func ready(_ value: Value) -> BackgroundResult { BackgroundResult(ready: value) }

    private init(ready value: Value) {
        result = .success(value)
        done.signal()
    }

    /// The result if it is there, without waiting.
    var finished: Result<Value, Error>? { lock.withLock { result } }

    /// Waits for the value; rethrows what computing it threw.
    func value() throws -> Value {
        done.wait()
        done.signal()
        return try finished!.get()
    }
}
