import BPFKit
import CBPF
@testable import Profiler
import XCTest

/// How the BPF program is loaded follows from the probed features alone, and says so in one line.
final class KernelFeaturesTests: XCTestCase {
    private let newest = KernelFeatures(
        release: "6.18.44", hasBTF: true, hasRingBuffer: true, hasBPFLoop: true, hasTaskPtRegs: true, allowsNonPreallocatedHash: true)

    func testNewKernelGetsTheLoopWalk() {
        XCTAssertEqual(newest.walk, .loop)
        XCTAssertEqual(newest.summary, "kernel 6.18.44: bpf_loop walk, 256 native and 256 Python frames")
        XCTAssertEqual(SamplerProgram.stages(.loop).map(\.program), [.unwind_native_loop, .walk_python_loop])
        XCTAssertNil(newest.missing)
    }

    /// A kernel like Debian 11's 5.10: no bpf_loop, no bpf_task_pt_regs, perf_event programs need preallocated maps.
    func testOldKernelGetsTheTailCallWalkAndSaysItsLimits() {
        let oldest = newest.asOldestSupported
        XCTAssertEqual(oldest.walk, .tailCalls)
        XCTAssertEqual(
            oldest.summary,
            "kernel 6.18.44: tail-call walk, 16 native and 32 Python frames per call, 256 and 256 at most; "
                + "user registers from the kernel stack; native stacks for 512 processes at most")
        // The native stage's own slot for its next batches is filled before its entry (see PROG_NATIVE_CONTINUE).
        XCTAssertEqual(SamplerProgram.stages(.tailCalls).map(\.slot), [PROG_NATIVE_CONTINUE, PROG_NATIVE_UNWIND, PROG_PY_WALK])
        XCTAssertEqual(SamplerProgram.stages(.tailCalls).map(\.program),
                       [.unwind_native_bounded, .unwind_native_bounded, .walk_python_bounded])
    }

    /// The kernel allows 32 tail calls per sample on 5.10 (33 later): the tail-call walk's chain must fit.
    func testTailCallChainFitsTheKernelLimit() {
        let calls = 1 + (Int(NATIVE_MAX_CALLS) - 1) + 1 + (Int(PY_MAX_CALLS) - 1)
        XCTAssertLessThanOrEqual(calls, 32)
        XCTAssertEqual(Int(NATIVE_MAX_CALLS) * Int(NATIVE_FRAMES_PER_CALL), Int(NATIVE_MAX_FRAMES))
        XCTAssertEqual(Int(PY_MAX_CALLS) * Int(PY_FRAMES_PER_CALL), Int(PY_MAX_FRAMES))
    }

    func testMissingBTFOrRingBufferIsOneLineNamingTheKernel() {
        var noBTF = newest
        noBTF.hasBTF = false
        XCTAssertEqual(noBTF.missing.map { "\($0)" }?.contains("kernel 6.18.44 has no BTF"), true)
        var old = newest
        old.release = "5.4.0-150-generic"
        old.hasRingBuffer = false
        let message = old.missing.map { "\($0)" } ?? ""
        XCTAssertEqual(message, "kernel 5.4.0-150-generic lacks the BPF ring buffer (Linux 5.8): pybpfprof needs Linux 5.10 or newer: upgrade the kernel")
        XCTAssertFalse(message.contains("\n"))
    }

    /// A refused bpf(2) (no CAP_BPF, a container's seccomp filter) makes every probe say no: the error names the refusal
    /// and its fixes, not the kernel's age.
    func testRefusedBPFIsNotAnOldKernel() {
        var refused = newest
        refused.hasRingBuffer = false
        refused.hasBPFLoop = false
        refused.bpfRefusal = EPERM
        let message = refused.missing.map { "\($0)" } ?? ""
        XCTAssertEqual(message, "the kernel refused to create a BPF map (Operation not permitted): pybpfprof needs root with "
            + "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), outside any seccomp filter that blocks bpf(2) (a container "
            + "runtime's default one does): run it on the host, or allow bpf and perf_event_open")
        XCTAssertNil(KernelFeatures.probe().bpfRefusal, "root on this machine may create BPF maps")
    }

