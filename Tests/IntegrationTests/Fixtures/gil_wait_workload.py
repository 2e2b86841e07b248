"""A thread that keeps wanting the GIL while another holds it: for --mode wall's [waiting for the GIL].

Usage: gil_wait_workload.py SECONDS
  A spinner thread runs pure Python for SECONDS of wall time (default 2). Meanwhile the main thread, in
  wants_the_gil, sleeps a millisecond at a time and wakes into Python code: each wake-up waits for the spinner to
  drop the GIL, which it does when asked, after the switch interval (5 ms; 2.7: every 100 bytecodes). Prints
  "main-tid N" and "spinner-tid N".
"""
from __future__ import print_function

import ctypes
import sys
import threading
import time

clock = getattr(time, "perf_counter", None) or time.time


def native_thread_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86_64


def spin(deadline, ids):
    ids.append(native_thread_id())
    n = 0
    while clock() < deadline:
        n += 1


def wants_the_gil(deadline):
    wakeups = 0
    while clock() < deadline:
        time.sleep(0.001)
        wakeups += 1
    return wakeups


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    deadline = clock() + seconds
    ids = []
    spinner = threading.Thread(target=spin, args=(deadline, ids))
    spinner.start()
    while not ids:
        time.sleep(0.001)
    print("main-tid", native_thread_id())
    print("spinner-tid", ids[0])
    sys.stdout.flush()
    wants_the_gil(deadline)
    spinner.join()


if __name__ == "__main__":
    main()
