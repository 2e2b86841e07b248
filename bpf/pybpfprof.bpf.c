// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * pybpfprof's sampler: runs on every cpu-clock perf_event tick of every CPU. For a thread of a profiled
 * Python process it finds the thread's PyThreadState, walks the Python frame chain and sends one record
 * through the ring buffer. It only reads the target's memory, never writes it, never blocks.
 *
 * All CPython layout knowledge comes from userspace (struct py_offsets in the `processes` map); this file
 * knows only the shape of the walk.
 */
#include <stdbool.h>
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "pybpfprof.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Tunables (struct pybpfprof_config in pybpfprof.h), set by userspace before load; these defaults are never used. */
const volatile struct pybpfprof_config config = {
    .wakeup_bytes = 1 << 20,
    .collect_kernel_stacks = 1,
    .collect_native_stacks = 1,
    .have_task_pt_regs = 1,
};

/* THREAD_SIZE of x86_64 kernels without KASAN (with it, 32 KiB: the registers read there fail the user-mode check and
 * are counted), for config.have_task_pt_regs = 0. */
#define KERNEL_THREAD_SIZE 16384

/* The kernel types we read, with CO-RE relocations against the running kernel's BTF: only the field we
 * need, so the program builds without a vmlinux.h. */
struct thread_struct___pybpfprof {
    unsigned long fsbase;
} __attribute__((preserve_access_index));

struct signal_struct___pybpfprof {
    struct {
        int counter;
    } live; /* atomic_t: threads of the group not yet in do_exit */
} __attribute__((preserve_access_index));

struct task_struct___pybpfprof {
    unsigned int flags;
    unsigned int __state; /* `state` before 5.14: see switch_out_state */
    int pid;
    int tgid;
    void *stack;
    struct signal_struct___pybpfprof *signal;
    struct thread_struct___pybpfprof thread;
} __attribute__((preserve_access_index));

/* The task's scheduler state before Linux 5.14 renamed it __state (and made it an unsigned int). */
struct task_struct___pre_5_14 {
    long state;
} __attribute__((preserve_access_index));

/* Only for bpf_get_current_task_btf's prototype; never dereferenced here. */
struct task_struct;

#define PF_EXITING 0x00000004 /* include/linux/sched.h */

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __type(key, __u32);
    __type(value, struct py_process);
} processes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct thread_key);
    __type(value, __u64);
} thread_states SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct walk_state);
} walk_states SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, COUNTER_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

/* Executable mappings of each profiled process, written by userspace when it (re)reads the maps. Not
 * preallocated: the value is 32 KiB and most processes never get one. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, struct process_mappings);
} process_mappings SEC(".maps");

/* Unwind rows of every loaded file, back to back. Size set by userspace before load (the memory bound
 * of the unwind tables); memory-mapped so userspace writes a file's rows with one copy. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1 << 21);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct unwind_row);
} unwind_rows SEC(".maps");

/* The cgroup of --cgroup / --container (entry 0: a cgroup v2 directory's fd, set by userspace after load). */
struct {
    __uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} target_cgroup SEC(".maps");

/* Size set by userspace before load (bpf_map__set_max_entries). */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 << 20);
} samples SEC(".maps");

/* --mode wall|offcpu: see struct offcpu_start. Preallocated, and not an LRU: a full map is counted
 * (COUNTER_OFFCPU_START_LOST) rather than silently evicting another thread's start. Every entry is deleted at its
 * thread's next switch-in, and an exiting thread stores none, so entries are the threads asleep right now. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct offcpu_start);
} offcpu_starts SEC(".maps");

/* --mode wall: when this CPU's cpu-clock ticked last and the time before (see tick_weight). */
struct tick_times {
    __u64 previous;
    __u64 last;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct tick_times);
} tick_times SEC(".maps");

/* bpf_loop passes its callbacks a pointer to the stack: this is what it points at. */
struct loop_context {
    struct walk_state *state;
    const struct process_mappings *mappings; /* native unwinding: a pointer kept in a map value loses its type */
};

static __always_inline void count_by(enum counter counter, __u64 amount)
{
    __u32 key = counter;
    __u64 *value = bpf_map_lookup_elem(&counters, &key);
    if (value)
        *value += amount; /* per-CPU: no other CPU writes this slot (plain, for 5.10: no BPF_ATOMIC fetch ops) */
}

static __always_inline void count(enum counter counter)
{
    count_by(counter, 1);
}

/*
 * Whose memory the walk reads. The helpers below take a `task`: NULL on the sampling path, where the program
 * runs in the sampled thread and reads the current task with bpf_probe_read_user; the thread being dumped in
 * the dump iterator (end of this file), which is not the current task, so it must use bpf_copy_from_user_task
 * (sleepable programs only). Every such helper is always inlined, so with a constant NULL the sampling path
 * compiles to exactly the code it had before the task parameter existed.
 */
static __always_inline long read_user(void *dst, __u32 size, const void *address, struct task_struct *task)
{
    return task ? bpf_copy_from_user_task(dst, size, address, task, 0) : bpf_probe_read_user(dst, size, address);
}

/* A failed read of the target's memory: an error, unless the process is in exit() and has already given up
 * its memory. `task`: see read_user. */
static __always_inline void count_read_error_of(enum counter counter, struct task_struct *task)
{
    struct task_struct___pybpfprof *target = task ? (void *)task : (void *)bpf_get_current_task();
    count(BPF_CORE_READ(target, flags) & PF_EXITING ? COUNTER_PROCESS_EXITING : counter);
}

/* Reads a pointer-sized value from the target; 0 on failure (NULL is never a valid answer here). Both helpers zero the
 * buffer when the read fails, so nothing branches on their result: such a branch gives the verifier two states per
 * read, and 5.10 to 6.1 (weaker pruning than 6.18's) then followed the 64-round thread scan path by path, past their
 * limit of a million instructions, as soon as a little code was added after it (on_sample went from 5,360 to over a
 * million). Without it on_sample takes 2,215 to 2,331 on 5.10 and 6.1, whatever the configuration. */
static __always_inline __u64 read_u64_of(__u64 address, struct task_struct *task)
{
    __u64 value = 0;
    read_user(&value, sizeof(value), (const void *)address, task);
    return value;
}

static __always_inline __u64 read_u64(__u64 address)
{
    return read_u64_of(address, NULL);
}

/* Field loads from the frame buffer at offsets that come from userspace, masked so the verifier sees
 * them inside frame_buf. Pointer fields are 8-aligned and ints 4-aligned in every CPython frame struct,
 * so aligned loads suffice (and keep the verifier's work per frame small). */
static __always_inline __u64 frame_u64(const struct walk_state *state, __u16 offset)
{
    return *(const __u64 *)&state->frame_buf[offset & (PY_FRAME_READ_MAX - 8)];
}

static __always_inline __u32 frame_u32(const struct walk_state *state, __u16 offset)
{
    return *(const __u32 *)&state->frame_buf[offset & (PY_FRAME_READ_MAX - 4)];
}

/* Where Python frame `index` goes in the record body: after the kernel and native frames. */
static __always_inline struct py_frame *py_frame_slot(struct walk_state *state, __u32 index)
{
    __u32 offset = (state->sample.header.kernel_frame_count + state->sample.header.native_frame_count) * 8 +
                   index * sizeof(struct py_frame);
    return (struct py_frame *)&state->sample.body[offset & (SAMPLE_BODY_SIZE - 1)];
}

