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
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "pybpfprof.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Tunables, set by userspace before load. */

/* Unread ring buffer bytes past which a record wakes the reader. Below it records are written without a
 * wakeup and the reader finds them on its next timed poll: a wakeup is an irq_work, which costs ~5 us per
 * record in a VM (a self-IPI), more than the whole rest of the sample. */
const volatile __u64 wakeup_bytes = 1 << 20;

/* 0 for a Python-only recording: skips the kernel unwinder's cost. */
const volatile __u8 collect_kernel_stacks = 1;

/* The kernel types we read, with CO-RE relocations against the running kernel's BTF: only the field we
 * need, so the program builds without a vmlinux.h. */
struct thread_struct___pybpfprof {
    unsigned long fsbase;
} __attribute__((preserve_access_index));

struct task_struct___pybpfprof {
    unsigned int flags;
    struct thread_struct___pybpfprof thread;
} __attribute__((preserve_access_index));

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

/* Size set by userspace before load (bpf_map__set_max_entries). */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 << 20);
} samples SEC(".maps");

static __always_inline void count(enum counter counter)
{
    __u32 key = counter;
    __u64 *value = bpf_map_lookup_elem(&counters, &key);
    if (value)
        __sync_fetch_and_add(value, 1);
}

/* Reads a pointer-sized value from the target; 0 on failure (NULL is never a valid answer here). */
static __always_inline __u64 read_u64(__u64 address)
{
    __u64 value = 0;
    if (bpf_probe_read_user(&value, sizeof(value), (const void *)address) != 0)
        return 0;
    return value;
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

/* Where Python frame `index` goes in the record body: after the kernel frames. */
static __always_inline struct py_frame *py_frame_slot(struct walk_state *state, __u32 index)
{
    __u32 offset = state->sample.header.kernel_frame_count * 8 + index * sizeof(struct py_frame);
    return (struct py_frame *)&state->sample.body[offset & (SAMPLE_BODY_SIZE - 1)];
}

static __always_inline void emit(struct walk_state *state)
{
    __u32 frames = state->sample.header.py_frame_count;
    if (frames > PY_MAX_FRAMES)
        frames = PY_MAX_FRAMES;
    __u32 kernel_frames = state->sample.header.kernel_frame_count;
    if (kernel_frames > KERNEL_MAX_FRAMES)
        kernel_frames = KERNEL_MAX_FRAMES;
    __u64 size = sizeof(struct sample_header) + kernel_frames * 8 + (__u64)frames * sizeof(struct py_frame);
    __u64 flags = bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
                                                                                : BPF_RB_NO_WAKEUP;
    if (bpf_ringbuf_output(&samples, &state->sample, size, flags) == 0)
        count(COUNTER_SENT);
    else
        count(COUNTER_RINGBUF_FULL);
}

/*
 * (tgid, fsbase) -> PyThreadState*. On x86_64 glibc and musl, pthread_self() is the thread's fsbase and
 * CPython stores pthread_self() in tstate->thread_id on every version, so the pair identifies the thread's
 * state without any TLS or pthread-key knowledge. A cache hit is re-validated by reading thread_id (the
 * state may have been freed and reused); a miss walks the interpreter's thread list, bounded, so even the
 * first sample of a new thread gets its Python stack.
 */
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

    __u64 interp = 0, tstate = 0;
    if (bpf_probe_read_user(&interp, sizeof(interp), (const void *)process->interpreters_head) != 0 ||
        (interp && bpf_probe_read_user(&tstate, sizeof(tstate), (const void *)(interp + offsets->interp_threads_head)) != 0)) {
        /* A process in exit() has already given up its memory: not an error. */
        count(BPF_CORE_READ(task, flags) & PF_EXITING ? COUNTER_PROCESS_EXITING : COUNTER_READ_INTERP);
        return 0;
    }
    if (!tstate) {
        /* Before Py_Initialize has created the main thread state, or after finalization. */
        count(COUNTER_NO_INTERPRETER);
        return 0;
    }
    for (int i = 0; i < PY_MAX_THREADS_SCAN && tstate; i++) {
        if (read_u64(tstate + offsets->tstate_thread_id) == key.fsbase) {
            bpf_map_update_elem(&thread_states, &key, &tstate, BPF_ANY);
            return tstate;
        }
        tstate = read_u64(tstate + offsets->tstate_next);
    }
    count(COUNTER_NO_THREAD_STATE);
    return 0;
}

/* The frame the thread is executing: tstate->frame, tstate->cframe->current_frame or
 * tstate->current_frame depending on the version. */
static __always_inline __u64 current_frame(const struct py_offsets *offsets, __u64 tstate)
{
    __u64 frame = read_u64(tstate + offsets->tstate_frame);
    if (frame && offsets->cframe_current_frame != PY_OFFSET_NONE)
        frame = read_u64(frame + offsets->cframe_current_frame);
    return frame;
}

/* The tail-call table, filled by libbpf at load time from this static initializer. */
int walk_python(struct bpf_perf_event_data *ctx);
struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, PROG_SLOT_COUNT);
    __type(key, __u32);
    __array(values, int(void *));
} programs SEC(".maps") = {
    .values = { [PROG_PY_WALK] = (void *)&walk_python },
};

