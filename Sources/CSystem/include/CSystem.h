/* System calls Swift's Glibc module does not expose (they sit behind _GNU_SOURCE, which the
 * implementation file defines so this header stays neutral for module imports). */
#ifndef CSYSTEM_H
#define CSYSTEM_H

/* process_vm_readv(2) of one contiguous range: bytes read, or -errno. */
long csystem_read_process_memory(int pid, unsigned long address, void *buffer, unsigned long size);

#endif