/* Bytes of the record: the header and the used part of the body (see SAMPLE_BODY_SIZE). */
static __always_inline __u32 record_size(const struct sample_header *header)
{
    __u32 frames = header->py_frame_count;
    if (frames > PY_MAX_FRAMES)
        frames = PY_MAX_FRAMES;
    __u32 kernel_frames = header->kernel_frame_count;
    if (kernel_frames > KERNEL_MAX_FRAMES)
        kernel_frames = KERNEL_MAX_FRAMES;
    __u32 native_frames = header->native_frame_count;
    if (native_frames > NATIVE_MAX_FRAMES)
        native_frames = NATIVE_MAX_FRAMES;
    return sizeof(struct sample_header) + (kernel_frames + native_frames) * 8 + frames * sizeof(struct py_frame);
}

/* --mode wall weighs an on-CPU tick by the time since its CPU's tick before, whoever that caught: a tick the hrtimer
 * fired late (a busy hypervisor that ran another guest meanwhile) stands for all that time, as the off-CPU intervals
 * that share its unit are measured whole. At most 16 periods; a CPU's first tick weighs one. */
static __always_inline __u64 tick_weight(void)
{
    __u32 zero = 0;
    __u64 period = config.offcpu_period_ns;
    struct tick_times *ticks = bpf_map_lookup_elem(&tick_times, &zero);
    if (!ticks || !ticks->previous || ticks->last <= ticks->previous || ticks->last - ticks->previous >= 16 * period)
        return period;
    return ticks->last - ticks->previous;
}

static __always_inline void emit(struct walk_state *state)
{
    if (config.offcpu_period_ns && state->sample.header.record_type == RECORD_SAMPLE)
        state->sample.header.weight_ns = tick_weight();
    __u64 size = record_size(&state->sample.header);
    __u64 flags = bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA) >= config.wakeup_bytes ? BPF_RB_FORCE_WAKEUP
                                                                                : BPF_RB_NO_WAKEUP;
    if (bpf_ringbuf_output(&samples, &state->sample, size, flags) == 0) {
        count(COUNTER_SENT);
        return;
    }
    count(COUNTER_RINGBUF_FULL);
    if (state->sample.header.record_type == RECORD_OFFCPU)
        count_by(COUNTER_OFFCPU_LOST_NS, state->sample.header.weight_ns);
}

/*
 * Native unwinding. The user stack is unwound with each file's call frame information, compiled by
 * userspace into rows (struct unwind_row), so code built without frame pointers (nearly all of it)
 * unwinds; code with no rule falls back to the frame pointer and its caller is marked. Per frame: a
 * binary search for the mapping (skipped when the previous frame's mapping holds the address), a binary
 * search of that file's rows, and one or two 8-byte reads of the stack.
 */

/* Where native frame `index` goes in the record body: after the kernel frames. */
static __always_inline __u64 *native_frame_slot(struct walk_state *state, __u32 index)
{
    __u32 offset = state->sample.header.kernel_frame_count * 8 + index * 8;
    return (__u64 *)&state->sample.body[offset & (SAMPLE_BODY_SIZE - 1)];
}

/*
 * The binary searches below keep their bounds in the cursor (search_low, search_size): memory, where the verifier
 * does not track values, so a step's two outcomes leave the same state and it checks each step once. In registers
 * it followed both outcomes of every step with exact bounds, 2^steps paths per search and per frame: that is what
 * exceeded its limit on 6.1 and in bounded loops.
 */

/* The search bounds, read and written through volatile so that they stay in memory. */
#define SEARCH_LOW(cursor) (*(volatile __u32 *)&(cursor)->search_low)
#define SEARCH_SIZE(cursor) (*(volatile __u32 *)&(cursor)->search_size)

/* The mapping holding `pc`, or NULL. Mappings are sorted by start and do not overlap. */
static __always_inline const struct exec_mapping *find_mapping(const struct process_mappings *table,
                                                              struct native_cursor *cursor, __u64 pc)
{
    __u32 count = table->count;
    if (count > EXEC_MAPPINGS_MAX)
        count = EXEC_MAPPINGS_MAX;
    const struct exec_mapping *hint = &table->mappings[cursor->mapping_hint & (EXEC_MAPPINGS_MAX - 1)];
    if (cursor->mapping_hint < count && hint->start <= pc && pc < hint->end)
        return hint;

    /* The last mapping whose start is <= pc: [low, low + size) holds it. */
    SEARCH_LOW(cursor) = 0;
    SEARCH_SIZE(cursor) = count;
    for (int step = 0; step < EXEC_MAPPING_SEARCH_STEPS + 1 && SEARCH_SIZE(cursor) > 1; step++) {
        __u32 low = SEARCH_LOW(cursor), size = SEARCH_SIZE(cursor), half = size / 2;
        __u64 start = table->mappings[(low + half) & (EXEC_MAPPINGS_MAX - 1)].start;
        if (start <= pc)
            SEARCH_LOW(cursor) = low + half;
        SEARCH_SIZE(cursor) = size - half;
    }
    __u32 low = SEARCH_LOW(cursor);
    const struct exec_mapping *mapping = &table->mappings[low & (EXEC_MAPPINGS_MAX - 1)];
    if (count == 0 || low >= count || pc < mapping->start || pc >= mapping->end)
        return NULL;
    cursor->mapping_hint = low;
    return mapping;
}

/* The row whose rule holds at `pc` in `mapping`'s file: the last row with address <= pc - table_base. */
static __always_inline const struct unwind_row *find_row(const struct exec_mapping *mapping, struct native_cursor *cursor,
                                                         __u64 pc)
{
    if (pc < mapping->table_base || pc - mapping->table_base > 0xffffffffULL)
        return NULL;
    __u32 address = pc - mapping->table_base;
    __u32 rows = mapping->row_count;
    if (rows == 0 || rows > UNWIND_ROWS_PER_FILE_MAX)
        return NULL;
    SEARCH_LOW(cursor) = mapping->first_row;
    SEARCH_SIZE(cursor) = rows;
    for (int step = 0; step < UNWIND_ROW_SEARCH_STEPS + 1 && SEARCH_SIZE(cursor) > 1; step++) {
        __u32 low = SEARCH_LOW(cursor), size = SEARCH_SIZE(cursor), half = size / 2, middle = low + half;
        const struct unwind_row *row = bpf_map_lookup_elem(&unwind_rows, &middle);
        if (!row)
            return NULL;
        if (row->address <= address)
            SEARCH_LOW(cursor) = middle;
        SEARCH_SIZE(cursor) = size - half;
    }
    __u32 low = SEARCH_LOW(cursor);
    const struct unwind_row *row = bpf_map_lookup_elem(&unwind_rows, &low);
    if (!row || row->address > address)
        return NULL;
    return row;
}

