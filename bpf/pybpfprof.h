/* SPDX-License-Identifier: MIT */
/*
 * The one definition of everything the BPF program and userspace exchange: tunables, map keys and
 * values, the per-sample record and the named counters. Included by bpf/pybpfprof.bpf.c and, through
 * the CBPF target (Sources/CBPF/include/pybpfprof.h is a symlink to this file), by the Swift code.
 * Only fixed-width types, so both compilers lay the structs out identically.
 */
#ifndef PYBPFPROF_H
#define PYBPFPROF_H

#include <linux/types.h>

/*
 * How a sample is walked. on_sample reads the header, the kernel stack and the thread state, then tail-calls the
 * native unwinder (slot PROG_NATIVE_UNWIND; it starts from the thread's user registers), which tail-calls the Python
 * walk (PROG_PY_WALK), which sends the record. Each stage comes in two variants, and userspace puts one of each into `programs` at load
 * time, from what the kernel offers (KernelFeatures in Sources/Profiler/SamplerProgram.swift):
 *   - loop: one bpf_loop (Linux 5.17+) over every frame; the verifier checks one frame's code once.
 *   - bounded: a bounded loop of *_FRAMES_PER_CALL frames, and the program tail-calls itself for the next batch (the
 *     native stage through PROG_NATIVE_CONTINUE), at most *_MAX_CALLS times. The kernel allows 32 tail calls per
 *     sample (MAX_TAIL_CALL_CNT, 33 from 5.17):
 *     1 + (NATIVE_MAX_CALLS - 1) + 1 + (PY_MAX_CALLS - 1) = 24 of them.
 * Both variants stop at the same depth limits below; a deeper stack is cut and flagged (SAMPLE_TRUNCATED,
 * SAMPLE_NATIVE_TRUNCATED), never silently short. When attaching to running processes the native stage is loaded
 * after sampling has started (its verification is most of the start-up): until its slot is filled, on_sample goes
 * straight to the Python walk and flags the sample SAMPLE_NATIVE_NOT_LOADED.
 */

/* Python frames per sample. */
#define PY_MAX_FRAMES 256 /* a power of two, used as mask */
#define PY_FRAMES_PER_CALL 32
#define PY_MAX_CALLS (PY_MAX_FRAMES / PY_FRAMES_PER_CALL)

/* Kernel return addresses per sample (bpf_get_stack), read from the sampled context. */
#define KERNEL_MAX_FRAMES 64

/* Native (user) return addresses per sample, unwound with the unwind tables below. */
#define NATIVE_MAX_FRAMES 256 /* up to 3.10 each Python call costs ~5 native frames */
#define NATIVE_FRAMES_PER_CALL 16
#define NATIVE_MAX_CALLS (NATIVE_MAX_FRAMES / NATIVE_FRAMES_PER_CALL)
/* The address of a native frame whose caller was found by the frame-pointer fallback (code with no
 * unwind rule: JIT, anonymous executable memory) carries this bit; user addresses never do. */
#define NATIVE_FRAME_POINTER_BIT (1ULL << 63)

/* Executable mappings per process in `process_mappings`, and binary-search steps over them. */
#define EXEC_MAPPINGS_MAX 1024
#define EXEC_MAPPING_SEARCH_STEPS 10 /* log2(EXEC_MAPPINGS_MAX) */
/* Binary-search steps over one file's unwind rows: a file has fewer than 2^22 rows. */
#define UNWIND_ROW_SEARCH_STEPS 22
#define UNWIND_ROWS_PER_FILE_MAX (1U << UNWIND_ROW_SEARCH_STEPS)

/* Threads searched in the interpreter's thread list when the (tgid, fsbase) cache misses. */
#define PY_MAX_THREADS_SCAN 64

/* Bytes of one frame struct read in a single probe read; every field the walk needs lies below this. */
#define PY_FRAME_READ_MAX 128

#define TASK_COMM_LEN 16
#define PY_OFFSET_NONE 0xffff

/* Slots of the `programs` prog array used for tail calls: the stages after on_sample, filled by userspace. The
 * off-CPU path (on_switch_in, a kprobe) has its own array, `switch_in_programs`, with the same slots: a prog array
 * holds programs of one type, so each stage is built twice, once per program type. */
