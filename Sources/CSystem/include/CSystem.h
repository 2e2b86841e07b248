/* System calls Swift's Glibc module does not expose (they sit behind _GNU_SOURCE, which the
 * implementation file defines so this header stays neutral for module imports). */
#ifndef CSYSTEM_H
#define CSYSTEM_H

/* process_vm_readv(2) of one contiguous range: bytes read, or -errno. */
long csystem_read_process_memory(int pid, unsigned long address, void *buffer, unsigned long size);

/* get_robust_list(2) of thread `tid`: the address of the robust futex list head it registered (glibc registers
 * one inside each thread's struct pthread), 0 when it registered none; or -errno. A permission check like
 * ptrace's, but no attach: the thread is not stopped. glibc has no wrapper. */
long csystem_robust_list_head(int tid, unsigned long *head);

#include <stddef.h>
#include <stdint.h>

/* openat2(2) of `path` with `flags` (O_*), resolved with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: as if `root_fd`
 * were the root directory, so that neither `..` nor an absolute symbolic link leaves it, and no /proc magic link
 * is followed. glibc before 2.39 has no wrapper. A descriptor, or -errno. */
int csystem_open_in_root(int root_fd, const char *path, int flags);

/* An O_PATH descriptor of directory `path` (O_PATH is behind _GNU_SOURCE), to resolve paths from; or -errno. */
int csystem_open_directory_path(const char *path);

/* fstatfs(2)'s f_type of the file system holding `fd` (sys/vfs.h is not in Swift's Glibc module), or -errno. */
long csystem_file_system_type(int fd);

/* prctl(PR_SET_NAME): names the calling thread (its comm), cut to 15 bytes by the kernel. prctl is variadic, which
 * Swift cannot call. 0, or -errno. */
int csystem_set_thread_name(const char *name);

/* C++ (Itanium ABI) demangling through libstdc++'s __cxa_demangle, which is C++ and so not importable into
 * Swift directly. Returns a malloc'd NUL-terminated name (release it with free) or NULL when `mangled` is not a
 * valid mangled name or memory ran out. */
char *csystem_demangle_cxx(const char *mangled);

/* The Swift runtime's demangler, exported by libswiftCore (always linked into a Swift program). With a NULL
 * output buffer it returns a malloc'd name, or NULL if the input is not a Swift mangled name; flags must be 0. */
char *swift_demangle(const char *mangledName, size_t mangledNameLength, char *outputBuffer, size_t *outputBufferSize,
                     uint32_t flags);


/* elfutils' libdebuginfod, loaded with dlopen when first asked for (so that the binary runs where it is not
 * installed): 1 if libdebuginfod.so.1 and the functions used are there, else 0 (reason in `why`, up to its size). */
int csystem_debuginfod_load(char *why, size_t why_size);

/* debuginfod_find_debuginfo of a binary build ID, with a client of its own (a client serves one thread): the
 * servers in DEBUGINFOD_URLS are asked, the answer kept in libdebuginfod's on-disk cache. Gives up once
 * CLOCK_MONOTONIC passes `deadline_ns` or `*cancel` becomes non-zero (checked by the transfer's progress callback).
 * A descriptor of the debug file, its path in the cache in `*path` (free() it); or -errno (-ENOSYS: no server set,
 * -ENOENT: no server has it, -ETIME: time limit, -ECANCELED: cancelled). Call csystem_debuginfod_load first. */
int csystem_debuginfod_find_debuginfo(const unsigned char *build_id, int build_id_size, uint64_t deadline_ns,
                                      const volatile int *cancel, char **path);

#endif
