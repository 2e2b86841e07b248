import Glibc

/// What the machine must offer before anything is loaded, each failure a one-line fix.
public enum PreflightError: Error, CustomStringConvertible {
    case notRoot
    case noBTF(release: String)
    case kernelTooOld(release: String, missing: String)
    case bpfRefused(errno: Int32)
    /// --mode wall|offcpu hooks the scheduler's switch-in at finish_task_switch, which this kernel's build inlined.
    case noSwitchInHook(release: String)
    /// --mode wall|offcpu needs a kprobe, and this kernel was built without them.
    case noKprobes(release: String)

    public var description: String {
        switch self {
        case .notRoot:
            return "pybpfprof must run as root to load BPF programs and read other processes' memory: run it with sudo"
        case .noBTF(let release):
            return "kernel \(release) has no BTF (/sys/kernel/btf/vmlinux is missing): pybpfprof needs a kernel built with "
                + "CONFIG_DEBUG_INFO_BTF=y (every major distribution's kernel since 2021): install one"
        case .bpfRefused(let errno):
            return "the kernel refused to create a BPF map (\(String(cString: strerror(errno)))): pybpfprof needs root with "
                + "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), outside any seccomp filter that blocks bpf(2) (a container "
                + "runtime's default one does): run it on the host, or allow bpf and perf_event_open"
        case .noSwitchInHook(let release):
            return "kernel \(release) has no finish_task_switch in /proc/kallsyms (its build inlined it), where --mode wall "
                + "and --mode offcpu see a thread come back to a CPU: use --mode cpu on this kernel"
        case .noKprobes(let release):
            return "kernel \(release) was built without kprobes (CONFIG_KPROBES), which --mode wall and --mode offcpu use to "
                + "see a thread come back to a CPU: use --mode cpu on this kernel, or a kernel with kprobes (every distribution's)"
        case .kernelTooOld(let release, let missing):
            return "kernel \(release) lacks \(missing): pybpfprof needs Linux 5.10 or newer: upgrade the kernel"
        }
    }
}

public enum Preflight {
    /// Root, then what the kernel offers; returns the probed features, which decide how the BPF program is loaded.
    @discardableResult
    public static func check() throws -> KernelFeatures {
        guard geteuid() == 0 else { throw PreflightError.notRoot }
        let features = KernelFeatures.probe()
        if let missing = features.missing { throw missing }
        return features
    }
}