/* One frame: records cursor->pc, then moves the cursor to the caller; 1 stops. `task`: see read_user. */
static __always_inline long unwind_native_step(__u32 index, struct loop_context *context, struct task_struct *task)
{
    struct walk_state *state = context->state;
    struct native_cursor *cursor = &state->native;
    struct sample_header *header = &state->sample.header;
    __u32 frames = header->native_frame_count;
    if (frames >= NATIVE_MAX_FRAMES) {
        header->flags |= SAMPLE_NATIVE_TRUNCATED;
        count(COUNTER_NATIVE_TRUNCATED);
        return 1;
    }
    *native_frame_slot(state, frames) = cursor->pc | cursor->frame_pointer_bit;
    header->native_frame_count = frames + 1;

    /* A return address is the instruction after the call, which may already belong to the next
     * function (a noreturn call at the end of a function): look up the call itself. */
    __u64 lookup_pc = frames == 0 ? cursor->pc : cursor->pc - 1;
    const struct exec_mapping *mapping = find_mapping(context->mappings, cursor, lookup_pc);
    if (!mapping) {
        header->flags |= SAMPLE_NATIVE_UNKNOWN_MAPPING;
        count(COUNTER_NATIVE_UNKNOWN_MAPPING);
        return 1;
    }
    const struct unwind_row *row = find_row(mapping, cursor, lookup_pc);
    __u8 kind = row ? row->cfa_kind : UNWIND_NO_RULE;
    __u64 cfa, bp = cursor->bp;
    switch (kind) {
    case UNWIND_CFA_RSP:
        cfa = cursor->sp + row->cfa_offset;
        break;
    case UNWIND_CFA_RBP:
        cfa = cursor->bp + row->cfa_offset;
        break;
    case UNWIND_CFA_PLT:
        cfa = cursor->sp + 8 + ((cursor->pc & 15) >= (__u64)row->cfa_offset ? 8 : 0);
        break;
    case UNWIND_END_OF_STACK:
        header->flags |= SAMPLE_NATIVE_COMPLETE;
        count(COUNTER_NATIVE_COMPLETE);
        return 1;
    case UNWIND_NO_RULE:
        /* The frame-pointer convention: [rbp] = caller's rbp, [rbp + 8] = return address. rbp equals rsp in a
         * frame with no locals; below rsp it is not a frame pointer. */
        if (cursor->bp < cursor->sp) {
            count(COUNTER_NATIVE_BAD_FRAME);
            return 1;
        }
        cfa = cursor->bp + 16;
        bp = read_u64_of(cursor->bp, task);
        cursor->frame_pointer_bit = NATIVE_FRAME_POINTER_BIT;
        count(COUNTER_NATIVE_FRAME_POINTER);
        goto read_return_address;
    default:
        count(COUNTER_NATIVE_UNSUPPORTED);
        return 1;
    }
    cursor->frame_pointer_bit = 0;
    if (row->rbp_offset != 0 && read_user(&bp, sizeof(bp), (const void *)(cfa + row->rbp_offset * 8), task) != 0) {
        count_read_error_of(COUNTER_NATIVE_READ_ERROR, task);
        return 1;
    }

read_return_address:;
    __u64 return_address = 0;
    if (read_user(&return_address, sizeof(return_address), (const void *)(cfa - 8), task) != 0) {
        count_read_error_of(COUNTER_NATIVE_READ_ERROR, task);
        return 1;
    }
    /* Callers live higher up the stack; anything else is a corrupt frame or a wrong rule. */
    if (cfa <= cursor->sp) {
        count(COUNTER_NATIVE_BAD_FRAME);
        return 1;
    }
    if (return_address == 0) {
        /* Some thread entries end the chain with a zero return address instead of a CFI marker. */
        header->flags |= SAMPLE_NATIVE_COMPLETE;
        count(COUNTER_NATIVE_COMPLETE);
        return 1;
    }
    cursor->pc = return_address;
    cursor->sp = cfa;
    cursor->bp = bp;
    return 0;
}

/* bpf_loop callback of the sampling path. */
static long unwind_native_frame(__u32 index, struct loop_context *context)
{
    return unwind_native_step(index, context, NULL);
}

/* A register of the sampled context. The verifier only allows context loads at a constant offset from the
 * context pointer itself; written as plain C, clang computes &ctx->regs once and loads from that. */
#define CONTEXT_REGISTER(ctx, field) \
    context_load_u64(ctx, offsetof(struct bpf_perf_event_data, regs) + offsetof(struct pt_regs, field))

static __always_inline __u64 context_load_u64(void *ctx, const int offset)
{
    __u64 value;
    asm volatile("%0 = *(u64 *)(%1 + %2)" : "=r"(value) : "r"(ctx), "i"(offset));
    return value;
}

/* Where the current task's user registers were saved when it entered the kernel (see config.have_task_pt_regs). */
static __always_inline const void *current_saved_registers(void)
{
    if (config.have_task_pt_regs)
        return (const void *)bpf_task_pt_regs(bpf_get_current_task_btf());
    struct task_struct___pybpfprof *task = (void *)bpf_get_current_task();
    __u64 stack = (__u64)BPF_CORE_READ(task, stack);
    return stack ? (const void *)(stack + KERNEL_THREAD_SIZE - sizeof(struct pt_regs)) : NULL;
}

/* The thread's user registers: the sampled context's if the tick hit user mode, else those saved at
 * kernel entry (system call, fault, interrupt). `ctx` is a perf_event program's (struct bpf_perf_event_data, whose
 * first member is the interrupted pt_regs) or a kprobe's (the probed kernel function's pt_regs, never user mode):
 * the register loads are at the same offsets in both. */
static __always_inline bool user_registers(void *ctx, struct native_cursor *cursor)
{
    struct pt_regs regs;
    if ((CONTEXT_REGISTER(ctx, cs) & 3) == 3) {
        cursor->pc = CONTEXT_REGISTER(ctx, rip);
        cursor->sp = CONTEXT_REGISTER(ctx, rsp);
        cursor->bp = CONTEXT_REGISTER(ctx, rbp);
        return true;
    }
    const void *saved = current_saved_registers();
    if (!saved || bpf_probe_read_kernel(&regs, sizeof(regs), saved) != 0 || (regs.cs & 3) != 3)
        return false;
    cursor->pc = regs.rip;
    cursor->sp = regs.rsp;
    cursor->bp = regs.rbp;
    return true;
}

/* The process's executable mappings for the native stage; NULL: no native stack to walk. On the stage's first run
 * (`first`) the missing table is flagged and counted, and the cursor starts from the thread's user registers. The
 * stage does this rather than on_sample, so a sample looks the mappings up once per program, not once more. */
static __always_inline const struct process_mappings *native_stage_mappings(void *ctx,
                                                                           struct walk_state *state, bool first)
{
    __u32 tgid = state->sample.header.pid;
    const struct process_mappings *mappings = bpf_map_lookup_elem(&process_mappings, &tgid);
    if (!first)
        return mappings;
    if (!mappings) {
        state->sample.header.flags |= SAMPLE_NATIVE_NOT_LOADED;
        count(COUNTER_NATIVE_NO_MAPPINGS);
        return NULL;
    }
    struct native_cursor *cursor = &state->native;
    if (!user_registers(ctx, cursor)) {
        count(COUNTER_NATIVE_NO_REGISTERS);
        return NULL;
    }
    cursor->frame_pointer_bit = 0;
    cursor->mapping_hint = 0;
    return mappings;
}

/*
 * (tgid, fsbase) -> PyThreadState*. On x86_64 glibc and musl, pthread_self() is the thread's fsbase and
 * CPython stores pthread_self() in tstate->thread_id on every version, so the pair identifies the thread's
 * state without any TLS or pthread-key knowledge. A cache hit is re-validated by reading thread_id (the
 * state may have been freed and reused); a miss walks the interpreter's thread list, bounded, so even the
 * first sample of a new thread gets its Python stack.
 */
