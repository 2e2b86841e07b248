#define _GNU_SOURCE
#include "CSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

int csystem_open_in_root(int root_fd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (__u64)(unsigned)flags,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
    return fd < 0 ? -errno : (int)fd;
}

int csystem_open_directory_path(const char *path)
{
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

long csystem_file_system_type(int fd)
{
    struct statfs status;
    if (fstatfs(fd, &status) != 0)
        return -errno;
    return (long)status.f_type;
}
