import Foundation
import Glibc

/// What the machine must offer before anything is loaded, each failure a one-line fix.
public enum PreflightError: Error, CustomStringConvertible {
    case notRoot
    case noBTF

    public var description: String {
        switch self {
        case .notRoot:
            return "pybpfprof must run as root to load BPF programs and read other processes' memory: run it with sudo"
        case .noBTF:
            return "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): pybpfprof needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        }
    }
}

enum Preflight {
    static func check() throws {
        guard geteuid() == 0 else { throw PreflightError.notRoot }
        guard FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") else { throw PreflightError.noBTF }
    }
}
