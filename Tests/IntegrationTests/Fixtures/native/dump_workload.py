"""Threads for `pybpfprof dump`'s test of running threads. Runs on CPython 3.8 and later.

Usage: dump_workload.py EXTENSION_DIR SECONDS
  EXTENSION_DIR holds callback_ext built for this interpreter (NativeFixtures.buildCallbackExtension).

A thread named "busy" keeps a CPU busy for SECONDS, almost all of it in C:
    busy() -> ext_outer_native (C) -> callback() -> ext_inner_native (C)
so whenever it is looked at, ext_outer_native sits between busy and callback, and most of the time
ext_inner_native is the innermost frame. A thread named "sleeper" blocks in time.sleep inside
sleeping_function(); the main thread waits for the busy one. Prints "busy-tid N" and "sleeper-tid N" (native
thread ids), then "ready".

The tests find expected line numbers from the `# LINE:name` markers below, never from fixed numbers.
"""
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])

import callback_ext  # noqa: E402

# About a third of a millisecond of C arithmetic per callback() call.
INNER_ITERATIONS = 200000


def callback():
    return callback_ext.inner_native(INNER_ITERATIONS)  # LINE:callback-inner


def busy(native_ids, deadline):
    native_ids["busy"] = threading.get_native_id()
    while time.monotonic() < deadline:
        callback_ext.outer_native(callback, 1000)  # LINE:busy-outer


def sleeping_function(native_ids):
    native_ids["sleeper"] = threading.get_native_id()
    while True:
        time.sleep(3600)  # LINE:sleeper-sleep


def main(seconds):
    native_ids = {}
    sleeper = threading.Thread(target=sleeping_function, args=(native_ids,), name="sleeper", daemon=True)
    sleeper.start()
    worker = threading.Thread(target=busy, args=(native_ids, time.monotonic() + seconds), name="busy")
    worker.start()
    while len(native_ids) < 2:
        time.sleep(0.01)
    print("busy-tid", native_ids["busy"])
    print("sleeper-tid", native_ids["sleeper"])
    print("ready", flush=True)
    worker.join()  # LINE:main-join
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[2])))