/* The bounded walk of the interpreter's thread list for the state whose thread_id is `key->fsbase`; 0 if none.
 * With `cache`, the answer goes into thread_states. `task`: see read_user. */
/* The dump's scan of the thread list, one thread state per bpf_loop round. */
struct thread_scan {
    const struct py_offsets *offsets;
    struct task_struct *task;
    __u64 fsbase;
    __u64 tstate; /* the one looked at; the thread's once found */
    bool found;
};

static long scan_thread_step(__u32 index, struct thread_scan *scan)
{
    if (read_u64_of(scan->tstate + scan->offsets->tstate_thread_id, scan->task) == scan->fsbase) {
        scan->found = true;
        return 1;
    }
    scan->tstate = read_u64_of(scan->tstate + scan->offsets->tstate_next, scan->task);
    return scan->tstate ? 0 : 1;
}

static __always_inline __u64 scan_thread_list(const struct py_process *process, const struct thread_key *key,
                                              bool cache, struct task_struct *task)
{
    const struct py_offsets *offsets = &process->offsets;
    __u64 interp = 0, tstate = 0;
    if (read_user(&interp, sizeof(interp), (const void *)process->interpreters_head, task) != 0 ||
        (interp && read_user(&tstate, sizeof(tstate), (const void *)(interp + offsets->interp_threads_head), task) != 0)) {
        count_read_error_of(COUNTER_READ_INTERP, task);
        return 0;
    }
    if (!tstate) {
        /* Before Py_Initialize has created the main thread state, or after finalization. */
        count(COUNTER_NO_INTERPRETER);
        return 0;
    }
    if (task) {
        /* The dump's iterator (5.18 and later, so bpf_loop is there): 6.1's verifier follows the bounded loop below
         * path by path through its 64 rounds, and gives up at its limit of a million instructions. A callback is
         * checked once per state it is called in. */
        struct thread_scan scan = { .offsets = offsets, .task = task, .fsbase = key->fsbase, .tstate = tstate };
        bpf_loop(PY_MAX_THREADS_SCAN, scan_thread_step, &scan, 0);
        if (scan.found)
            return scan.tstate;
        count(COUNTER_NO_THREAD_STATE);
        return 0;
    }
    for (int i = 0; i < PY_MAX_THREADS_SCAN && tstate; i++) {
        if (read_u64_of(tstate + offsets->tstate_thread_id, task) == key->fsbase) {
            if (cache)
                bpf_map_update_elem(&thread_states, key, &tstate, BPF_ANY);
            return tstate;
        }
        tstate = read_u64_of(tstate + offsets->tstate_next, task);
    }
    count(COUNTER_NO_THREAD_STATE);
    return 0;
}

static __always_inline __u64 find_thread_state(const struct py_process *process, __u32 tgid)
{
    const struct py_offsets *offsets = &process->offsets;
    struct task_struct___pybpfprof *task = (void *)bpf_get_current_task();
    struct thread_key key = { .tgid = tgid, .fsbase = BPF_CORE_READ(task, thread.fsbase) };
    if (key.fsbase == 0)
        return 0;

    __u64 *cached = bpf_map_lookup_elem(&thread_states, &key);
    if (cached) {
        __u64 tstate = *cached;
        if (read_u64(tstate + offsets->tstate_thread_id) == key.fsbase)
            return tstate;
        count(COUNTER_TSTATE_STALE);
        bpf_map_delete_elem(&thread_states, &key);
    }
    count(COUNTER_TSTATE_CACHE_MISS);
    return scan_thread_list(process, &key, true, NULL);
}

/* The frame the thread is executing: tstate->frame, tstate->cframe->current_frame or
 * tstate->current_frame depending on the version. */
static __always_inline __u64 current_frame_of(const struct py_offsets *offsets, __u64 tstate, struct task_struct *task)
{
    __u64 frame = read_u64_of(tstate + offsets->tstate_frame, task);
    if (frame && offsets->cframe_current_frame != PY_OFFSET_NONE)
        frame = read_u64_of(frame + offsets->cframe_current_frame, task);
    return frame;
}

static __always_inline __u64 current_frame(const struct py_offsets *offsets, __u64 tstate)
{
    return current_frame_of(offsets, tstate, NULL);
}

/* The stages after on_sample, tail-called (see enum prog_slot). Filled by userspace after load with the variants
 * this kernel got; an empty slot fails the tail call, which is counted and flagged. */
struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, PROG_SLOT_COUNT);
    __type(key, __u32);
    __type(value, __u32);
} programs SEC(".maps");

/* The same stages as kprobe programs, for on_switch_in. */
struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, PROG_SLOT_COUNT);
    __type(key, __u32);
    __type(value, __u32);
} switch_in_programs SEC(".maps");

/* The Python frames recorded so far, read and written through volatile so that it stays in memory: in a register,
 * the verifier would track its exact value along each path through the frames (a boundary or not, per frame) and
 * check each combination on its own. */
#define PY_FRAME_COUNT(state) (*(volatile __u16 *)&(state)->sample.header.py_frame_count)

/* Ends the current run of Python frames (see PY_FRAME_BOUNDARY). */
static __always_inline void emit_boundary(struct walk_state *state)
{
    __u32 frames = PY_FRAME_COUNT(state);
    if (frames >= PY_MAX_FRAMES)
        return;
    struct py_frame *out = py_frame_slot(state, frames);
    out->code = 0;
    out->instr = PY_FRAME_BOUNDARY;
    out->checksum = 0;
    PY_FRAME_COUNT(state) = frames + 1;
}

/*
 * Reads one frame at state->frame into the record and advances state->frame to its caller. Returns false
 * when the walk must stop (end of chain, failed read, record full). The cursor lives in the map value,
 * not in registers, so every iteration looks the same to the verifier and its states prune. `task`: see
 * read_user.
 */
static __always_inline bool walk_one_frame(struct walk_state *state, struct task_struct *task)
{
    const struct py_offsets *offsets = &state->offsets;
    __u64 frame = state->frame;
    __u32 frames = PY_FRAME_COUNT(state);
    if (!frame || frames >= PY_MAX_FRAMES)
        return false;

    __u32 read_size = offsets->frame_read_size;
    if (read_size > PY_FRAME_READ_MAX)
        read_size = PY_FRAME_READ_MAX;
    if (read_user(state->frame_buf, read_size, (const void *)frame, task) != 0) {
        count(COUNTER_READ_FRAME);
        state->sample.header.flags |= SAMPLE_READ_ERROR;
        state->frame = 0;
        return false;
    }
    __u64 code = frame_u64(state, offsets->frame_code) & ~(__u64)offsets->code_tag_bits;
    state->frame = frame_u64(state, offsets->frame_previous);

    /* The frame each _PyEval_EvalFrameDefault call pushes first (a shim for calls from C in 3.12 and 3.13, the entry
     * frame from 3.14) carries no Python code: the frames since the last one ran in one call of the eval loop. */
    if (offsets->frame_owner != PY_OFFSET_NONE &&
        state->frame_buf[offsets->frame_owner & (PY_FRAME_READ_MAX - 1)] >= offsets->owner_boundary) {
        emit_boundary(state);
        return true;
    }

    __u32 instr = offsets->instr_kind == PY_INSTR_LASTI ? frame_u32(state, offsets->frame_instr)
                                                        : (__u32)(frame_u64(state, offsets->frame_instr) - code);
    __u64 window = 0;
    if (code && read_user(&window, sizeof(window), (const void *)(code + offsets->code_checksum), task) != 0)
        count(COUNTER_READ_CODE);

    struct py_frame *out = py_frame_slot(state, frames);
    out->code = code;
    out->instr = instr;
    out->checksum = (__u32)((window * 0x9E3779B97F4A7C15ULL) >> 32);
    PY_FRAME_COUNT(state) = frames + 1;
    /* 3.11: the first frame of a _PyEval_EvalFrameDefault call is marked instead. */
    if (offsets->frame_is_entry != PY_OFFSET_NONE && state->frame_buf[offsets->frame_is_entry & (PY_FRAME_READ_MAX - 1)])
        emit_boundary(state);
    return true;
}

