"""Threads for `pybpfprof dump`'s test of running threads. Runs on CPython 2.7 and 3.6 and later.

Usage: dump_workload.py EXTENSION_DIR SECONDS
  EXTENSION_DIR holds callback_ext built for this interpreter (NativeFixtures.buildCallbackExtension).

A thread named "busy" keeps a CPU busy for SECONDS, almost all of it in C:
    busy() -> ext_outer_native (C) -> callback() -> ext_inner_native (C)
so whenever it is looked at, ext_outer_native sits between busy and callback, and most of the time
ext_inner_native is the innermost frame. A thread named "sleeper" blocks in time.sleep inside
sleeping_function(); the main thread waits for the busy one, which prints "busy-tid N" and "sleeper-tid N" (native
thread ids), then "ready".

The tests find expected line numbers from the `# LINE:name` markers below, never from fixed numbers.
"""
from __future__ import print_function

import ctypes
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])

import callback_ext  # noqa: E402

# 3.3+ has time.monotonic, 3.8+ threading.get_native_id; 2.7, 3.6 and 3.7 get them here.
monotonic = getattr(time, "monotonic", time.time)


def native_thread_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86_64


def say(*words):
    print(*words)
    sys.stdout.flush()

# About a third of a millisecond of C arithmetic per callback() call.
INNER_ITERATIONS = 200000


def callback():
    return callback_ext.inner_native(INNER_ITERATIONS)  # LINE:callback-inner


def busy(native_ids, seconds):
    native_ids["busy"] = native_thread_id()
    while "sleeper" not in native_ids:
        time.sleep(0.01)
    deadline = monotonic() + seconds
    # The busy thread says "ready" itself, once its loop has run a while: 2.7's GIL would rarely let the main thread
    # run again once this thread is busy, taking the GIL back each time it lets go.
    callback_ext.outer_native(callback, 100)
    print("busy-tid", native_ids["busy"])
    print("sleeper-tid", native_ids["sleeper"])
    say("ready")
    while monotonic() < deadline:
        callback_ext.outer_native(callback, 1000)  # LINE:busy-outer


def sleeping_function(native_ids):
    native_ids["sleeper"] = native_thread_id()
    while True:
        time.sleep(3600)  # LINE:sleeper-sleep


def main(seconds):
    native_ids = {}
    sleeper = threading.Thread(target=sleeping_function, args=(native_ids,), name="sleeper")
    sleeper.daemon = True  # 2.7's Thread takes no daemon argument
    sleeper.start()
    worker = threading.Thread(target=busy, args=(native_ids, seconds), name="busy")
    worker.start()
    worker.join()  # LINE:main-join
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[2])))