enum prog_slot {
    PROG_NATIVE_UNWIND = 0, /* unwind_native_loop or unwind_native_bounded */
    PROG_PY_WALK = 1,       /* walk_python_loop or walk_python_bounded */
    /* unwind_native_bounded again, for its own next batches. A slot of its own because the deferred stage is put
     * into its slots while samples are taken, and the kernel patches each program's direct jump for a slot one
     * program after another: had the stage called itself through PROG_NATIVE_UNWIND, a sample could enter it through
     * on_sample's patched jump while its own was not yet, and its second batch would fail. Filled first, it is ready
     * before anything can enter the stage. */
    PROG_NATIVE_CONTINUE = 2,
    PROG_SLOT_COUNT,
};

/* How a frame records its current instruction. */
enum py_instr_kind {
    PY_INSTR_LASTI = 0,   /* int f_lasti in the frame object (3.8-3.10); sent as is */
    PY_INSTR_POINTER = 1, /* pointer into the code object (3.11+); sent as (ptr - code) bytes */
};

/* Struct offsets of one CPython minor version, as the BPF walk needs them. Generated per version from
 * that version's headers (Sources/CPython/GeneratedOffsets.swift) or read from _Py_DebugOffsets. */
struct py_offsets {
    __u16 interp_threads_head;  /* PyInterpreterState.tstate_head / .threads.head */
    __u16 tstate_next;          /* PyThreadState.next */
    __u16 tstate_thread_id;     /* PyThreadState.thread_id (== pthread_self() == fsbase) */
    __u16 tstate_frame;         /* PyThreadState.frame / .cframe / .current_frame */
    __u16 cframe_current_frame; /* _PyCFrame.current_frame (3.11, 3.12), else PY_OFFSET_NONE */
    __u16 frame_previous;       /* f_back / previous */
    __u16 frame_code;           /* f_code / f_executable */
    __u16 frame_instr;          /* f_lasti / prev_instr / instr_ptr */
    __u16 frame_owner;          /* _PyInterpreterFrame.owner (3.12+), else PY_OFFSET_NONE */
    __u16 frame_read_size;      /* bytes of the frame struct to read: covers every field above */
    __u16 code_checksum;        /* 8 bytes of the code object hashed into py_frame.checksum */
    __u16 frame_is_entry;       /* _PyInterpreterFrame.is_entry (3.11), else PY_OFFSET_NONE */
    __u8 instr_kind;            /* enum py_instr_kind */
    __u8 owner_boundary;        /* frames owned by this value or above run no Python code (3.12+): sent as boundaries */
    __u8 code_tag_bits;         /* low bits of frame_code that tag the pointer (3.14+: a _PyStackRef), else 0 */
    __u8 _pad;
};

/* --mode gil: how to tell whether a thread state's thread holds the GIL (GILProbe in Sources/CPython/GIL.swift). */
enum gil_probe_kind {
    GIL_PROBE_NONE = 0,              /* not Python */
    GIL_PROBE_HOLDER_SLOT = 1,       /* 2.7-3.11: *(PyThreadState **)holder_slot == tstate */
    GIL_PROBE_INTERPRETER_GIL = 2,   /* 3.12: gil = tstate->interp->ceval.gil; gil->locked == 1 && gil->last_holder == tstate */
    GIL_PROBE_THREAD_STATE_FLAG = 3, /* 3.13+: *(__u32 *)(tstate + flag_offset) & flag_mask */
};

/* --mode wall|offcpu: where a thread waiting for the GIL sleeps, a futex on a word of the GIL's condition variables and
 * mutexes (GILWaitRange in Sources/CPython/GIL.swift): [wait_start, wait_start + wait_size). */
enum gil_wait_kind {
    GIL_WAIT_NONE = 0,            /* not known: a 2.7 or 3.6 without its local symbols */
    GIL_WAIT_ADDRESS = 1,         /* 3.6 (ceval.c's statics), 3.7-3.11 (in _PyRuntime): wait_start is an address */
    GIL_WAIT_INTERPRETER_GIL = 2, /* 3.12+: wait_start is an offset in the GIL, *(*interpreters_head + interp_ceval_gil) */
    GIL_WAIT_POINTER = 3,         /* 2.7: wait_start is the address of interpreter_lock, which points at the sem_t */
};

struct gil_probe {
    __u64 holder_slot;
    __u64 wait_start;
    __u32 flag_mask;
    __u16 flag_offset;
    __u16 tstate_interp;
    __u16 interp_ceval_gil; /* 3.12+: also for the wait range */
    __u16 gil_locked;
    __u16 gil_last_holder;
    __u16 wait_size;
    __u8 kind;      /* enum gil_probe_kind */
    __u8 wait_kind; /* enum gil_wait_kind */
    __u8 _pad[6];
};