/* bpf_loop callback: the verifier checks one frame's code once, not once per iteration. */
static long walk_python_frame(__u32 index, struct loop_context *context)
{
    return walk_one_frame(context->state, NULL) ? 0 : 1;
}

/*
 * The stages after on_sample (see "How a sample is walked" in pybpfprof.h). Each ends by tail-calling the next
 * stage or itself, or by sending the record; a failed tail call sends what was walked, flagged.
 */

static __always_inline void send_after_failed_tail_call(struct walk_state *state)
{
    count(COUNTER_TAIL_CALL_FAILED);
    state->sample.header.flags |= SAMPLE_TAIL_CALL_FAILED;
    emit(state);
}

/* After the native unwind: the Python walk if the thread has a Python frame, else the record as it is. `stages`: the
 * prog array of the calling program's type (`programs` or `switch_in_programs`). */
static __always_inline void after_native_unwind(void *ctx, void *stages, struct walk_state *state)
{
    if (!state->frame) {
        emit(state);
        return;
    }
    bpf_tail_call(ctx, stages, PROG_PY_WALK);
    send_after_failed_tail_call(state);
}

static __always_inline struct walk_state *current_walk_state(void)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&walk_states, &zero);
}

/* The native unwind in one bpf_loop (5.17+). */
static __always_inline int unwind_native_loop_stage(void *ctx, void *stages)
{
    struct walk_state *state = current_walk_state();
    if (!state)
        return 0;
    const struct process_mappings *mappings = native_stage_mappings(ctx, state, true);
    if (mappings) {
        struct loop_context context = { .state = state, .mappings = mappings };
        bpf_loop(NATIVE_MAX_FRAMES + 1, unwind_native_frame, &context, 0);
    }
    after_native_unwind(ctx, stages, state);
    return 0;
}

/* The native unwind in batches of NATIVE_FRAMES_PER_CALL frames, one per tail call (kernels without bpf_loop). */
static __always_inline int unwind_native_bounded_stage(void *ctx, void *stages)
{
    struct walk_state *state = current_walk_state();
    if (!state)
        return 0;
    const struct process_mappings *mappings = native_stage_mappings(ctx, state, state->native_calls == 0);
    if (!mappings) {
        after_native_unwind(ctx, stages, state);
        return 0;
    }
    struct loop_context context = { .state = state, .mappings = mappings };
    for (__u32 i = 0; i < NATIVE_FRAMES_PER_CALL; i++) {
        if (unwind_native_step(i, &context, NULL)) {
            after_native_unwind(ctx, stages, state);
            return 0;
        }
    }
    state->native_calls++;
    if (state->native_calls < NATIVE_MAX_CALLS) {
        bpf_tail_call(ctx, stages, PROG_NATIVE_CONTINUE);
        send_after_failed_tail_call(state);
        return 0;
    }
    /* NATIVE_MAX_FRAMES frames recorded and the cursor holds another. */
    state->sample.header.flags |= SAMPLE_NATIVE_TRUNCATED;
    count(COUNTER_NATIVE_TRUNCATED);
    after_native_unwind(ctx, stages, state);
    return 0;
}

/* The end of the Python walk: a frame still to read means the stack was deeper than PY_MAX_FRAMES. */
static __always_inline void finish_python_walk(struct walk_state *state)
{
    if (state->frame) {
        count(COUNTER_TRUNCATED);
        state->sample.header.flags |= SAMPLE_TRUNCATED;
    }
    emit(state);
}

/* The Python walk in one bpf_loop (5.17+). Per frame: one read of the frame struct and one 8-byte read of the code
 * object for the address-reuse checksum. */
static __always_inline int walk_python_loop_stage(void)
{
    struct walk_state *state = current_walk_state();
    if (!state)
        return 0;
    struct loop_context context = { .state = state };
    bpf_loop(PY_MAX_FRAMES, walk_python_frame, &context, 0);
    finish_python_walk(state);
    return 0;
}

/* The Python walk in batches of PY_FRAMES_PER_CALL frames, one per tail call (kernels without bpf_loop). */
static __always_inline int walk_python_bounded_stage(void *ctx, void *stages)
{
    struct walk_state *state = current_walk_state();
    if (!state)
        return 0;
    for (__u32 i = 0; i < PY_FRAMES_PER_CALL; i++) {
        if (!walk_one_frame(state, NULL))
            break;
    }
    state->python_calls++;
    if (state->frame && state->python_calls < PY_MAX_CALLS) {
        bpf_tail_call(ctx, stages, PROG_PY_WALK);
        send_after_failed_tail_call(state);
        return 0;
    }
    finish_python_walk(state);
    return 0;
}

/* The sampler's stages, as perf_event programs. */
SEC("perf_event")
int unwind_native_loop(struct bpf_perf_event_data *ctx) { return unwind_native_loop_stage(ctx, &programs); }

SEC("perf_event")
int unwind_native_bounded(struct bpf_perf_event_data *ctx) { return unwind_native_bounded_stage(ctx, &programs); }

SEC("perf_event")
int walk_python_loop(struct bpf_perf_event_data *ctx) { return walk_python_loop_stage(); }

SEC("perf_event")
int walk_python_bounded(struct bpf_perf_event_data *ctx) { return walk_python_bounded_stage(ctx, &programs); }

/*
 * Process events: a program replaced by execve, a process forked, a process gone. Userspace turns them into
 * registrations (a new Python process, a forked Python child) and forgets exited processes, in ring-buffer
 * order with the samples. Raw tracepoints: no tracefs needed, and unlike BTF tracepoints (tp_btf) they attach
 * without the kernel's BTF, which libbpf would otherwise parse at every start (see KernelTypes.swift); their arguments
 * are read as the CO-RE reads above read any kernel memory.
 */
static __always_inline void send_process_event(enum record_type type, __u32 pid, __u32 tid)
{
    struct sample_header event = {
        .time_ns = bpf_ktime_get_ns(),
        .pid = pid,
        .tid = tid,
        .cpu = bpf_get_smp_processor_id(),
        .record_type = type,
    };
    bpf_get_current_comm(event.comm, sizeof(event.comm));
    /* Rare and urgent (a new process is registered as soon as userspace hears of it): wake the reader. */
    if (bpf_ringbuf_output(&samples, &event, sizeof(event), BPF_RB_FORCE_WAKEUP) != 0)
        count(COUNTER_EVENTS_LOST);
}

/* Whether the current task is one the recording is restricted to: always without --cgroup / --container. A
 * failed check (no cgroup in the map) counts the task as outside, and is counted. */
static __always_inline bool current_task_in_target(void)
{
    if (!config.restrict_to_cgroup)
        return true;
    long under = bpf_current_task_under_cgroup(&target_cgroup, 0);
    if (under < 0)
        count(COUNTER_CGROUP_CHECK_FAILED);
    return under == 1;
}

