"""Spends its time in the kernel: read(2) of 1 MiB from /dev/zero, for SECONDS (argv[1]) seconds."""
import os
import sys
import time


def read_zeros(descriptor):
    return os.read(descriptor, 1 << 20)  # LINE:read-call


def main(seconds):
    descriptor = os.open("/dev/zero", os.O_RDONLY)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        read_zeros(descriptor)


main(float(sys.argv[1]))
