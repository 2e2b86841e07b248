import Foundation
import Glibc

/// What the machine must offer before anything is loaded, each failure a one-line fix.
public enum PreflightError: Error, CustomStringConvertible {
    case notRoot
    case noBTF
    case kernelTooOld(String)

    public var description: String {
        switch self {
        case .notRoot:
            return "pybpfprof must run as root to load BPF programs and read other processes' memory: run it with sudo"
        case .noBTF:
            return "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): pybpfprof needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        case .kernelTooOld(let release):
            return "pybpfprof needs Linux 5.17 or newer (its BPF program loops with bpf_loop); this kernel is \(release): upgrade the kernel"
        }
    }
}

enum Preflight {
    static func check() throws {
        guard geteuid() == 0 else { throw PreflightError.notRoot }
        guard FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") else { throw PreflightError.noBTF }
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let version = kernelVersion(release), version < (5, 17) { throw PreflightError.kernelTooOld(release) }
    }

    /// (major, minor) of a kernel release such as `6.18.44-fc-v669`; nil if it does not start that way.
    static func kernelVersion(_ release: String) -> (Int, Int)? {
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return numbers.count == 2 ? (numbers[0], numbers[1]) : nil
    }
}
