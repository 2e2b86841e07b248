import BPFKit
import CBPF
import Native
import FoundationEssentials
import Glibc

/// What the running kernel offers the BPF program, probed by loading minimal programs and maps, never inferred from
/// the version number: RHEL and SLES backport BPF features into older-numbered kernels.
public struct KernelFeatures: Sendable, Equatable {
    /// `uname -r`.
    public var release: String
    /// /sys/kernel/btf/vmlinux: the CO-RE relocations need it (through its cut, KernelTypes), the verifier for
    /// bpf_get_current_task_btf, and libbpf to attach the dump's task iterator.
    public var hasBTF: Bool
    /// BPF_MAP_TYPE_RINGBUF (Linux 5.8): every record goes through one.
    public var hasRingBuffer: Bool
    /// bpf_loop (5.17): the walks run in one loop per stage; without it, in batches chained by tail calls.
    public var hasBPFLoop: Bool
    /// bpf_task_pt_regs and bpf_get_current_task_btf (5.15): the user registers of a thread sampled in the kernel;
    /// without them, read from the top of its kernel stack.
    public var hasTaskPtRegs: Bool
    /// A perf_event program may use a hash map that is not preallocated (6.1); without it `process_mappings` is
    /// preallocated, for at most `preallocatedMappingProcesses` processes.
    public var allowsNonPreallocatedHash: Bool
    /// The errno bpf(2) refused a plain map with (EPERM: no CAP_BPF, or a seccomp filter), nil when permitted: then
    /// every probe above says "no" for a reason that is not the kernel's age.
    public var bpfRefusal: Int32?

    /// Processes whose native unwind mappings fit where `process_mappings` must be preallocated: 32 KiB of kernel
    /// memory each, 16 MiB in all. Others get Python and kernel stacks only (counted in the summary).
    public static let preallocatedMappingProcesses: UInt32 = 512

    public init(release: String, hasBTF: Bool, hasRingBuffer: Bool, hasBPFLoop: Bool, hasTaskPtRegs: Bool,
                allowsNonPreallocatedHash: Bool, bpfRefusal: Int32? = nil) {
        self.release = release
        self.hasBTF = hasBTF
        self.hasRingBuffer = hasRingBuffer
        self.hasBPFLoop = hasBPFLoop
        self.hasTaskPtRegs = hasTaskPtRegs
        self.allowsNonPreallocatedHash = allowsNonPreallocatedHash
        self.bpfRefusal = bpfRefusal
    }

    /// Probes the running kernel (needs root: the probes load BPF programs).
    public static func probe() -> KernelFeatures {
        func yes(_ result: Int32) -> Bool { result == 1 }
        let refusal = cbpf_probe_bpf_refusal()
        return KernelFeatures(
            release: kernelRelease(), hasBTF: FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux"),
            hasRingBuffer: yes(cbpf_probe_ring_buffer()),
            hasBPFLoop: yes(cbpf_probe_perf_event_helper(Int32(BPF_FUNC_loop.rawValue))),
            hasTaskPtRegs: yes(cbpf_probe_perf_event_helper(Int32(BPF_FUNC_task_pt_regs.rawValue)))
                && yes(cbpf_probe_perf_event_helper(Int32(BPF_FUNC_get_current_task_btf.rawValue))),
            allowsNonPreallocatedHash: yes(cbpf_probe_perf_event_non_preallocated_hash()),
            bpfRefusal: refusal == 0 ? nil : refusal)
    }