/*
 * Reads one frame at state->frame into the record and advances state->frame to its caller. Returns false
 * when the walk must stop (end of chain, failed read, record full). The cursor lives in the map value,
 * not in registers, so every iteration looks the same to the verifier and its states prune.
 */
static __always_inline bool walk_one_frame(struct walk_state *state)
{
    const struct py_offsets *offsets = &state->offsets;
    __u64 frame = state->frame;
    __u32 frames = state->sample.header.py_frame_count;
    if (!frame || frames >= PY_MAX_FRAMES)
        return false;

    __u32 read_size = offsets->frame_read_size;
    if (read_size > PY_FRAME_READ_MAX)
        read_size = PY_FRAME_READ_MAX;
    if (bpf_probe_read_user(state->frame_buf, read_size, (const void *)frame) != 0) {
        count(COUNTER_READ_FRAME);
        state->sample.header.flags |= SAMPLE_READ_ERROR;
        state->frame = 0;
        return false;
    }
    __u64 code = frame_u64(state, offsets->frame_code);
    state->frame = frame_u64(state, offsets->frame_previous);

    /* Shim frames the interpreter pushes for calls from C (3.12+) carry no Python code. */
    if (offsets->frame_owner != PY_OFFSET_NONE &&
        state->frame_buf[offsets->frame_owner & (PY_FRAME_READ_MAX - 1)] == offsets->owner_cstack)
        return true;

    __u32 instr = offsets->instr_kind == PY_INSTR_LASTI ? frame_u32(state, offsets->frame_instr)
                                                        : (__u32)(frame_u64(state, offsets->frame_instr) - code);
    __u64 window = 0;
    if (code && bpf_probe_read_user(&window, sizeof(window), (const void *)(code + offsets->code_checksum)) != 0)
        count(COUNTER_READ_CODE);

    struct py_frame *out = py_frame_slot(state, frames);
    out->code = code;
    out->instr = instr;
    out->checksum = (__u32)((window * 0x9E3779B97F4A7C15ULL) >> 32);
    state->sample.header.py_frame_count = frames + 1;
    return true;
}

/*
 * Walks up to PY_FRAMES_PER_CALL frames, leaf first, then tail-calls itself for the next batch or sends
 * the record. Per frame: one read of the frame struct and one 8-byte read of the code object for the
 * address-reuse checksum.
 */
SEC("perf_event")
int walk_python(struct bpf_perf_event_data *ctx)
{
    __u32 zero = 0;
    struct walk_state *state = bpf_map_lookup_elem(&walk_states, &zero);
    if (!state)
        return 0;

    for (int i = 0; i < PY_FRAMES_PER_CALL; i++) {
        if (!walk_one_frame(state))
            break;
    }

    if (state->frame && state->tail_calls + 1 < PY_MAX_TAIL_CALLS) {
        state->tail_calls++;
        bpf_tail_call(ctx, &programs, PROG_PY_WALK);
        count(COUNTER_TAIL_CALL_FAILED);
        state->sample.header.flags |= SAMPLE_TAIL_CALL_FAILED;
    }
    if (state->frame) {
        count(COUNTER_TRUNCATED);
        state->sample.header.flags |= SAMPLE_TRUNCATED;
    }
    emit(state);
    return 0;
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    const struct py_process *process = bpf_map_lookup_elem(&processes, &tgid);
    if (!process)
        return 0;

    __u32 zero = 0;
    struct walk_state *state = bpf_map_lookup_elem(&walk_states, &zero);
    if (!state)
        return 0;
    struct sample_header *header = &state->sample.header;
    header->time_ns = bpf_ktime_get_ns();
    header->pid = tgid;
    header->tid = (__u32)pid_tgid;
    header->cpu = bpf_get_smp_processor_id();
    header->py_frame_count = 0;
    header->flags = 0;
    header->tstate = 0;
    bpf_get_current_comm(header->comm, sizeof(header->comm));
    /* The kernel's own unwinder; empty (0 bytes) when the tick interrupted user mode. */
    long kernel_bytes = collect_kernel_stacks ? bpf_get_stack(ctx, state->sample.body, KERNEL_MAX_FRAMES * 8, 0) : 0;
    header->kernel_frame_count = kernel_bytes > 0 ? kernel_bytes / 8 : 0;
    state->offsets = process->offsets;
    state->tail_calls = 0;
    state->frame = 0;

    __u64 tstate = find_thread_state(process, tgid);
    __u64 frame = tstate ? current_frame(&state->offsets, tstate) : 0;
    header->tstate = tstate;
    if (!frame) {
        header->flags |= SAMPLE_NO_PYTHON;
        emit(state);
        return 0;
    }
    state->frame = frame;
    bpf_tail_call(ctx, &programs, PROG_PY_WALK);
    count(COUNTER_TAIL_CALL_FAILED);
    header->flags |= SAMPLE_TAIL_CALL_FAILED;
    emit(state);
    return 0;
}

