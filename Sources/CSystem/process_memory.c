#define _GNU_SOURCE
#include "CSystem.h"

#include <errno.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

long csystem_read_process_memory(int pid, unsigned long address, void *buffer, unsigned long size)
{
    struct iovec local = { .iov_base = buffer, .iov_len = size };
    struct iovec remote = { .iov_base = (void *)address, .iov_len = size };
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    return n < 0 ? -errno : (long)n;
}

long csystem_robust_list_head(int tid, unsigned long *head)
{
    void *address = NULL;
    size_t length = 0;
    if (syscall(SYS_get_robust_list, tid, &address, &length) != 0)
        return -errno;
    *head = (unsigned long)address;
    return 0;
}
