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
