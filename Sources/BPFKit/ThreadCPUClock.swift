import CBPF
import Glibc

/// A BPF program attached to the cpu-clock perf event of one thread: it runs after every `period` of that thread's
/// CPU time, on whichever CPU the thread is, and never while the thread waits. Detaches and closes on deinit.
public final class ThreadCPUClockAttachment {
    public let tid: Int32
    private var link: OpaquePointer?
    private var fd: Int32 = -1

    /// Throws a BPFError whose errno is ESRCH when the thread is gone.
    public init(program: OpaquePointer, tid: Int32, periodNanoseconds: UInt64) throws {
        self.tid = tid
        let fd = cbpf_open_cpu_clock(tid, -1, periodNanoseconds)
        if fd < 0 { throw BPFError("opening the cpu-clock perf event of thread \(tid)", errno: -fd) }
        self.fd = fd
        guard let link = bpf_program__attach_perf_event(program, fd), libbpf_get_error(UnsafeRawPointer(link)) == 0 else {
            let error = Glibc.errno
            detach()
            throw BPFError("attaching the BPF program to thread \(tid)", errno: error)
        }
        self.link = link
    }

    deinit { detach() }

    public func detach() {
        if let link { bpf_link__destroy(link) }
        if fd >= 0 { close(fd) }
        link = nil
        fd = -1
    }
}