    public static func kernelRelease() -> String {
        var names = utsname()
        uname(&names)
        return withUnsafeBytes(of: names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// How the sampler walks stacks on this kernel (see "How a sample is walked" in bpf/pybpfprof.h).
    public enum Walk: String, Sendable {
        /// One bpf_loop per stage.
        case loop
        /// Bounded loops of a few frames per program, chained by tail calls.
        case tailCalls
    }

    public var walk: Walk { hasBPFLoop ? .loop : .tailCalls }

    /// One line for the summary, `--version` and errors: which path this kernel got, and the limits that come with it.
    public var summary: String {
        var parts: [String] = []
        switch walk {
        case .loop:
            parts.append("bpf_loop walk, \(NATIVE_MAX_FRAMES) native and \(PY_MAX_FRAMES) Python frames")
        case .tailCalls:
            parts.append("tail-call walk, \(NATIVE_FRAMES_PER_CALL) native and \(PY_FRAMES_PER_CALL) Python frames per call, "
                + "\(NATIVE_MAX_FRAMES) and \(PY_MAX_FRAMES) at most")
        }
        if !hasTaskPtRegs { parts.append("user registers from the kernel stack") }
        if !allowsNonPreallocatedHash {
            parts.append("native stacks for \(Self.preallocatedMappingProcesses) processes at most")
        }
        return "kernel \(release): " + parts.joined(separator: "; ")
    }

    /// These features less everything Linux 5.10 lacks: the program is loaded as it is there (`--oldest-kernel-mode`).
    public var asOldestSupported: KernelFeatures {
        var oldest = self
        oldest.hasBPFLoop = false
        oldest.hasTaskPtRegs = false
        oldest.allowsNonPreallocatedHash = false
        return oldest
    }

    /// What must hold before anything is loaded; nil if nothing is missing.
    public var missing: PreflightError? {
        if !hasBTF { return .noBTF(release: release) }
        if let bpfRefusal { return .bpfRefused(errno: bpfRefusal) }
        if !hasRingBuffer { return .kernelTooOld(release: release, missing: "the BPF ring buffer (Linux 5.8)") }
        return nil
    }
}

/// The verifier rejected a program: the one line says which and why, the whole log is in a file.
public struct VerifierRejection: Error, CustomStringConvertible {
    public var program: String
    public var reason: String
    public var release: String
    /// The verifier's log, or nil if it could not be written.
    public var logPath: String?

    public var description: String {
        let log = logPath.map { "its log is in \($0)" } ?? "its log could not be written"
        return "kernel \(release) rejected BPF program \(program) (\(reason)); \(log): please report it with that file"
    }
}

/// The sampler's BPF object, loaded for the running kernel: each stage's variant that this kernel can run
/// (`KernelFeatures.walk`) is loaded and put into the `programs` tail-call table, the other variants are not loaded.
/// The recording and the dump both load it through here.
final class SamplerProgram {
    let object: BPFObject
    let features: KernelFeatures
    /// Instructions the verifier processed, per loaded program (its cost; the limit is 1,000,000 per program).
    private(set) var verifiedInstructions: [String: Int] = [:]
    /// The native stage when it is loaded after sampling has started (`deferNativeStage`), and the object it is loaded
    /// through once it is.
    private let deferredNativeStage: BPFProgramName?
    private var nativeStageObject: BPFObject?
    private let explainRejections: Bool
    /// Kept open for the native stage's load (see KernelTypes).
    private let kernelTypes: KernelTypes?
    /// The switch-out hook loaded (`--mode wall|offcpu`), the variant that fits the kernel; nil without off-CPU hooks.
    let switchOutProgram: BPFProgramName?

    /// The program of each slot, per walk, in the order the slots are filled: a slot before the slots that lead into it
    /// (see PROG_NATIVE_CONTINUE).
    static func stages(_ walk: KernelFeatures.Walk) -> [(slot: prog_slot, program: BPFProgramName)] {
        switch walk {
        case .loop: return [(PROG_NATIVE_UNWIND, .unwind_native_loop), (PROG_PY_WALK, .walk_python_loop)]
        case .tailCalls:
            return [(PROG_NATIVE_CONTINUE, .unwind_native_bounded), (PROG_NATIVE_UNWIND, .unwind_native_bounded),
                    (PROG_PY_WALK, .walk_python_bounded)]
        }
    }

    /// The same stages as kprobe programs, for on_switch_in (`switch_in_programs`).
    static func switchInStages(_ walk: KernelFeatures.Walk) -> [(slot: prog_slot, program: BPFProgramName)] {
        switch walk {
        case .loop: return [(PROG_NATIVE_UNWIND, .unwind_native_loop_switch_in), (PROG_PY_WALK, .walk_python_loop_switch_in)]
        case .tailCalls:
            return [(PROG_NATIVE_CONTINUE, .unwind_native_bounded_switch_in), (PROG_NATIVE_UNWIND, .unwind_native_bounded_switch_in),
                    (PROG_PY_WALK, .walk_python_bounded_switch_in)]
        }
    }

    /// The off-CPU hooks (`--mode wall|offcpu`) and the stages on_switch_in tail-calls.
    static func offCPUPrograms(_ walk: KernelFeatures.Walk, switchOut: BPFProgramName) -> [BPFProgramName] {
        [switchOut, .on_switch_in] + switchInStages(walk).map(\.program)
    }

    /// The variant of the switch-out hook whose arguments are the running kernel's sched_switch tracepoint's: since 5.18
    /// it passes the state __schedule acted on (prev_state), before that the program reads the task's state itself.
    /// Read from the kernel's types (`kernelTypes`, which hold the tracepoint's prototype) or else the kernel's BTF.
    static func switchOutProgram(kernelTypes: KernelTypes?) -> BPFProgramName {
        cbpf_sched_switch_arguments(kernelTypes?.path) >= 4 ? .on_switch_out_prev_state : .on_switch_out
    }

    static let processEventPrograms: [BPFProgramName] = [.on_exec, .on_fork, .on_exit]

    /// The kernel function on_switch_in is attached to: `finish_task_switch`, or the `finish_task_switch.isra.N` clone
    /// GCC makes of it (never a `.cold` part, which runs only on a rare path), as /proc/kallsyms (`kallsyms`) lists
    /// them; nil if neither is there (inlined into its caller: no place to hook the switch-in).
    static func switchInFunction(kallsyms: String) -> String? {
        var exact = false
        var clone: String?
        var kallsyms = kallsyms
        let prefix = Array("finish_task_switch".utf8)
        kallsyms.withUTF8 { bytes in
            KernelSymbols.scanLines(bytes) { _, type, name, _ in
                guard !exact, type == UInt8(ascii: "t") || type == UInt8(ascii: "T"), name.count >= prefix.count,
                      bytes[name.lowerBound..<name.lowerBound + prefix.count].elementsEqual(prefix) else { return }
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[name]), as: UTF8.self)
                if text == "finish_task_switch" {
                    exact = true
                } else if clone == nil, text.hasPrefix("finish_task_switch.isra."), !text.contains(".cold") {
                    clone = text
                }
            }
        }
        return exact ? "finish_task_switch" : clone
    }

