"""The control condition of bench-overhead: the same cpu-clock perf events pybpfprof opens (one per CPU,
every process, a fixed period of 1/RATE s of CPU) with no BPF program attached, held until the target
exits. What it costs the target is the price of the timer interrupts alone; pybpfprof's own cost is the
rest.

    perf_events_only.py --pid PID --rate HZ
"""
import argparse
import ctypes
import os
import struct
import sys
import time

SYS_PERF_EVENT_OPEN = 298  # x86_64
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_FLAG_FD_CLOEXEC = 8
ATTR_SIZE = 128


def open_cpu_clock(cpu, period_ns):
    # perf_event_attr: type, size, config, sample_period, sample_type, read_format, flag bits (all 0:
    # enabled), then zeros.
    attr = struct.pack("<IIQQQQQ", PERF_TYPE_SOFTWARE, ATTR_SIZE, PERF_COUNT_SW_CPU_CLOCK, period_ns, 0, 0, 0)
    buffer = ctypes.create_string_buffer(attr.ljust(ATTR_SIZE, b"\0"), ATTR_SIZE)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(SYS_PERF_EVENT_OPEN, buffer, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        sys.exit(f"perf_event_open on CPU {cpu}: {os.strerror(ctypes.get_errno())}")
    return fd


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--rate", type=int, required=True)
    arguments = parser.parse_args()
    descriptors = [open_cpu_clock(cpu, 1_000_000_000 // arguments.rate) for cpu in sorted(os.sched_getaffinity(0))]
    print(f"holding {len(descriptors)} cpu-clock events at {arguments.rate} Hz", flush=True)
    while os.path.exists(f"/proc/{arguments.pid}"):
        time.sleep(0.05)


if __name__ == "__main__":
    main()
