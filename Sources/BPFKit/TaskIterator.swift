import CBPF
import Glibc

/// Runs a BPF task iterator program (`SEC("iter/task")` or `SEC("iter.s/task")`) once and returns what it wrote
/// with `bpf_seq_write`: the iterator is attached (a link), an iterator instance created from the link, and read
/// to its end; each `read()` runs the program over the next tasks, so the bytes come back as the tasks are visited.
public enum TaskIterator {
    /// - Parameters:
    ///   - program: a loaded task iterator program.
    ///   - process: visit only this process's threads (kernel 6.1+; on older kernels every task on the system is
    ///     visited, and the program must filter).
    public static func run(program: OpaquePointer, process: Int32) throws -> [UInt8] {
        let link = try attach(program, process: process)
        defer { bpf_link__destroy(link) }
        let iterator = bpf_iter_create(bpf_link__fd(link))
        guard iterator >= 0 else { throw BPFError("creating a BPF task iterator", errno: errno) }
        defer { close(iterator) }

        var output: [UInt8] = []
        // Several records per read: the kernel fills at most its seq_file buffer (8 pages) per call anyway.
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(iterator, $0.baseAddress, $0.count) }
            if count == 0 { return output }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw BPFError("reading a BPF task iterator", errno: errno)
            }
            output.append(contentsOf: buffer[0..<count])
        }
    }

    private static func attach(_ program: OpaquePointer, process: Int32) throws -> OpaquePointer {
        var info = bpf_iter_link_info()
        info.task.pid = UInt32(bitPattern: process)
        var options = bpf_iter_attach_opts()
        options.sz = MemoryLayout<bpf_iter_attach_opts>.size
        options.link_info_len = UInt32(MemoryLayout<bpf_iter_link_info>.size)
        let link = withUnsafeMutablePointer(to: &info) { info -> OpaquePointer? in
            options.link_info = info
            return bpf_program__attach_iter(program, &options)
        }
        if let link, libbpf_get_error(UnsafeRawPointer(link)) == 0 { return link }
        let error = errno
        // Before 6.1 a task iterator takes no process: it visits every task, and the program keeps the ones it wants.
        if error == EINVAL || error == E2BIG, let link = bpf_program__attach_iter(program, nil),
           libbpf_get_error(UnsafeRawPointer(link)) == 0 {
            return link
        }
        throw BPFError("attaching the BPF task iterator", errno: error)
    }
}
