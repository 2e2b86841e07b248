#include "CBPF.h"

#include <bpf/btf.h>

#include <errno.h>
#include <linux/perf_event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int cbpf_open_cpu_clock(int pid, int cpu, unsigned long long period_ns)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    /* A fixed period in CPU nanoseconds: every sample stands for the same CPU time. */
    attr.sample_period = period_ns;
    attr.disabled = 0;
    attr.inherit = 0;
    int fd = (int)syscall(SYS_perf_event_open, &attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* 4 MiB keeps the tail of a verifier log, which is where the reason for a rejection is. */
static char libbpf_log[4 * 1024 * 1024];
static size_t libbpf_log_length;

static int append_libbpf_log(enum libbpf_print_level level, const char *format, va_list args)
{
    if (level == LIBBPF_DEBUG)
        return 0;
    /* One message may be a whole verifier log (megabytes): format it whole, keep its tail. */
    va_list copy;
    va_copy(copy, args);
    int length = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (length <= 0)
        return 0;
    char *message = malloc((size_t)length + 1);
    if (!message)
        return 0;
    vsnprintf(message, (size_t)length + 1, format, args);
    const char *text = message;
    size_t size = (size_t)length, capacity = sizeof(libbpf_log) - 1;
    if (size > capacity / 2) {
        text += size - capacity / 2;
        size = capacity / 2;
    }
    if (libbpf_log_length + size > capacity) {
        /* Keep the newest part, so that this message fits. */
        size_t keep = capacity - size < libbpf_log_length ? capacity - size : libbpf_log_length;
        memmove(libbpf_log, libbpf_log + libbpf_log_length - keep, keep);
        libbpf_log_length = keep;
    }
    memcpy(libbpf_log + libbpf_log_length, text, size);
    libbpf_log_length += size;
    libbpf_log[libbpf_log_length] = 0;
    free(message);
    return length;
}

void cbpf_capture_libbpf_log(void) { libbpf_set_print(append_libbpf_log); }
const char *cbpf_libbpf_log(void) { return libbpf_log; }
void cbpf_clear_libbpf_log(void)
{
    libbpf_log_length = 0;
    libbpf_log[0] = 0;
}

int cbpf_set_constant(struct bpf_object *object, const char *name, const void *value, size_t size)
{
    struct bpf_map *rodata = NULL;
    struct bpf_map *map;
    bpf_object__for_each_map(map, object) {
        const char *map_name = bpf_map__name(map);
        size_t length = strlen(map_name);
        if (length >= 7 && strcmp(map_name + length - 7, ".rodata") == 0)
            rodata = map;
    }
    struct btf *btf = bpf_object__btf(object);
    if (!rodata || !btf)
        return -ENOENT;
    int section_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
    if (section_id < 0)
        return -ENOENT;
    const struct btf_type *section = btf__type_by_id(btf, section_id);
    const struct btf_var_secinfo *variable = btf_var_secinfos(section);
    for (int i = 0; i < btf_vlen(section); i++, variable++) {
        const struct btf_type *type = btf__type_by_id(btf, variable->type);
        if (strcmp(btf__name_by_offset(btf, type->name_off), name) != 0)
            continue;
        if (variable->size != size)
            return -EINVAL;
        /* libbpf hands out the initial value read-only: change a copy and give it back. */
        size_t data_size = 0;
        const void *current = bpf_map__initial_value(rodata, &data_size);
        if (!current || variable->offset + size > data_size)
            return -EINVAL;
        char *data = malloc(data_size);
        if (!data)
            return -ENOMEM;
        memcpy(data, current, data_size);
        memcpy(data + variable->offset, value, size);
        int result = bpf_map__set_initial_value(rodata, data, data_size);
        free(data);
        return result;
    }
    return -ENOENT;
}

/* Whether a perf_event program may use a hash map that is not preallocated (BPF_F_NO_PREALLOC). Kernels before 6.1
 * refuse it ("perf_event programs can only use preallocated hash map"): a program may run in NMI context, where the
 * older kernels could not allocate. Probed by loading a minimal program that looks such a map up. 1 yes, 0 no, -errno
 * when the probe itself could not run. */
int cbpf_probe_perf_event_non_preallocated_hash(void)
{
    LIBBPF_OPTS(bpf_map_create_opts, map_options, .map_flags = BPF_F_NO_PREALLOC);
    int map = bpf_map_create(BPF_MAP_TYPE_HASH, "pybpfprof_probe", 4, 8, 1, &map_options);
    if (map < 0)
        return -errno;
    struct bpf_insn program[] = {
        /* *(u32 *)(r10 - 4) = 0 */
        { .code = BPF_ST | BPF_MEM | BPF_W, .dst_reg = BPF_REG_10, .off = -4, .imm = 0 },
        /* r2 = r10 - 4 */
        { .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_10 },
        { .code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = BPF_REG_2, .imm = -4 },
        /* r1 = map (two instructions: ld_imm64 with a map fd) */
        { .code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = BPF_REG_1, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map },
        { 0 },
        { .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_map_lookup_elem },
        /* return 0 */
        { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
        { .code = BPF_JMP | BPF_EXIT },
    };
    int fd = bpf_prog_load(BPF_PROG_TYPE_PERF_EVENT, "pybpfprof_probe", "GPL", program,
                           sizeof(program) / sizeof(program[0]), NULL);
    int error = errno;
    close(map);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    return error == EINVAL ? 0 : -error;
}

/* libbpf_probe_bpf_helper for perf_event programs: 1 if the running kernel has the helper, 0 if not, -errno. */
int cbpf_probe_perf_event_helper(int helper)
{
    return libbpf_probe_bpf_helper(BPF_PROG_TYPE_PERF_EVENT, (enum bpf_func_id)helper, NULL);
}

/* Whether the kernel has the BPF ring buffer (Linux 5.8): 1, 0 or -errno. */
int cbpf_probe_ring_buffer(void)
{
    return libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL);
}

int cbpf_sched_switch_arguments(const char *btf_path)
{
    struct btf *btf = btf_path ? btf__parse(btf_path, NULL) : btf__load_vmlinux_btf();
    if (!btf)
        return errno ? -errno : -ENOENT;
    int result = -ENOENT;
    /* typedef void (*btf_trace_sched_switch)(void *__data, bool preempt, ...): the arguments less __data. */
    int id = btf__find_by_name_kind(btf, "btf_trace_sched_switch", BTF_KIND_TYPEDEF);
    const struct btf_type *type = id > 0 ? btf__type_by_id(btf, id) : NULL;
    type = type ? btf__type_by_id(btf, type->type) : NULL;
    type = type && btf_is_ptr(type) ? btf__type_by_id(btf, type->type) : NULL;
    if (type && btf_is_func_proto(type) && btf_vlen(type) > 0)
        result = btf_vlen(type) - 1;
    btf__free(btf);
    return result;
}

int cbpf_probe_bpf_refusal(void)
{
    /* An array map: every kernel with bpf(2) has it, so a failure is a refusal. */
    int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, NULL, 4, 4, 1, NULL);
    if (fd < 0) return errno ? errno : EPERM;
    close(fd);
    return 0;
}