    /// - Parameters:
    ///   - processEvents: load the exec/fork/exit programs.
    ///   - extraPrograms: programs loaded only when asked for (`?` sections), such as the dump iterator.
    ///   - explainRejections: a verifier rejection becomes a `VerifierRejection` (one line, the log in a file); else
    ///     the `BPFLoadError` is thrown as it is (for a caller that expects it and has another way).
    ///   - configuration: the caller's tunables; `have_task_pt_regs` is set here, from `features`.
    ///   - configure: the caller's map sizes, applied before load.
    ///   - deferNativeStage: the native-unwind stage is left out, for `loadNativeStage()` once sampling has started.
    ///     Its verification is most of the load (43 of the 95 ms here, docs/PERFORMANCE.md), and the first samples of
    ///     a process need not wait for it: its native frames wait for its unwind tables anyway. Until it is loaded,
    ///     samples carry their Python and kernel frames and are marked as those of a process without tables.
    ///   - kernelTypes: the kernel's types to relocate against, instead of libbpf reading the kernel's BTF (KernelTypes).
    init(features: KernelFeatures, processEvents: Bool = true, extraPrograms: [BPFProgramName] = [], explainRejections: Bool = true,
         deferNativeStage: Bool = false, kernelTypes: KernelTypes? = nil, configuration: pybpfprof_config,
         configure: (BPFObject) throws -> Void) throws {
        let offCPU = configuration.offcpu_period_ns != 0
        switchOutProgram = offCPU ? Self.switchOutProgram(kernelTypes: kernelTypes) : nil
        let extraPrograms = extraPrograms + (switchOutProgram.map { Self.offCPUPrograms(features.walk, switchOut: $0) } ?? [])
        let nativeStage = Self.stages(features.walk).first { $0.slot == PROG_NATIVE_UNWIND }!.program
        deferredNativeStage = deferNativeStage ? nativeStage : nil
        self.explainRejections = explainRejections
        self.features = features
        self.kernelTypes = kernelTypes
        var configuration = configuration
        configuration.have_task_pt_regs = features.hasTaskPtRegs ? 1 : 0
        func open() throws -> BPFObject {
            try Self.open(features: features, processEvents: processEvents, extraPrograms: extraPrograms,
                          leftOut: deferNativeStage ? [nativeStage] : [], kernelTypes: kernelTypes,
                          configuration: configuration, configure: configure)
        }
        object = try open()
        try Self.load(object, explainRejections: explainRejections, features: features, reopen: open)
        verifiedInstructions = object.verifiedInstructions()
        let table = BPFMap(fd: try object.mapFD(.programs))
        for (slot, program) in Self.stages(features.walk) where program != deferredNativeStage {
            let fd = bpf_program__fd(try object.program(program))
            try table.update(UInt32(slot.rawValue), UInt32(bitPattern: fd))
        }
        if offCPU {
            let switchInTable = BPFMap(fd: try object.mapFD(.switch_in_programs))
            for (slot, program) in Self.switchInStages(features.walk) {
                let fd = bpf_program__fd(try object.program(program))
                try switchInTable.update(UInt32(slot.rawValue), UInt32(bitPattern: fd))
            }
        }
    }

