import BPFKit
import CBPF
import Glibc
import XCTest
@testable import Profiler

/// The kernel's types cut out of its BTF (KernelTypes), which libbpf relocates the program against instead of the
/// kernel's own BTF. Loads the real program: needs root and BPF, like every test that profiles.
final class KernelTypesTests: XCTestCase {
    /// Every program the recorder loads, the off-CPU hooks and, where the kernel has it (5.18), the dump's task iterator,
    /// comes out of libbpf with exactly the instructions it gets when relocated against the kernel's whole BTF: the cut
    /// types miss nothing the program reads (a missing struct or member changes an offset, or poisons the instruction)
    /// on this kernel. The kernel matrix runs it on every kernel.
    func testProgramsRelocatedAgainstTheCutTypesAreThoseOfTheKernelsBTF() throws {
        let features = try KernelFeatures.probe()
        let directory = try temporaryCacheDirectory()
        let types = try XCTUnwrap(KernelTypes.load(in: directory), "the kernel's types could not be cut out of its BTF")
        var configuration = pybpfprof_config()
        configuration.collect_native_stacks = 1
        configuration.collect_kernel_stacks = 1
        configuration.report_process_events = 1
        configuration.offcpu_period_ns = 10_000_000
        func load(_ kernelTypes: KernelTypes?, iterator: Bool) throws -> SamplerProgram {
            try SamplerProgram(features: features, extraPrograms: iterator ? [.dump_threads] : [], kernelTypes: kernelTypes,
                               configuration: configuration) { _ in }
        }
        // As the dump decides (Dumper.choose): the iterator where the kernel loads it.
        let iterator = (try? load(nil, iterator: true)) != nil
        let switchOut = try XCTUnwrap(try load(nil, iterator: false).switchOutProgram)
        let programs: [BPFProgramName] = [.on_sample] + SamplerProgram.processEventPrograms
            + SamplerProgram.stages(features.walk).map(\.program)
            + SamplerProgram.offCPUPrograms(features.walk, switchOut: switchOut) + (iterator ? [.dump_threads] : [])
        func load(_ kernelTypes: KernelTypes?) throws -> [BPFProgramName: [UInt64]] {
            let program = try load(kernelTypes, iterator: iterator)
            XCTAssertEqual(program.switchOutProgram, switchOut)
            return try Dictionary(programs.map { ($0, try program.object.relocatedInstructions(of: $0)) }) { first, _ in first }
        }
        let whole = try load(nil)
        let cut = try load(types)
        for program in programs {
            XCTAssertGreaterThan(whole[program]?.count ?? 0, 10, "\(program): no instructions")
            XCTAssertEqual(cut[program], whole[program], "\(program) relocated against the cut types differs from the kernel's BTF")
        }
    }

    /// Cut once per boot: the second start reads the cache, and gets the same bytes. The image is a small part of the
    /// kernel's BTF (the point of it) and holds the switch tracepoint's prototype, which picks the switch-out program.
    func testCutOncePerBootAndSmall() throws {
        let directory = try temporaryCacheDirectory()
        let first = try XCTUnwrap(KernelTypes.load(in: directory))
        XCTAssertFalse(first.cached)
        let second = try XCTUnwrap(KernelTypes.load(in: directory))
        XCTAssertTrue(second.cached)
        XCTAssertEqual(try contents(second.path), try contents(first.path))

        var status = stat()
        XCTAssertEqual(stat("/sys/kernel/btf/vmlinux", &status), 0)
        XCTAssertLessThan(first.size * 10, Int(status.st_size),
                          "\(first.size) bytes of types against \(status.st_size) of the kernel's BTF")
        XCTAssertEqual(cbpf_sched_switch_arguments(second.path), cbpf_sched_switch_arguments(nil))
        XCTAssertEqual(SamplerProgram.switchOutProgram(kernelTypes: second), SamplerProgram.switchOutProgram(kernelTypes: nil))
    }

    /// Another boot is another entry: the kernel (and its BTF) may have changed.
    func testKeyedByBootAndByTheRoots() {
        let salt: [UInt8] = [1, 2, 3]
        let key = KernelTypes.key(salt: salt, bootID: "a\n")
        XCTAssertEqual(key, KernelTypes.key(salt: salt, bootID: "a"))
        XCTAssertNotEqual(key, KernelTypes.key(salt: salt, bootID: "b"))
        XCTAssertNotEqual(key, KernelTypes.key(salt: salt, bootID: "a", roots: ["task_struct"]))
        XCTAssertNotEqual(key, KernelTypes.key(salt: [1, 2], bootID: "a"))
    }

    private func temporaryCacheDirectory() throws -> CacheDirectory {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kernel-types-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return try CacheDirectory(path: path, maxBytes: 64 << 20)
    }

    private func contents(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}