/* Exit or exec: the process's registration is deleted here, in the kernel, so that no sample of the new program
 * (or of a new process given the same pid) is read with the old program's offsets before userspace has handled
 * the event. Userspace's own removal then finds nothing, which it ignores. A profiled process's event is always
 * reported (userspace forgets it); others only when following, and under the cgroup when restricted. */
static __always_inline void report_replaced_process(enum record_type type, __u32 tgid)
{
    bool was_profiled = bpf_map_delete_elem(&processes, &tgid) == 0;
    if (was_profiled || (config.report_process_events && current_task_in_target()))
        send_process_event(type, tgid, 0);
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task, int old_pid, void *binprm)
{
    report_replaced_process(RECORD_EXEC, bpf_get_current_pid_tgid() >> 32);
    return 0;
}

SEC("raw_tp/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
    struct task_struct___pybpfprof *forked = (void *)child;
    int pid = BPF_CORE_READ(forked, pid), tgid = BPF_CORE_READ(forked, tgid);
    /* A new thread is no new process. The child is in its parent's cgroup, the current task's. */
    if (pid != tgid || !config.report_process_events || !current_task_in_target())
        return 0;
    send_process_event(RECORD_FORK, bpf_get_current_pid_tgid() >> 32, (__u32)pid);
    return 0;
}

/* The tracepoint's group_dead argument exists only in newer kernels (a program that reads an argument its kernel does
 * not pass fails to attach): the same fact is read from the task. do_exit decrements signal->live before this
 * tracepoint, so 0 means the last thread of the group is exiting. Two threads exiting at once may both see 0: the
 * second event finds nothing to forget. */
SEC("raw_tp/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
    struct task_struct___pybpfprof *exiting = (void *)task;
    if (BPF_CORE_READ(exiting, signal, live.counter) != 0)
        return 0;
    report_replaced_process(RECORD_EXIT, bpf_get_current_pid_tgid() >> 32);
    return 0;
}

/* --mode gil: whether the thread whose state is `tstate` holds the GIL now (enum gil_probe_kind). A failed read says
 * no: the sample is left out. */
static __always_inline bool holds_gil(const struct gil_probe *gil, __u64 tstate)
{
    if (!tstate)
        return false;
    if (gil->kind == GIL_PROBE_HOLDER_SLOT)
        return read_u64(gil->holder_slot) == tstate;
    __u32 word = 0;
    if (gil->kind == GIL_PROBE_INTERPRETER_GIL) {
        __u64 interp = read_u64(tstate + gil->tstate_interp);
        __u64 state = interp ? read_u64(interp + gil->interp_ceval_gil) : 0;
        if (!state || bpf_probe_read_user(&word, sizeof(word), (const void *)(state + gil->gil_locked)) != 0)
            return false;
        return word == 1 && read_u64(state + gil->gil_last_holder) == tstate;
    }
    if (gil->kind == GIL_PROBE_THREAD_STATE_FLAG)
        return bpf_probe_read_user(&word, sizeof(word), (const void *)(tstate + gil->flag_offset)) == 0 &&
               (word & gil->flag_mask) != 0;
    return false;
}

/* The start of a record of the current thread of a profiled process, on_sample's or on_switch_in's: its header, its
 * kernel stack (from `ctx`), its thread state and current Python frame. Then the native unwind is tail-called through
 * `stages` (the prog array of the caller's program type), or the Python walk. `weight_ns`: an off-CPU interval's
 * (a sample's is set as it is sent: see tick_weight). */
static __always_inline void walk_current_thread(void *ctx, void *stages, const struct py_process *process, __u64 pid_tgid,
                                                enum record_type type, __u64 weight_ns, __u16 offcpu_state)
{
    __u32 zero = 0;
    struct walk_state *state = bpf_map_lookup_elem(&walk_states, &zero);
    if (!state)
        return;
    __u32 tgid = pid_tgid >> 32;
    struct sample_header *header = &state->sample.header;
    header->time_ns = bpf_ktime_get_ns();
    header->pid = tgid;
    header->tid = (__u32)pid_tgid;
    header->cpu = bpf_get_smp_processor_id();
    header->record_type = type;
    header->weight_ns = weight_ns;
    header->offcpu_state = offcpu_state;
    header->py_frame_count = 0;
    header->flags = 0;
    header->tstate = 0;
    bpf_get_current_comm(header->comm, sizeof(header->comm));
    /* The kernel's own unwinder; empty (0 bytes) when the tick interrupted user mode. */
    long kernel_bytes = config.collect_kernel_stacks ? bpf_get_stack(ctx, state->sample.body, KERNEL_MAX_FRAMES * 8, 0) : 0;
    header->kernel_frame_count = kernel_bytes > 0 ? kernel_bytes / 8 : 0;
    header->native_frame_count = 0;
    state->offsets = process->offsets;
    state->native_calls = 0;
    state->python_calls = 0;
    state->frame = 0;

    __u64 tstate = process->interpreters_head ? find_thread_state(process, tgid) : 0;
    if (config.gil_only && !holds_gil(&process->gil, tstate)) {
        count(COUNTER_GIL_NOT_HELD);
        return;
    }
    __u64 frame = tstate ? current_frame(&state->offsets, tstate) : 0;
    header->tstate = tstate;
    if (frame)
        state->frame = frame;
    else
        header->flags |= SAMPLE_NO_PYTHON;
    if (config.collect_native_stacks) {
        bpf_tail_call(ctx, stages, PROG_NATIVE_UNWIND);
        /* Its slot is empty until userspace has loaded the stage, after sampling started (see SamplerProgram's
         * deferNativeStage): until then the Python walk runs without it, as for a process without tables. */
        header->flags |= SAMPLE_NATIVE_NOT_LOADED;
        count(COUNTER_NATIVE_STAGE_NOT_LOADED);
    }
    after_native_unwind(ctx, stages, state);
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
    /* Every tick, whoever it caught, is timed (see tick_weight). Stored and nothing more: what is computed from it
     * is computed as the record is sent, after the walk, where 5.10's verifier need not tell more states apart. */
    if (config.offcpu_period_ns) {
        __u32 zero = 0;
        struct tick_times *ticks = bpf_map_lookup_elem(&tick_times, &zero);
        if (ticks) {
            ticks->previous = ticks->last;
            ticks->last = bpf_ktime_get_ns();
        }
    }
    /* First: on a busy host most ticks belong to tasks of other cgroups. */
    if (!current_task_in_target())
        return 0;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    const struct py_process *process = bpf_map_lookup_elem(&processes, &tgid);
    if (!process)
        return 0;
    walk_current_thread(ctx, &programs, process, pid_tgid, RECORD_SAMPLE, 0, OFFCPU_NONE);
    return 0;
}

/*
 * Off-CPU intervals (`--mode wall|offcpu`): the time a profiled thread spends off a CPU, from the scheduler's own
 * hooks. At switch-out (the sched_switch tracepoint, where the thread is `prev`) only the time and the reason are
 * stored; at the thread's next switch-in (a kprobe on finish_task_switch, which runs in the incoming thread, so the
 * sampler's walk reads its stacks as it reads a sampled thread's) the interval is weighed, kept or sampled out, and
 * the kept ones walked and sent. A thread's stacks do not change while it is off the CPU, and its kernel stack there
 * is still the one it blocked in, so walking at switch-in loses nothing; and only the kept intervals pay for a walk.
 *
 * The cost on every context switch of the host: a hash lookup at switch-out (is prev profiled?) and one at switch-in
 * (has this thread a start?). Both hooks run with interrupts off, so the kprobe's walk shares the per-CPU walk state
 * with on_sample: a tick cannot interrupt it.
 */