#define PYBPFPROF_COUNTER_LABEL(name, label, is_error) [name] = {label, is_error},
static const struct {
    const char *label;
    int is_error;
} counter_labels[COUNTER_COUNT] = {PYBPFPROF_COUNTERS(PYBPFPROF_COUNTER_LABEL)};
#undef PYBPFPROF_COUNTER_LABEL

const char *cbpf_counter_label(unsigned int counter, int *is_error)
{
    if (counter >= COUNTER_COUNT) return NULL;
    *is_error = counter_labels[counter].is_error;
    return counter_labels[counter].label;
}

/*
 * The kernel's types the BPF program's CO-RE relocations read, cut out of /sys/kernel/btf/vmlinux (see KernelTypes.swift).
 * Parsing the whole of vmlinux's BTF (some 150,000 types) is most of libbpf's work at a load; this copy holds only the
 * named roots and what they hold by value, and libbpf relocates against it just as against vmlinux's (btf_custom_path).
 *
 * What a relocation can reach from a root is copied whole: every member of a struct or union, arrays, enums, typedefs
 * and modifiers. Pointers are cut to `void *`: a relocation through a pointer (task->signal->live) starts again at the
 * pointed-to struct's own root, found by name, and libbpf checks only that a pointer is a pointer.
 */
struct btf_copy {
    const struct btf *source;
    struct btf *target;
    int *copied; /* source id -> target id; 0: not copied yet */
};