/* Map `processes`: key host tgid. One per profiled process. */
struct py_process {
    __u64 interpreters_head; /* address of _PyRuntime.interpreters.head; 0: not Python, native stacks only */
    struct py_offsets offsets;
    struct gil_probe gil;
};

/* How the caller's frame is found at one instruction (x86_64), compiled by userspace from the file's
 * .eh_frame / .debug_frame (Sources/Native/UnwindTable.swift). */
enum unwind_cfa_kind {
    UNWIND_NO_RULE = 0,     /* no FDE covers the address: frame-pointer fallback */
    UNWIND_CFA_RSP,         /* CFA = rsp + cfa_offset */
    UNWIND_CFA_RBP,         /* CFA = rbp + cfa_offset */
    UNWIND_CFA_PLT,         /* lazy PLT entry: CFA = rsp + 8, + 8 more if (rip & 15) >= cfa_offset */
    UNWIND_END_OF_STACK,    /* return address undefined: the thread's outermost frame */
    UNWIND_UNSUPPORTED,     /* a rule the unwinder cannot apply: it stops, counted */
};

/* One row of the global array `unwind_rows`: its rule holds from `address` up to the next row's address.
 * A file's rows are contiguous and sorted; addresses are relative to the file's table base. */
struct unwind_row {
    __u32 address;
    __s16 cfa_offset;   /* or the PLT threshold */
    __u8 cfa_kind;      /* enum unwind_cfa_kind */
    __s8 rbp_offset;    /* the caller's rbp is saved at CFA + 8 * rbp_offset; 0: rbp unchanged */
};

/* One executable mapping of a process, and where its file's rows are in `unwind_rows`. */
struct exec_mapping {
    __u64 start;
    __u64 end;        /* exclusive */
    __u64 table_base; /* runtime address of row address 0: load bias + the table's first link-time address */
    __u32 first_row;
    __u32 row_count;  /* 0: no table (no call frame information, or no room): frame-pointer fallback */
};

/* Map `process_mappings`: host tgid -> its executable mappings, sorted by start, not overlapping. */
struct process_mappings {
    __u32 count;
    __u32 _pad;
    struct exec_mapping mappings[EXEC_MAPPINGS_MAX];
};

/* Map `thread_states` (LRU): (tgid, fsbase) -> PyThreadState*. Filled by the BPF walk of the thread
 * list on a miss; an entry is trusted only while tstate->thread_id still equals fsbase. */
struct thread_key {
    __u32 tgid;
    __u32 _pad;
    __u64 fsbase;
};

/* One Python frame as sampled: userspace resolves name, file and line from (code, instr), and the
 * checksum guards its per-code-object cache against the address being reused by another code object.
 * From 3.11 the walk also sends a boundary (code 0, instr PY_FRAME_BOUNDARY) after the outermost frame
 * of each _PyEval_EvalFrameDefault call: the frame marked is_entry (3.11), or where a C-stack shim frame
 * sits (3.12+). Userspace splices each run of frames in place of that call's native frame. */
#define PY_FRAME_BOUNDARY 0xffffffffU
struct py_frame {
    __u64 code;      /* PyCodeObject*; 0 for a frame whose code could not be read */
    __u32 instr;     /* f_lasti, or byte offset of the instruction pointer from the code object */
    __u32 checksum;  /* hash of 8 bytes of the code object at py_offsets.code_checksum */
};

enum sample_flags {
    SAMPLE_TRUNCATED = 1 << 0,     /* more than PY_MAX_FRAMES frames: outermost ones are missing */
    SAMPLE_NO_PYTHON = 1 << 1,     /* thread has no Python thread state or no current frame */
    SAMPLE_READ_ERROR = 1 << 2,    /* the walk stopped on a failed read of target memory */
    SAMPLE_TAIL_CALL_FAILED = 1 << 3,
    SAMPLE_NATIVE_COMPLETE = 1 << 4,      /* the native unwind reached the thread's outermost frame */
    SAMPLE_NATIVE_TRUNCATED = 1 << 5,     /* more than NATIVE_MAX_FRAMES native frames */
    SAMPLE_NATIVE_UNKNOWN_MAPPING = 1 << 6, /* an address in no known executable mapping: maps changed */
    SAMPLE_NATIVE_NOT_LOADED = 1 << 7,    /* the process's mappings and tables, or the native stage, not loaded yet */
};

