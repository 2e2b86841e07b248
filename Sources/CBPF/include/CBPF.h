/* The C side of pybpfprof's userspace: libbpf, the record/map layout shared with the BPF program
 * (pybpfprof.h, a symlink to bpf/pybpfprof.h) and the few shims Swift cannot express directly. */
#ifndef CBPF_H
#define CBPF_H

#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "pybpfprof.h"

/* perf_event_open(2) for a software cpu-clock event sampling every period_ns nanoseconds of CPU time: of every
 * process on one CPU (pid -1, cpu N), or of one thread wherever it runs (pid = its tid, cpu -1; not the threads
 * it starts). Returns the fd or -errno. */
int cbpf_open_cpu_clock(int pid, int cpu, unsigned long long period_ns);

/* Sets a `const volatile` global of the BPF program (in .rodata) before load, found by name through the
 * object's BTF. Returns 0, -ENOENT when there is no such variable, -EINVAL when its size is not `size`. */
int cbpf_set_constant(struct bpf_object *object, const char *name, const void *value, size_t size);

/* libbpf's log goes into a bounded buffer instead of stderr, so load failures (the verifier's log)
 * can be reported in one message and successful runs stay quiet. */
void cbpf_capture_libbpf_log(void);
const char *cbpf_libbpf_log(void);
void cbpf_clear_libbpf_log(void);

/* What the running kernel offers, probed by loading minimal programs and maps (see shims.c). Each returns 1 (yes),
 * 0 (no) or -errno (the probe could not run). */
int cbpf_probe_perf_event_non_preallocated_hash(void);
int cbpf_probe_perf_event_helper(int helper);
int cbpf_probe_ring_buffer(void);
/* 0 if bpf(2) may create a map here, else the errno it refused with: EPERM without CAP_BPF (CAP_SYS_ADMIN before 5.8)
 * or under a seccomp filter that blocks bpf(2), as container runtimes' default filters do. Tells "not permitted" from
 * "not supported", which the probes above cannot. */
int cbpf_probe_bpf_refusal(void);
/* How many arguments the sched_switch tracepoint passes a program (3 before Linux 5.18, 4 since: prev_state), from
 * the kernel's BTF, or from the BTF file at btf_path (cbpf_minimal_kernel_btf's, with btf_trace_sched_switch) when not
 * NULL; -errno if it cannot be read. */
int cbpf_sched_switch_arguments(const char *btf_path);

/* A raw BTF image (a file libbpf can parse, for btf_custom_path) holding the kernel's structs named in `structs` with
 * every type they hold by value, pointers cut to void *, and the typedefs named in `typedefs` (tracepoints'
 * btf_trace_<name>) with the prototype they point to; names the kernel lacks are left out. Reads /sys/kernel/btf/vmlinux.
 * Returns 0 with a malloc'ed image in *image (*size bytes), or -errno. */
int cbpf_minimal_kernel_btf(const char *const *structs, int struct_count, const char *const *typedefs, int typedef_count,
                            void **image, size_t *size);
/* A memory file (memfd, close-on-exec) holding `size` bytes, whose /proc/self/fd path libbpf can open; fd or -errno. */
int cbpf_memory_file(const char *name, const void *bytes, size_t size);

/* A counter's label in the recording's summary and whether it counts an error, from PYBPFPROF_COUNTERS in
 * pybpfprof.h; NULL for a value past COUNTER_COUNT. */
const char *cbpf_counter_label(unsigned int counter, int *is_error);

#endif