static int copy_type(struct btf_copy *copy, __u32 id);

/* The types of a struct's members or a prototype's parameters (`count` entries `stride` bytes apart, `type` pointing at
 * the first one's type id), copied into a new *copied array first: btf__add_field and btf__add_func_param append to the
 * type added last, so nothing may be added between them. */
static int copy_listed_types(struct btf_copy *copy, const __u32 *type, size_t stride, int count, int **copied)
{
    *copied = calloc(count + 1, sizeof(**copied));
    if (!*copied)
        return -ENOMEM;
    for (int i = 0; i < count; i++, type = (const __u32 *)((const char *)type + stride)) {
        (*copied)[i] = copy_type(copy, *type);
        if ((*copied)[i] < 0)
            return (*copied)[i];
    }
    return 0;
}

static int copy_composite(struct btf_copy *copy, const struct btf_type *type, const char *name)
{
    int count = btf_vlen(type);
    const struct btf_member *members = btf_members(type);
    int *copied = NULL;
    int result = copy_listed_types(copy, &members->type, sizeof(*members), count, &copied);
    if (result == 0)
        result = btf_is_struct(type) ? btf__add_struct(copy->target, name, type->size)
                                     : btf__add_union(copy->target, name, type->size);
    for (int i = 0; result > 0 && i < count; i++) {
        const char *member = btf__name_by_offset(copy->source, members[i].name_off);
        int added = btf__add_field(copy->target, member && *member ? member : NULL, copied[i],
                                   btf_member_bit_offset(type, i), btf_member_bitfield_size(type, i));
        if (added < 0)
            result = added;
    }
    free(copied);
    return result;
}

static int copy_function_prototype(struct btf_copy *copy, const struct btf_type *type)
{
    int count = btf_vlen(type);
    const struct btf_param *params = btf_params(type);
    int *copied = NULL;
    int returned = copy_type(copy, type->type);
    int result = returned < 0 ? returned : copy_listed_types(copy, &params->type, sizeof(*params), count, &copied);
    if (result == 0)
        result = btf__add_func_proto(copy->target, returned);
    for (int i = 0; result > 0 && i < count; i++) {
        const char *param = btf__name_by_offset(copy->source, params[i].name_off);
        int added = btf__add_func_param(copy->target, param && *param ? param : NULL, copied[i]);
        if (added < 0)
            result = added;
    }
    free(copied);
    return result;
}

static int copy_type(struct btf_copy *copy, __u32 id)
{
    if (id == 0)
        return 0;
    if (copy->copied[id])
        return copy->copied[id];
    const struct btf_type *type = btf__type_by_id(copy->source, id);
    if (!type)
        return -EINVAL;
    const char *name = btf__name_by_offset(copy->source, type->name_off);
    if (name && !*name)
        name = NULL;
    int result;
    switch (btf_kind(type)) {
    case BTF_KIND_INT:
        result = btf__add_int(copy->target, name, type->size, btf_int_encoding(type));
        break;
    case BTF_KIND_PTR:
        result = btf__add_ptr(copy->target, 0);
        break;
    case BTF_KIND_ARRAY: {
        const struct btf_array *array = btf_array(type);
        int element = copy_type(copy, array->type);
        int index = element < 0 ? element : copy_type(copy, array->index_type);
        result = index < 0 ? index : btf__add_array(copy->target, index, element, array->nelems);
        break;
    }
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION:
        result = copy_composite(copy, type, name);
        break;
    case BTF_KIND_ENUM: {
        result = btf__add_enum(copy->target, name, type->size);
        const struct btf_enum *values = btf_enum(type);
        for (int i = 0; result > 0 && i < btf_vlen(type); i++) {
            int added = btf__add_enum_value(copy->target, btf__name_by_offset(copy->source, values[i].name_off), values[i].val);
            if (added < 0)
                result = added;
        }
        break;
    }
    case BTF_KIND_ENUM64: {
        result = btf__add_enum64(copy->target, name, type->size, btf_kflag(type));
        const struct btf_enum64 *values = btf_enum64(type);
        for (int i = 0; result > 0 && i < btf_vlen(type); i++) {
            int added = btf__add_enum64_value(copy->target, btf__name_by_offset(copy->source, values[i].name_off),
                                              btf_enum64_value(&values[i]));
            if (added < 0)
                result = added;
        }
        break;
    }
    case BTF_KIND_FWD:
        result = btf__add_fwd(copy->target, name, btf_kflag(type) ? BTF_FWD_UNION : BTF_FWD_STRUCT);
        break;
    case BTF_KIND_TYPEDEF:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_CONST:
    case BTF_KIND_RESTRICT: {
        int referenced = copy_type(copy, type->type);
        if (referenced < 0)
            return referenced;
        switch (btf_kind(type)) {
        case BTF_KIND_TYPEDEF: result = btf__add_typedef(copy->target, name, referenced); break;
        case BTF_KIND_VOLATILE: result = btf__add_volatile(copy->target, referenced); break;
        case BTF_KIND_CONST: result = btf__add_const(copy->target, referenced); break;
        default: result = btf__add_restrict(copy->target, referenced); break;
        }
        break;
    }
    case BTF_KIND_TYPE_TAG:
        /* A tag (__user, __rcu) says nothing a relocation checks. */
        result = copy_type(copy, type->type);
        break;
    case BTF_KIND_FLOAT:
        result = btf__add_float(copy->target, name, type->size);
        break;
    case BTF_KIND_FUNC_PROTO:
        result = copy_function_prototype(copy, type);
        break;
    default:
        /* Functions, variables, sections and declaration tags are not held by value. */
        return -EINVAL;
    }
    if (result > 0)
        copy->copied[id] = result;
    return result;
}