/* What an off-CPU interval's thread was doing (RECORD_OFFCPU), as the scheduler saw it at switch-out. */
enum offcpu_state {
    OFFCPU_NONE = 0,            /* an on-CPU sample */
    OFFCPU_SLEEPING = 1,        /* TASK_INTERRUPTIBLE: a futex, poll, sleep, read of a pipe or socket */
    OFFCPU_UNINTERRUPTIBLE = 2, /* TASK_UNINTERRUPTIBLE: disk I/O, page faults, kernel locks */
    OFFCPU_RUNNABLE = 3,        /* preempted, or yielded: waiting for a CPU */
    OFFCPU_GIL = 4,             /* in a futex on the GIL (see struct gil_probe's wait range): waiting for the GIL */
};

struct sample_header {
    __u64 time_ns;     /* CLOCK_MONOTONIC (bpf_ktime_get_ns); an off-CPU interval's end */
    __u64 tstate;      /* PyThreadState* of the sampled thread, 0 if none */
    __u64 weight_ns;   /* nanoseconds it stands for: an off-CPU interval's (see on_switch_in), and with off-CPU intervals
                        * on, an on-CPU sample's (see on_sample); 0: one sampling period */
    __u32 pid;         /* host tgid */
    __u32 tid;         /* host thread id */
    __u32 cpu;
    __u16 py_frame_count;     /* leaf first */
    __u16 flags;              /* enum sample_flags */
    __u16 kernel_frame_count; /* leaf first; 0 when the sample hit user mode */
    __u16 native_frame_count; /* leaf first: the interrupted (or syscall-returning) pc, then return addresses */
    __u16 record_type;        /* enum record_type: a sample, or a process event (header only) */
    __u16 offcpu_state;       /* enum offcpu_state */
    char comm[TASK_COMM_LEN]; /* thread name */
};

/* What a ring buffer record is. Process events share the ring buffer with samples, so that userspace sees
 * them in the order they happened relative to the samples (an exit before a reused pid's first sample). An
 * event is a bare sample_header: pid is the process (tgid), tid the child for a fork. */
enum record_type {
    RECORD_SAMPLE = 0,
    RECORD_EXEC = 1,   /* pid ran execve: a new program, maybe a new Python */
    RECORD_FORK = 2,   /* pid forked a new process, tid (its pid) */
    RECORD_EXIT = 3,   /* pid's last thread exited */
    RECORD_OFFCPU = 4, /* an interval thread tid spent off a CPU, with the stacks it blocked in: a sample's body */
};

/* Map `offcpu_starts`: host tid -> when a profiled thread left its CPU and why (`--mode wall|offcpu`). Written at
 * switch-out, deleted at the thread's next switch-in. */
struct offcpu_start {
    __u64 time_ns;
    __u16 state; /* enum offcpu_state */
    __u16 _pad[3];
};

/* Bytes of a record's body: kernel_frame_count return addresses (__u64), native_frame_count addresses
 * (__u64), then py_frame_count struct py_frame. Only the used part is sent. A power of two, so offsets
 * into it can be masked. */
#define SAMPLE_BODY_SIZE 8192
_Static_assert((KERNEL_MAX_FRAMES + NATIVE_MAX_FRAMES) * 8 + PY_MAX_FRAMES * 16 + 16 <= SAMPLE_BODY_SIZE,
               "sample body too small");

/* The ring buffer record: the header, kernel frames, native frames, then Python frames. */
struct sample {
    struct sample_header header;
    __u8 body[SAMPLE_BODY_SIZE + 16];
};

/* The native unwinder's registers between frames. */
struct native_cursor {
    __u64 pc;
    __u64 sp;
    __u64 bp;
    __u64 frame_pointer_bit; /* NATIVE_FRAME_POINTER_BIT if pc was found by the frame-pointer fallback */
    __u32 mapping_hint;      /* index of the last mapping found: consecutive frames often share one */
    /* A binary search's bounds between its steps. Kept in memory, where the verifier does not track values: in
     * registers it tracks each step's exact bounds and checks every combination of steps as a path of its own. */
    __u32 search_low;
    __u32 search_size;
    __u32 _pad;
};

/* Per-CPU state of a sample while tail calls walk it. */
struct walk_state {
    __u64 frame;          /* next Python frame to read; 0 when the walk is done */
    __u8 native_calls;    /* runs of the bounded native unwinder so far */
    __u8 python_calls;    /* runs of the bounded Python walk so far */
    __u8 _pad[6];
    struct native_cursor native;
    struct py_offsets offsets;
    __u8 frame_buf[PY_FRAME_READ_MAX + 8] __attribute__((aligned(8))); /* aligned: the walk loads 8-byte fields */
    struct sample sample;
};

