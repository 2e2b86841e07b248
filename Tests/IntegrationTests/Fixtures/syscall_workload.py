"""Spends its time in the kernel: read(2) of 1 MiB from /dev/zero, for SECONDS (argv[1]) seconds of CPU time."""
import os
import sys
import time


def read_zeros(descriptor):
    return os.read(descriptor, 1 << 20)  # LINE:read-call


def main(seconds):
    descriptor = os.open("/dev/zero", os.O_RDONLY)
    # CPU time (the kernel's, mostly): a profiler samples as much of it on a busy machine as on an idle one.
    end = time.process_time() + seconds
    while time.process_time() < end:
        read_zeros(descriptor)


main(float(sys.argv[1]))
