#include "CBPF.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int cbpf_open_thread_cpu_clock(int tid, unsigned long long period_ns)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.sample_period = period_ns;
    /* This thread only: not the threads it starts meanwhile. */
    attr.inherit = 0;
    attr.disabled = 0;
    int fd = (int)syscall(SYS_perf_event_open, &attr, tid, -1 /* whichever CPU it runs on */, -1, PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}
