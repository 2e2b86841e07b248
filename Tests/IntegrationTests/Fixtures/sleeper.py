"""A process with a thread that sleeps and a thread that burns CPU, for `pybpfprof dump`'s integration tests.
Runs on CPython 2.7 and 3.6 and later.

    sleeper.py [--seconds S]

A thread named "sleeper" blocks in time.sleep inside sleeping_function(), never waking while the test runs (a
sampler never sees it: it takes no CPU). The main thread spins in burn_cpu() and counts its loops. Prints
"main-tid N" and "sleeper-tid N" (native thread ids), then "ready"; exits after S seconds (default 30).
"""
from __future__ import print_function

import argparse
import ctypes
import sys
import threading
import time

# 3.3+ has time.monotonic, 3.8+ threading.get_native_id; 2.7, 3.6 and 3.7 get them here.
monotonic = getattr(time, "monotonic", time.time)


def native_thread_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86_64


def say(*words):
    print(*words)
    sys.stdout.flush()


def sleeping_function(native_ids, started):
    native_ids.append(native_thread_id())
    started.set()
    while True:
        time.sleep(3600)  # LINE:sleeper-sleep


def burn_cpu(deadline):
    count = 0
    while monotonic() < deadline:  # LINE:burn-loop
        count += 1  # LINE:burn-add
    return count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    arguments = parser.parse_args()
    native_ids = []
    started = threading.Event()
    sleeper = threading.Thread(target=sleeping_function, args=(native_ids, started), name="sleeper")
    sleeper.daemon = True  # 2.7's Thread takes no daemon argument
    sleeper.start()
    started.wait()
    print("main-tid", native_thread_id())
    print("sleeper-tid", native_ids[0])
    say("ready")
    burn_cpu(monotonic() + arguments.seconds)  # LINE:main-burn
    return 0


if __name__ == "__main__":
    sys.exit(main())  # LINE:module-main