/* Tunables: the BPF program's one `const volatile` global, `config` (in .rodata), which userspace fills in before load
 * (SamplerProgram in Sources/Profiler): a field renamed here fails to compile there. The verifier sees the values as
 * constants, so a branch on a field that is 0 is dead code to it. */
struct pybpfprof_config {
    /* Unread ring buffer bytes past which a record wakes the reader. Below it records are written without a wakeup
     * and the reader finds them on its next timed poll: a wakeup is an irq_work, which costs ~5 us per record in a VM
     * (a self-IPI), more than the whole rest of the sample. */
    __u64 wakeup_bytes;
    /* 0 for a Python-only recording: skips the kernel unwinder's cost. */
    __u8 collect_kernel_stacks;
    /* 0 for a Python-only recording: skips the native unwinder. */
    __u8 collect_native_stacks;
    /* 1 when userspace follows new processes (--all, --subprocesses): every exec and fork is reported; else only the
     * exits of profiled processes. */
    __u8 report_process_events;
    /* 1 for --cgroup / --container: only tasks in the cgroup v2 directory held in `target_cgroup`, or below it, are
     * sampled and reported. */
    __u8 restrict_to_cgroup;
    /* 1 where the kernel has bpf_get_current_task_btf and bpf_task_pt_regs (5.15+): the user registers of a thread
     * sampled in kernel mode come from them. 0 (5.10): from the top of the task's kernel stack, where x86_64 keeps
     * them (task_pt_regs: task->stack + THREAD_SIZE - sizeof(struct pt_regs)). With 0 the verifier never sees the
     * newer helpers. */
    __u8 have_task_pt_regs;
    /* --mode gil: only the samples of a thread that holds the GIL at that moment are sent (see holds_gil). */
    __u8 gil_only;
    __u8 _pad[2];
    /* --mode wall|offcpu: the sampling period, in nanoseconds, off-CPU intervals are weighed against. An interval at
     * least this long is always sent, weighing its length; a shorter one is sent with probability length / period,
     * weighing one period (threshold sampling: its expected weight is its length, and a thread sends at most one
     * record per period of off-CPU time however often it switches). 0: off-CPU intervals are not recorded. */
    __u64 offcpu_period_ns;
};

/* Named counters (per-CPU array `counters`), summed and reported by userspace. Samples of profiled
 * processes are COUNTER_SENT + COUNTER_RINGBUF_FULL: every sample ends in exactly one of the two.
 * X(enumerator, label in the recording's summary, 1 if it counts an error): the enum and the labels userspace
 * prints (cbpf_counter_label in Sources/CBPF/shims.c) come from this one list, so a counter cannot go unnamed. */
