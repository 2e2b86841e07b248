#include "CZlib.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int czlib_gzip(const void *input, size_t size, unsigned char **output, size_t *output_size)
{
    z_stream stream;
    memset(&stream, 0, sizeof(stream));
    /* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
    int result = deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    if (result != Z_OK)
        return result < 0 ? result : -1;
    uLong bound = deflateBound(&stream, (uLong)size);
    unsigned char *buffer = malloc(bound);
    if (!buffer) {
        deflateEnd(&stream);
        return Z_MEM_ERROR;
    }
    stream.next_in = (Bytef *)input;
    stream.avail_in = (uInt)size;
    stream.next_out = buffer;
    stream.avail_out = (uInt)bound;
    result = deflate(&stream, Z_FINISH);
    deflateEnd(&stream);
    if (result != Z_STREAM_END) {
        free(buffer);
        return result < 0 ? result : Z_BUF_ERROR;
    }
    *output = buffer;
    *output_size = stream.total_out;
    return 0;
}

int czlib_gunzip(const void *input, size_t size, size_t limit, unsigned char **output, size_t *output_size)
{
    z_stream stream;
    memset(&stream, 0, sizeof(stream));
    /* windowBits 15 + 16: a gzip stream only. */
    if (inflateInit2(&stream, 15 + 16) != Z_OK)
        return Z_MEM_ERROR;
    size_t capacity = size < limit / 4 ? size * 4 + 64 : limit;
    unsigned char *buffer = malloc(capacity ? capacity : 1);
    int result = buffer ? Z_OK : Z_MEM_ERROR;
    const unsigned char *next = input;
    size_t left = size;
    while (result == Z_OK) {
        if (stream.total_out == capacity) {
            if (capacity >= limit) {
                result = CZLIB_PAST_LIMIT;
                break;
            }
            size_t grown = capacity > limit / 2 ? limit : capacity * 2;
            unsigned char *larger = realloc(buffer, grown);
            if (!larger) {
                result = Z_MEM_ERROR;
                break;
            }
            buffer = larger;
            capacity = grown;
        }
        /* zlib counts in 32-bit units: feed and drain at most 1 GiB at a time. */
        uInt in_chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
        size_t room = capacity - stream.total_out;
        stream.next_in = (Bytef *)next;
        stream.avail_in = in_chunk;
        stream.next_out = buffer + stream.total_out;
        stream.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
        result = inflate(&stream, Z_NO_FLUSH);
        size_t consumed = in_chunk - stream.avail_in;
        next += consumed;
        left -= consumed;
        if (result == Z_BUF_ERROR && left > 0 && stream.total_out == capacity)
            result = Z_OK; /* out of room only: grow and go on */
        else if (result == Z_OK && left == 0 && stream.avail_out > 0)
            result = Z_DATA_ERROR; /* the input ended before the stream did */
    }
    size_t total = stream.total_out;
    inflateEnd(&stream);
    if (result != Z_STREAM_END) {
        free(buffer);
        return result == Z_OK ? Z_DATA_ERROR : (result < 0 ? result : Z_DATA_ERROR);
    }
    *output = buffer;
    *output_size = total;
    return 0;
}
