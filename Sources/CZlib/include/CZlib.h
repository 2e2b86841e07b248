/* zlib's gzip encoder, for formats that are gzip-compressed (pprof). */
#ifndef CZLIB_H
#define CZLIB_H

#include <stddef.h>

/* Compresses `size` bytes into a gzip stream (RFC 1952) in a malloc'ed buffer, which the caller frees.
 * Returns 0 and sets *output / *output_size, or a negative zlib error. */
int czlib_gzip(const void *input, size_t size, unsigned char **output, size_t *output_size);

#endif