/* Why `task` leaves its CPU, from its state as __schedule read it (`state`; the rule of the kernel's
 * __trace_sched_switch_state): a preempted task stays runnable whatever its state says. */
static __always_inline __u16 switch_out_reason(bool preempt, long state)
{
    if (preempt || state == 0)
        return OFFCPU_RUNNABLE;
    return state & 2 /* TASK_UNINTERRUPTIBLE */ ? OFFCPU_UNINTERRUPTIBLE : OFFCPU_SLEEPING;
}

/* The state of `task` read now: before 5.18 the tracepoint does not pass the state __schedule read, and a wakeup racing
 * the switch can already have made it 0 (runnable) for a short sleep. */
static __always_inline long task_state(struct task_struct___pybpfprof *task)
{
    if (bpf_core_field_exists(task->__state))
        return BPF_CORE_READ(task, __state);
    return BPF_CORE_READ((struct task_struct___pre_5_14 *)task, state);
}

/* Stores when and why `prev` left its CPU, if it is a thread of a profiled process. */
static __always_inline void switch_out(bool preempt, struct task_struct *prev, long prev_state)
{
    struct task_struct___pybpfprof *task = (void *)prev;
    __u32 tgid = BPF_CORE_READ(task, tgid);
    if (!bpf_map_lookup_elem(&processes, &tgid))
        return;
    /* An exiting thread's last switch: it never comes back. */
    if (BPF_CORE_READ(task, flags) & PF_EXITING)
        return;
    __u32 tid = BPF_CORE_READ(task, pid);
    struct offcpu_start start = { .time_ns = bpf_ktime_get_ns(), .state = switch_out_reason(preempt, prev_state) };
    if (bpf_map_update_elem(&offcpu_starts, &tid, &start, BPF_ANY) != 0)
        count(COUNTER_OFFCPU_START_LOST);
}

/* A raw tracepoint program may read only the arguments its kernel passes (it fails to attach otherwise): three before
 * 5.18, which then appended prev_state. Userspace loads the one that fits, from the kernel's BTF
 * (SamplerProgram.switchOutProgram). */
SEC("?raw_tp/sched_switch")
int BPF_PROG(on_switch_out, bool preempt, struct task_struct *prev, struct task_struct *next)
{
    if (preempt)
        switch_out(true, prev, 0);
    else
        switch_out(false, prev, task_state((void *)prev));
    return 0;
}

SEC("?raw_tp/sched_switch")
int BPF_PROG(on_switch_out_prev_state, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
    switch_out(preempt, prev, prev_state);
    return 0;
}

/* Whether the current thread, back on a CPU, was off it waiting for the GIL: in futex(2) on an address of the GIL's
 * wait range (struct gil_probe). From the registers it entered the system call with, saved on its kernel stack: the
 * system call's number and its first argument, the futex's address. Only the intervals kept pay for these reads. */
static __always_inline bool waited_for_gil(const struct py_process *process)
{
    const struct gil_probe *gil = &process->gil;
    if (gil->wait_kind == GIL_WAIT_NONE)
        return false;
    const struct pt_regs *saved = current_saved_registers();
    __u64 syscall = 0, futex = 0;
    if (!saved || bpf_probe_read_kernel(&syscall, sizeof(syscall), &saved->orig_rax) != 0 || syscall != 202 /* x86_64 futex */)
        return false;
    bpf_probe_read_kernel(&futex, sizeof(futex), &saved->rdi);
    __u64 start = gil->wait_start;
    if (gil->wait_kind == GIL_WAIT_POINTER) {
        start = read_u64(start);
        if (!start)
            return false;
    } else if (gil->wait_kind == GIL_WAIT_INTERPRETER_GIL) {
        __u64 interp = read_u64(process->interpreters_head);
        __u64 gil_address = interp ? read_u64(interp + gil->interp_ceval_gil) : 0;
        if (!gil_address)
            return false;
        start += gil_address;
    }
    return futex - start < gil->wait_size; /* unsigned: an address below the start wraps to a large difference */
}

/* Attached by userspace to finish_task_switch, or to the finish_task_switch.isra.N clone the compiler made of it. */
SEC("?kprobe")
int on_switch_in(struct pt_regs *ctx)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)pid_tgid;
    struct offcpu_start *start = bpf_map_lookup_elem(&offcpu_starts, &tid);
    if (!start)
        return 0;
    __u64 length = bpf_ktime_get_ns() - start->time_ns;
    __u16 state = start->state;
    bpf_map_delete_elem(&offcpu_starts, &tid);

    /* Threshold sampling (config.offcpu_period_ns): keep a short interval with probability length / period.
     * random / 2^32 < length / period, in integers: both sides stay below 2^63 for a period under 2^31 ns. */
    __u64 period = config.offcpu_period_ns, weight = length;
    if (length < period) {
        if ((__u64)bpf_get_prandom_u32() * period >= length << 32) {
            count(COUNTER_OFFCPU_SAMPLED_OUT);
            return 0;
        }
        weight = period;
    }
    __u32 tgid = pid_tgid >> 32;
    const struct py_process *process = bpf_map_lookup_elem(&processes, &tgid);
    if (!process)
        return 0;
    /* Runnable too: a thread woken in take_gil that waits for a CPU (or whose wakeup raced the switch-out, so that it
     * looked runnable) is still on its way to the GIL. A thread preempted in user code entered the kernel by an
     * interrupt, not a system call, and fails the test. */
    if (state != OFFCPU_UNINTERRUPTIBLE && waited_for_gil(process))
        state = OFFCPU_GIL;
    walk_current_thread(ctx, &switch_in_programs, process, pid_tgid, RECORD_OFFCPU, weight, state);
    return 0;
}

/* The stages again, as kprobe programs, for on_switch_in (see enum prog_slot). */
SEC("?kprobe")
int unwind_native_loop_switch_in(struct pt_regs *ctx) { return unwind_native_loop_stage(ctx, &switch_in_programs); }

SEC("?kprobe")
int unwind_native_bounded_switch_in(struct pt_regs *ctx) { return unwind_native_bounded_stage(ctx, &switch_in_programs); }

SEC("?kprobe")
int walk_python_loop_switch_in(struct pt_regs *ctx) { return walk_python_loop_stage(); }

SEC("?kprobe")
int walk_python_bounded_switch_in(struct pt_regs *ctx) { return walk_python_bounded_stage(ctx, &switch_in_programs); }

/*
 * Dump (`pybpfprof dump`): the current stack of every thread of a process, without stopping it.
 *
 * The sampler only ever sees threads that run (a cpu-clock tick lands on a running thread), so a thread that
 * sleeps, which is what a dump is mostly asked about, never gets a sample. Here a task iterator visits every
 * thread of the process instead, sleeping or not, and walks its stacks as on_sample would: its PyThreadState
 * by fsbase in the thread list, its Python frame chain, its native stack from the user registers saved at its
 * last kernel entry (a thread that is not running is always in the kernel), and its kernel stack. Those threads
 * are not the current task, so their memory is read with bpf_copy_from_user_task, which only a sleepable
 * program may call: hence iter.s. The walk helpers above are shared through their `task` parameter.
 *
 * "?": not loaded unless asked for (bpf_program__set_autoload). The sampler never needs it, and a kernel
 * without bpf_copy_from_user_task (before 5.18) can still sample.
 */