#define PYBPFPROF_COUNTERS(X) \
    X(COUNTER_SENT, "sent", 0) \
    X(COUNTER_RINGBUF_FULL, "ring buffer full", 1) \
    /* Threads that never ran Python (a BLAS pool, a C library's workers): their native stacks are sampled. */ \
    X(COUNTER_NO_THREAD_STATE, "samples of threads without a Python thread state", 0) \
    /* (tgid, fsbase) cache miss: the thread list was walked. */ \
    X(COUNTER_TSTATE_CACHE_MISS, "thread state cache misses", 0) \
    /* A cached thread state no longer matched its thread. */ \
    X(COUNTER_TSTATE_STALE, "stale thread state cache entries", 0) \
    /* Interpreter not initialized yet, or finalized: no thread list. */ \
    X(COUNTER_NO_INTERPRETER, "interpreter not running (starting or finalizing)", 0) \
    /* Sampled in exit(), after its memory was released. */ \
    X(COUNTER_PROCESS_EXITING, "samples of exiting processes", 0) \
    X(COUNTER_READ_INTERP, "interpreter state unreadable", 1) \
    X(COUNTER_READ_FRAME, "frame unreadable", 1) \
    /* A code object's checksum bytes could not be read. */ \
    X(COUNTER_READ_CODE, "code object unreadable", 1) \
    /* Python stacks deeper than PY_MAX_FRAMES. */ \
    X(COUNTER_TRUNCATED, "stacks truncated", 1) \
    X(COUNTER_TAIL_CALL_FAILED, "tail calls failed", 1) \
    /* Native unwinds that reached the thread's outermost frame. */ \
    X(COUNTER_NATIVE_COMPLETE, "native unwinds complete", 0) \
    /* Samples of a process whose executable mappings are not loaded yet. */ \
    X(COUNTER_NATIVE_NO_MAPPINGS, "native unwinds before the tables were loaded", 0) \
    /* Samples taken before the native stage was loaded (it is loaded after sampling starts). */ \
    X(COUNTER_NATIVE_STAGE_NOT_LOADED, "samples before the native unwinder was loaded", 0) \
    X(COUNTER_NATIVE_UNKNOWN_MAPPING, "native unwinds stopped: address in no known mapping", 1) \
    X(COUNTER_NATIVE_FRAME_POINTER, "native frames by frame pointer", 0) \
    X(COUNTER_NATIVE_UNSUPPORTED, "native unwinds stopped: unsupported rule", 1) \
    X(COUNTER_NATIVE_READ_ERROR, "native unwinds stopped: stack unreadable", 1) \
    X(COUNTER_NATIVE_BAD_FRAME, "native unwinds stopped: frame not above its callee", 1) \
    /* Native stacks deeper than NATIVE_MAX_FRAMES. */ \
    X(COUNTER_NATIVE_TRUNCATED, "native stacks truncated", 1) \
    /* A kernel thread or an exiting task. */ \
    X(COUNTER_NATIVE_NO_REGISTERS, "native unwinds without user registers", 1) \
    /* Process events lost: ring buffer full. */ \
    X(COUNTER_EVENTS_LOST, "process events lost", 1) \
    /* --cgroup / --container: the task's cgroup could not be checked. */ \
    X(COUNTER_CGROUP_CHECK_FAILED, "cgroup checks failed", 1) \
    /* --mode wall|offcpu: intervals shorter than the period that threshold sampling left out (their time is in the \
     * weight of those it kept). */ \
    X(COUNTER_OFFCPU_SAMPLED_OUT, "short off-CPU intervals sampled out", 0) \
    /* --mode gil: samples of threads that did not hold the GIL, left out. */ \
    X(COUNTER_GIL_NOT_HELD, "samples of threads not holding the GIL (left out)", 0) \
    /* A switch-in with no start: the thread was asleep when the recording began, or its start was not stored. */ \
    X(COUNTER_OFFCPU_NO_START, "off-CPU intervals begun before the recording", 0) \
    /* offcpu_starts was full: that interval is lost. */ \
    X(COUNTER_OFFCPU_START_LOST, "off-CPU intervals lost: too many threads asleep", 1) \
    /* Nanoseconds of the off-CPU intervals the ring buffer had no room for (their records are counted in "ring buffer \
     * full"; the summary prints this as seconds). */ \
    X(COUNTER_OFFCPU_LOST_NS, "nanoseconds of off-CPU time lost: ring buffer full", 0)

#define PYBPFPROF_COUNTER_ENUMERATOR(name, label, is_error) name,
enum counter {
    PYBPFPROF_COUNTERS(PYBPFPROF_COUNTER_ENUMERATOR)
    COUNTER_COUNT,
};
#undef PYBPFPROF_COUNTER_ENUMERATOR

/* dump */

/* `pybpfprof dump`: the task iterator `dump_threads` (end of bpf/pybpfprof.bpf.c) visits every thread of the
 * processes in `processes` and writes, for each, a struct dump_thread and then `record_size` bytes of a struct
 * sample (header, kernel, native and Python frames, exactly as the sampler sends them through the ring buffer)
 * into the iterator's seq_file, which userspace reads to the end. */
enum dump_thread_flags {
    /* The thread was on a CPU: the user registers saved at its last kernel entry (where its native unwind
     * starts) and its kernel stack are stale while it runs, so neither is read; its Python frames are.
     * Userspace samples such a thread with on_sample instead (Dumper.sampleRunning). */
    DUMP_THREAD_ON_CPU = 1 << 0,
    /* The thread ran between the start and the end of its walk (its context-switch count moved): its stacks may
     * mix two moments. Userspace reads such a thread again. */
    DUMP_THREAD_SWITCHED = 1 << 1,
};

struct dump_thread {
    __u32 record_size; /* bytes of the struct sample that follows: header and the used part of the body */
    __u32 flags;       /* enum dump_thread_flags */
    __u32 state;       /* task->__state (include/linux/sched.h): 0 runnable, 1 sleeping, 2 uninterruptible, ... */
    __u32 _pad;
};

#endif /* PYBPFPROF_H */
