"""A process with a thread that sleeps and a thread that burns CPU, for `pybpfprof dump`'s integration tests.
Runs on CPython 3.8 and later.

    sleeper.py [--seconds S]

A thread named "sleeper" blocks in time.sleep inside sleeping_function(), never waking while the test runs (a
sampler never sees it: it takes no CPU). The main thread spins in burn_cpu() and counts its loops. Prints
"main-tid N" and "sleeper-tid N" (native thread ids), then "ready"; exits after S seconds (default 30).
"""
import argparse
import sys
import threading
import time


def sleeping_function(native_ids, started):
    native_ids.append(threading.get_native_id())
    started.set()
    while True:
        time.sleep(3600)  # LINE:sleeper-sleep


def burn_cpu(deadline):
    count = 0
    while time.monotonic() < deadline:  # LINE:burn-loop
        count += 1  # LINE:burn-add
    return count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    arguments = parser.parse_args()
    native_ids = []
    started = threading.Event()
    sleeper = threading.Thread(target=sleeping_function, args=(native_ids, started), name="sleeper", daemon=True)
    sleeper.start()
    started.wait()
    print("main-tid", threading.get_native_id())
    print("sleeper-tid", native_ids[0])
    print("ready", flush=True)
    burn_cpu(time.monotonic() + arguments.seconds)  # LINE:main-burn
    return 0


if __name__ == "__main__":
    sys.exit(main())  # LINE:module-main
