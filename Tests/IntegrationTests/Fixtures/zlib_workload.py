"""Spends its CPU time in the system's zlib (Debian ships libz stripped: .dynsym only, no .symtab), for the test of
native frames named by the FDE that covers them (StrippedLibraryFramesTests).

Usage: zlib_workload.py CPU_SECONDS
  Prints "libz PATH", the file of the libz this process mapped (from /proc/self/maps), then compresses the same
  buffer at level 9 until it has used CPU_SECONDS of CPU time (not wall time: a busy machine stretches the run, never
  shortens what is sampled), and exits 0.
"""
import sys
import time
import zlib


def mapped_libz():
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and "x" in fields[1] and fields[5].rsplit("/", 1)[-1].startswith("libz.so"):
                return fields[5]
    return None


def main():
    print("libz", mapped_libz(), flush=True)
    # Repetitive enough that the match search does most of the work, as in a log or JSON payload.
    data = b"".join(b"record %06d: status=ok latency=%03dms\n" % (i, i % 997) for i in range(20000))
    end = time.process_time() + float(sys.argv[1])
    while time.process_time() < end:
        zlib.compress(data, 9)


if __name__ == "__main__":
    main()
