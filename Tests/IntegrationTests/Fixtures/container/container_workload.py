"""A workload for pybpfprof's container tests: runs inside a private root (only its own Python, os and time) or on
the host. Runs on CPython 3.8 and later.

Usage: container_workload.py python|native SECONDS
  python: calls hot_in_container(), a Python loop, until SECONDS have passed.
  native: calls native_in_container(), which calls hotext.spin (Fixtures/container/hotext.c, built beside this file
          as hotext.so), where the time goes, in a static C function.
Prints "ready" once it is about to start, "done" at the end.
"""
import os
import sys
import time


def hot_in_container(rounds):
    total = 0
    for number in range(rounds):
        total += number * number  # LINE:container-hot
    return total


def native_in_container(rounds):
    import hotext

    return hotext.spin(rounds)  # LINE:container-native


def main():
    mode, seconds = sys.argv[1], float(sys.argv[2])
    if mode == "native":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import hotext  # noqa: F401  loaded before "ready": its mapping is known when the profiler attaches
        work, rounds = native_in_container, 2000000
    else:
        work, rounds = hot_in_container, 20000
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        work(rounds)
    print("done", flush=True)


main()