    /// After `init(deferNativeStage: true)`: loads the native stage through an object of its own that shares this one's
    /// maps, and puts it into the tail-call table. Throws a `VerifierRejection` as `init` does. Once only.
    func loadNativeStage() throws {
        guard let program = deferredNativeStage, nativeStageObject == nil else { return }
        func open() throws -> BPFObject {
            let stage = try BPFObject(elf: EmbeddedBPF.object, name: "pybpfprof", kernelTypes: kernelTypes?.path)
            for name in BPFProgramName.allCases { try stage.setAutoload(name, name == program) }
            try stage.shareMaps(of: object)
            return stage
        }
        let stage = try open()
        try Self.load(stage, explainRejections: explainRejections, features: features, reopen: open)
        let fd = bpf_program__fd(try stage.program(program))
        let table = BPFMap(fd: try object.mapFD(.programs))
        for (slot, stageProgram) in Self.stages(features.walk) where stageProgram == program {
            try table.update(UInt32(slot.rawValue), UInt32(bitPattern: fd))
        }
        verifiedInstructions.merge(stage.verifiedInstructions()) { $1 }
        nativeStageObject = stage
    }

    /// Loads `object`, the verifier's statistics collected; a rejection becomes a `VerifierRejection` (with
    /// `explainRejections`), its whole log taken by loading `reopen`'s object once more.
    private static func load(_ object: BPFObject, explainRejections: Bool, features: KernelFeatures,
                             reopen: () throws -> BPFObject) throws {
        try object.collectVerifierStatistics()
        do {
            try object.load()
        } catch let error as BPFLoadError {
            guard explainRejections, let program = error.program else { throw error }
            throw rejection(program: program, statisticsLog: object.verifierLog(program: program), features: features, reload: reopen)
        }
    }

    private static func open(features: KernelFeatures, processEvents: Bool, extraPrograms: [BPFProgramName],
                             leftOut: [BPFProgramName], kernelTypes: KernelTypes?, configuration: pybpfprof_config,
                             configure: (BPFObject) throws -> Void) throws -> BPFObject {
        let object = try BPFObject(elf: EmbeddedBPF.object, name: "pybpfprof", kernelTypes: kernelTypes?.path)
        let wanted = Set([.on_sample] + stages(features.walk).map(\.program) + (processEvents ? processEventPrograms : [])
            + extraPrograms).subtracting(leftOut)
        for program in BPFProgramName.allCases { try object.setAutoload(program, wanted.contains(program)) }
        try object.setConfiguration(configuration)
        // Preallocated: 16384 entries of kernel memory that only the off-CPU hooks use.
        if configuration.offcpu_period_ns == 0 { try object.setMaxEntries(map: .offcpu_starts, 1) }
        if !features.allowsNonPreallocatedHash {
            try object.preallocate(.process_mappings)
            try object.setMaxEntries(map: .process_mappings, KernelFeatures.preallocatedMappingProcesses)
        }
        try configure(object)
        return object
    }

    /// The reason from the program's statistics log (error lines come before "processed N insns"), and the whole
    /// verifier log, taken by loading once more with libbpf's own log (level 1, which traces the failing path),
    /// written to a file.
    private static func rejection(program: String, statisticsLog: String, features: KernelFeatures,
                                  reload: () throws -> BPFObject) -> VerifierRejection {
        let lines = statisticsLog.split(separator: "\n").map(String.init)
        let statistics = lines.firstIndex { $0.hasPrefix("verification time") || $0.hasPrefix("processed ") } ?? lines.count
        let reason = lines[..<statistics].last { $0.contains { !$0.isWhitespace } }
            ?? "no reason given"
        var fullLog = "pybpfprof: kernel \(features.release), \(features.summary)\nBPF program \(program), verifier statistics log:\n"
            + statisticsLog + "\n"
        cbpf_clear_libbpf_log()
        if let object = try? reload() {
            do {
                try object.load()
            } catch let error as BPFLoadError {
                fullLog += "\nlibbpf's log of a second load:\n" + error.libbpfLog
            } catch {
                fullLog += "\na second load failed: \(error)\n"
            }
        }
        let path = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/pybpfprof-verifier-\(getpid()).log"
        let written = (try? Data(fullLog.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)) != nil
        return VerifierRejection(program: program, reason: reason, release: features.release, logPath: written ? path : nil)
    }
}
