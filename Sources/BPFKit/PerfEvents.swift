import CBPF
import FoundationEssentials
import Glibc

/// A BPF program attached to one cpu-clock perf_event per online CPU. Detaches and closes on deinit.
public final class CPUClockAttachment {
    private var links: [OpaquePointer] = []
    private var fds: [Int32] = []

    /// - Parameters:
    ///   - frequency: samples per second of CPU time on each CPU.
    public init(program: OpaquePointer, frequency: Int) throws {
        let period = UInt64(1_000_000_000 / max(frequency, 1))
        do {
            for cpu in try Self.onlineCPUs() {
                let fd = cbpf_open_cpu_clock(-1, Int32(cpu), period)
                if fd < 0 { throw BPFError("opening the cpu-clock perf event on CPU \(cpu)", errno: -fd) }
                fds.append(fd)
                guard let link = bpf_program__attach_perf_event(program, fd),
                      libbpf_get_error(UnsafeRawPointer(link)) == 0
                else { throw BPFError("attaching the BPF program to CPU \(cpu)", errno: Glibc.errno) }
                links.append(link)
            }
        } catch {
            detach()
            throw error
        }
    }

    deinit { detach() }

    public func detach() {
        for link in links { bpf_link__destroy(link) }
        for fd in fds { close(fd) }
        links = []
        fds = []
    }

    /// Parses /sys/devices/system/cpu/online ("0-3,5,7-8").
    static func onlineCPUs() throws -> [Int] {
        let text = try String(contentsOfFile: "/sys/devices/system/cpu/online", encoding: .utf8)
        return parseCPUList(text)
    }

    static func parseCPUList(_ text: String) -> [Int] {
        // Split at whitespace too: the file ends with a newline.
        text.split { $0 == "," || $0.isWhitespace }.flatMap { part -> [Int] in
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            if bounds.count == 2, bounds[0] <= bounds[1] { return Array(bounds[0]...bounds[1]) }
            return bounds.count == 1 ? bounds : []
        }
    }
}