    func testVerifierRejectionIsOneLineNamingProgramAndLog() {
        let rejection = VerifierRejection(
            program: "unwind_native_bounded", reason: "BPF program is too large. Processed 1000001 insn", release: "5.10.0-46-amd64",
            logPath: "/tmp/pybpfprof-verifier-1.log")
        XCTAssertEqual(
            "\(rejection)",
            "kernel 5.10.0-46-amd64 rejected BPF program unwind_native_bounded (BPF program is too large. Processed 1000001 insn); "
                + "its log is in /tmp/pybpfprof-verifier-1.log: please report it with that file")
    }

    /// libbpf names the program it could not load in its log; the first such line wins.
    func testFailedProgramIsReadFromLibbpfsLog() {
        let log = """
            libbpf: prog 'unwind_native_bounded': BPF program load failed: Invalid argument
            libbpf: prog 'unwind_native_bounded': -- BEGIN PROG LOAD LOG --
            BPF_STX uses reserved fields
            -- END PROG LOAD LOG --
            libbpf: prog 'unwind_native_bounded': failed to load: -22
            libbpf: failed to load object 'pybpfprof'
            """
        XCTAssertEqual(BPFObject.failedProgram(in: log), "unwind_native_bounded")
        XCTAssertNil(BPFObject.failedProgram(in: "libbpf: map 'samples': failed to create: Operation not permitted"))
    }

    /// on_switch_in goes on finish_task_switch, or on the .isra clone GCC made of it, never on its .cold part; a
    /// kernel that inlined it has no place for the hook.
    func testSwitchInHookIsFinishTaskSwitchOrItsCloneNeverTheColdPart() {
        XCTAssertEqual(SamplerProgram.switchInFunction(kallsyms: """
            ffffffff810c1230 t finish_task_switch
            ffffffff810c1400 T schedule
            """), "finish_task_switch")
        XCTAssertEqual(SamplerProgram.switchInFunction(kallsyms: """
            ffffffff81f00010 t finish_task_switch.isra.0.cold
            ffffffff813aec30 t __pfx_finish_task_switch.isra.0
            ffffffff813aec40 t finish_task_switch.isra.0
            """), "finish_task_switch.isra.0")
        XCTAssertNil(SamplerProgram.switchInFunction(kallsyms: """
            ffffffff81f00010 t finish_task_switch.isra.0.cold
            ffffffff810c1400 T schedule
            0000000000000000 t finish_task_switch_helper\t[some_module]
            """))
    }

    func testOffCPUModesOnAKernelWithoutTheirHooksAreRefusedWithTheReason() {
        XCTAssertEqual("\(PreflightError.noKprobes(release: "6.18.44-fc"))",
                       "kernel 6.18.44-fc was built without kprobes (CONFIG_KPROBES), which --mode wall and --mode offcpu use "
                        + "to see a thread come back to a CPU: use --mode cpu on this kernel, or a kernel with kprobes "
                        + "(every distribution's)")
    }

    /// The switch-out hook is the variant whose arguments this kernel's sched_switch passes (a BTF tracepoint program
    /// that names one more or one less is rejected): prev_state, the fourth, since 5.18. From the kernel's BTF, checked
    /// here against the release the tests run on.
    func testSwitchOutHookMatchesTheKernelsSchedSwitchArguments() throws {
        let release = KernelFeatures.kernelRelease().split(separator: ".").prefix(2).compactMap { Int($0) }
        XCTAssertEqual(release.count, 2, "cannot read the kernel's version from \(KernelFeatures.kernelRelease())")
        let since518 = release.lexicographicallyPrecedes([5, 18]) == false
        XCTAssertEqual(cbpf_sched_switch_arguments(nil), since518 ? 4 : 3)
        XCTAssertEqual(SamplerProgram.switchOutProgram(kernelTypes: nil), since518 ? .on_switch_out_prev_state : .on_switch_out)
    }
}
