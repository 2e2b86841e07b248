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

/* 64 KiB keeps the tail of a verifier log, which is where the reason for a rejection is. */
static char libbpf_log[64 * 1024];
static size_t libbpf_log_length;

static int append_libbpf_log(enum libbpf_print_level level, const char *format, va_list args)
{
    if (level == LIBBPF_DEBUG)
        return 0;
    char line[4096];
    int length = vsnprintf(line, sizeof(line), format, args);
    if (length <= 0)
        return 0;
    if ((size_t)length >= sizeof(line))
        length = sizeof(line) - 1;
    if (libbpf_log_length + (size_t)length >= sizeof(libbpf_log)) {
        /* Keep the newest half. */
        size_t keep = sizeof(libbpf_log) / 2;
        memmove(libbpf_log, libbpf_log + libbpf_log_length - keep, keep);
        libbpf_log_length = keep;
    }
    memcpy(libbpf_log + libbpf_log_length, line, (size_t)length);
    libbpf_log_length += (size_t)length;
    libbpf_log[libbpf_log_length] = 0;
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