/* A typedef of a pointer to a function prototype (a tracepoint's btf_trace_<name>), copied with its prototype: the
 * parameters say how many arguments the tracepoint passes. */
static int copy_tracepoint_typedef(struct btf_copy *copy, __u32 id)
{
    const struct btf_type *type = btf__type_by_id(copy->source, id);
    const struct btf_type *pointer = type ? btf__type_by_id(copy->source, type->type) : NULL;
    if (!pointer || !btf_is_ptr(pointer))
        return copy_type(copy, id);
    int prototype = copy_type(copy, pointer->type);
    int pointer_id = prototype < 0 ? prototype : btf__add_ptr(copy->target, prototype);
    return pointer_id < 0 ? pointer_id : btf__add_typedef(copy->target, btf__name_by_offset(copy->source, type->name_off), pointer_id);
}

int cbpf_minimal_kernel_btf(const char *const *structs, int struct_count, const char *const *typedefs, int typedef_count,
                            void **image, size_t *size)
{
    struct btf *source = btf__load_vmlinux_btf();
    if (!source)
        return errno ? -errno : -ENOENT;
    struct btf_copy copy = { .source = source, .target = btf__new_empty(),
                             .copied = calloc(btf__type_cnt(source), sizeof(int)) };
    int result = copy.target && copy.copied ? 0 : -ENOMEM;
    for (int i = 0; result >= 0 && i < struct_count; i++) {
        int id = btf__find_by_name_kind(source, structs[i], BTF_KIND_STRUCT);
        if (id > 0)
            result = copy_type(&copy, id);
    }
    for (int i = 0; result >= 0 && i < typedef_count; i++) {
        int id = btf__find_by_name_kind(source, typedefs[i], BTF_KIND_TYPEDEF);
        if (id > 0)
            result = copy_tracepoint_typedef(&copy, id);
    }
    if (result >= 0) {
        __u32 raw_size = 0;
        const void *raw = btf__raw_data(copy.target, &raw_size);
        *image = raw ? malloc(raw_size) : NULL;
        if (*image) {
            memcpy(*image, raw, raw_size);
            *size = raw_size;
            result = 0;
        } else {
            result = -ENOMEM;
        }
    }
    free(copy.copied);
    btf__free(copy.target);
    btf__free(source);
    return result;
}

int cbpf_memory_file(const char *name, const void *bytes, size_t size)
{
    int fd = (int)syscall(SYS_memfd_create, name, 1 /* MFD_CLOEXEC */);
    if (fd < 0)
        return -errno;
    for (size_t written = 0; written < size;) {
        ssize_t count = write(fd, (const char *)bytes + written, size - written);
        if (count < 0 && errno == EINTR)
            continue;
        if (count <= 0) {
            int error = count < 0 ? errno : EIO;
            close(fd);
            return -error;
        }
        written += (size_t)count;
    }
    return fd;
}