struct seq_file;

struct bpf_iter_meta {
    struct seq_file *seq;
    __u64 session_id;
    __u64 seq_num;
} __attribute__((preserve_access_index));

/* The context of a task iterator program; task is NULL once, after the last task. */
struct bpf_iter__task {
    struct bpf_iter_meta *meta;
    struct task_struct *task;
} __attribute__((preserve_access_index));

/* The fields of another thread's task_struct the dump reads (CO-RE, like task_struct___pybpfprof). */
struct task_struct___dump {
    int pid;
    int tgid;
    unsigned int __state;
    int on_cpu;
    unsigned int cpu;
    unsigned long nvcsw;
    unsigned long nivcsw;
    char comm[TASK_COMM_LEN];
    struct thread_struct___pybpfprof thread;
} __attribute__((preserve_access_index));

/* Where the CPU a task runs on is kept when task_struct has no `cpu` of its own (x86 kernels that keep it in
 * thread_info again, such as 6.18). */
struct thread_info___dump {
    unsigned int cpu;
} __attribute__((preserve_access_index));

struct task_struct___dump_thread_info {
    struct thread_info___dump thread_info;
} __attribute__((preserve_access_index));

/* The CPU the thread runs on, or last ran on; 0 when the kernel keeps it in neither place. */
static __always_inline __u32 task_cpu(struct task_struct___dump *thread)
{
    if (bpf_core_field_exists(thread->cpu))
        return BPF_CORE_READ(thread, cpu);
    struct task_struct___dump_thread_info *with_info = (void *)thread;
    if (bpf_core_field_exists(with_info->thread_info.cpu))
        return BPF_CORE_READ(with_info, thread_info.cpu);
    return 0;
}

/* The record being built. Its own map rather than walk_states, so that a dump never shares a buffer with an
 * on_sample of the same object (the iterator may sleep mid-walk; it runs with migration disabled, so a per-CPU
 * slot stays its own). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct walk_state);
} dump_states SEC(".maps");

/* What the dump's bpf_loop callbacks get: the sampler's context and the thread whose memory they read. */
struct dump_loop_context {
    struct loop_context base;
    struct task_struct *task; /* never NULL */
};

static long dump_unwind_native_frame(__u32 index, struct dump_loop_context *context)
{
    return unwind_native_step(index, &context->base, context->task);
}

static long dump_walk_python_frame(__u32 index, struct dump_loop_context *context)
{
    return walk_one_frame(context->base.state, context->task) ? 0 : 1;
}

/* Voluntary and involuntary context switches: unchanged across the walk means the thread did not run meanwhile. */
static __always_inline __u64 context_switches(struct task_struct___dump *thread)
{
    return BPF_CORE_READ(thread, nvcsw) + BPF_CORE_READ(thread, nivcsw);
}

/* The native stack of a thread that is not running, from the user registers saved when it entered the kernel. */
static __always_inline void dump_unwind_native(struct walk_state *state, struct task_struct *task, __u32 tgid)
{
    struct native_cursor *cursor = &state->native;
    const struct process_mappings *mappings = bpf_map_lookup_elem(&process_mappings, &tgid);
    if (!mappings) {
        state->sample.header.flags |= SAMPLE_NATIVE_NOT_LOADED;
        count(COUNTER_NATIVE_NO_MAPPINGS);
        return;
    }
    struct pt_regs regs;
    const void *saved = (const void *)bpf_task_pt_regs(task);
    if (!saved || bpf_probe_read_kernel(&regs, sizeof(regs), saved) != 0 || (regs.cs & 3) != 3) {
        count(COUNTER_NATIVE_NO_REGISTERS);
        return;
    }
    cursor->pc = regs.rip;
    cursor->sp = regs.rsp;
    cursor->bp = regs.rbp;
    cursor->frame_pointer_bit = 0;
    cursor->mapping_hint = 0;
    struct dump_loop_context context = { .base = { .state = state, .mappings = mappings }, .task = task };
    bpf_loop(NATIVE_MAX_FRAMES + 1, dump_unwind_native_frame, &context, 0);
}

/* One thread: a struct dump_thread, then its struct sample, into the seq_file (see struct dump_thread). Threads
 * of processes not in `processes` are skipped (userspace also limits the iterator to one process). */
SEC("?iter.s/task")
int dump_threads(struct bpf_iter__task *ctx)
{
    struct seq_file *seq = ctx->meta->seq;
    struct task_struct *task = ctx->task;
    if (!task)
        return 0;
    struct task_struct___dump *thread = (void *)task;
    __u32 tgid = BPF_CORE_READ(thread, tgid);
    const struct py_process *process = bpf_map_lookup_elem(&processes, &tgid);
    if (!process)
        return 0;
    __u32 zero = 0;
    struct walk_state *state = bpf_map_lookup_elem(&dump_states, &zero);
    if (!state)
        return 0;

    struct sample_header *header = &state->sample.header;
    __builtin_memset(header, 0, sizeof(*header));
    header->time_ns = bpf_ktime_get_ns();
    header->pid = tgid;
    header->tid = BPF_CORE_READ(thread, pid);
    /* The CPU it runs on, or last ran on. */
    header->cpu = task_cpu(thread);
    BPF_CORE_READ_STR_INTO(&header->comm, thread, comm);

    struct dump_thread out = { .state = BPF_CORE_READ(thread, __state) };
    __u64 switches = context_switches(thread);
    if (bpf_core_field_exists(thread->on_cpu) && BPF_CORE_READ(thread, on_cpu)) {
        out.flags |= DUMP_THREAD_ON_CPU;
    } else {
        long kernel_bytes = config.collect_kernel_stacks ? bpf_get_task_stack(task, state->sample.body, KERNEL_MAX_FRAMES * 8, 0) : 0;
        header->kernel_frame_count = kernel_bytes > 0 ? kernel_bytes / 8 : 0;
        if (config.collect_native_stacks)
            dump_unwind_native(state, task, tgid);
    }

    state->offsets = process->offsets;
    state->frame = 0;
    struct thread_key key = { .tgid = tgid, .fsbase = BPF_CORE_READ(thread, thread.fsbase) };
    __u64 tstate = process->interpreters_head && key.fsbase ? scan_thread_list(process, &key, false, task) : 0;
    __u64 frame = tstate ? current_frame_of(&state->offsets, tstate, task) : 0;
    header->tstate = tstate;
    if (frame) {
        state->frame = frame;
        struct dump_loop_context context = { .base = { .state = state }, .task = task };
        bpf_loop(PY_MAX_FRAMES, dump_walk_python_frame, &context, 0);
        if (state->frame) {
            count(COUNTER_TRUNCATED);
            header->flags |= SAMPLE_TRUNCATED;
        }
    } else {
        header->flags |= SAMPLE_NO_PYTHON;
    }
    if (context_switches(thread) != switches)
        out.flags |= DUMP_THREAD_SWITCHED;

    __u32 size = record_size(header);
    out.record_size = size;
    /* A record that does not fit the seq_file's buffer is taken back whole, and this thread visited again. */
    if (bpf_seq_write(seq, &out, sizeof(out)) == 0)
        bpf_seq_write(seq, &state->sample, size);
    return 0;
}
