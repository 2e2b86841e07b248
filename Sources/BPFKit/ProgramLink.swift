import CBPF
import Glibc

/// A program attached where its section says (a BTF tracepoint, for instance), detached on deinit.
public final class ProgramLink {
    private var link: OpaquePointer?

    public init(program: OpaquePointer, name: String) throws {
        guard let link = bpf_program__attach(program) else {
            throw BPFError("attaching BPF program \(name)", errno: errno)
        }
        self.link = link
    }

    /// A kprobe program attached to the entry of kernel function `function` (a name /proc/kallsyms lists).
    public init(program: OpaquePointer, name: String, kernelFunction function: String) throws {
        guard let link = bpf_program__attach_kprobe(program, false, function) else {
            throw BPFError("attaching BPF program \(name) to kernel function \(function)", errno: errno)
        }
        self.link = link
    }

    public func detach() {
        if let link { bpf_link__destroy(link) }
        link = nil
    }

    deinit { detach() }
}
