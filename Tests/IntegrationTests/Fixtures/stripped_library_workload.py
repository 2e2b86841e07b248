"""Spends its CPU time in a stripped library, for the test of native frames named by the FDE that covers them
(StrippedLibraryFramesTests): the system's zlib (Debian ships libz with .dynsym only, no .symtab), or orjson, a Rust
extension whose wheel on PyPI is stripped the same way.

Usage: stripped_library_workload.py zlib|orjson CPU_SECONDS
  Prints "library PATH", the file of that library this process mapped (from /proc/self/maps), then works in it until
  it has used CPU_SECONDS of CPU time (not wall time: a busy machine stretches the run, never shortens what is
  sampled), and exits 0.
"""
import sys
import time


def mapped(file_name_prefix):
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and "x" in fields[1] and fields[5].rsplit("/", 1)[-1].startswith(file_name_prefix):
                return fields[5]
    return None


def main():
    kind, seconds = sys.argv[1], float(sys.argv[2])
    if kind == "zlib":
        import zlib
        # Repetitive enough that the match search does most of the work, as in a log or JSON payload.
        data = b"".join(b"record %06d: status=ok latency=%03dms\n" % (i, i % 997) for i in range(20000))
        work, prefix = lambda: zlib.compress(data, 9), "libz.so"
    elif kind == "orjson":
        import orjson
        # Floats, strings to escape and nested containers: serialization spread over several of its functions.
        data = [{"id": i, "name": "item \"%d\"\n" % i, "price": i * 1.25, "tags": ["a", "b", str(i)], "ok": i % 2 == 0}
                for i in range(2000)]
        work, prefix = lambda: orjson.dumps(data), "orjson."
    else:
        sys.exit("unknown library: " + kind)
    print("library", mapped(prefix), flush=True)
    end = time.process_time() + seconds
    while time.process_time() < end:
        work()


if __name__ == "__main__":
    main()
