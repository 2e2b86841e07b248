/* zlib's gzip encoder and decoder, for formats that are gzip-compressed (pprof). */
#ifndef CZLIB_H
#define CZLIB_H

#include <stddef.h>

/* Compresses `size` bytes into a gzip stream (RFC 1952) in a malloc'ed buffer, which the caller frees.
 * Returns 0 and sets *output / *output_size, or a negative zlib error. */
int czlib_gzip(const void *input, size_t size, unsigned char **output, size_t *output_size);

/* czlib_gunzip's result when the stream decompresses to more than `limit` bytes (a gzip bomb). */
#define CZLIB_PAST_LIMIT (-100)

/* Decompresses one gzip stream of `size` bytes into a malloc'ed buffer of at most `limit` bytes, which the caller frees.
 * Returns 0 and sets *output / *output_size; CZLIB_PAST_LIMIT when the stream holds more than `limit` bytes; or a
 * negative zlib error (Z_DATA_ERROR for a damaged or truncated stream). */
int czlib_gunzip(const void *input, size_t size, size_t limit, unsigned char **output, size_t *output_size);

#endif
