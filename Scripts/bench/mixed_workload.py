"""CPU-bound workload for Scripts/bench-mixed: a fixed amount of work on a deep mixed Python/native stack.

Uses the test fixture extension callback_ext (Tests/IntegrationTests/Fixtures/native/callback_ext.c, built
by Scripts/bench-mixed for the interpreter that runs this file; pass the directory holding it). While it
burns CPU the stack is, root first:

    <module> -> main -> timed_work -> descend x DEPTH1 -> caller
        -> ext_outer_native (C) -> callback -> recurse x DEPTH2 -> burn -> ext_inner_native (C)

Nearly all of the CPU time is in ext_inner_native (C arithmetic, no frame pointer: -O2
-fomit-frame-pointer), so nearly every sample has that whole stack. Python frames in the default view:
3 + DEPTH1 + 1 + 1 + DEPTH2 + 1 (with the defaults 3 + 22 + 1 + 1 + 22 + 1 = 50). Native frames: the
interpreter's startup chain (_start ... PyEval_EvalCode), one eval-loop activation per C -> Python
transition and the calls that make each transition (on 3.12 a Python -> Python call adds no native frame),
ext_outer_native and ext_inner_native and whatever the calls into them go through; Scripts/bench-mixed
counts them in pybpfprof's --interpreter-frames view and prints them.

Protocol (as Scripts/bench/overhead_workload.py, so that a profiler can attach before the measured part):
  1. warms up, prints "ready" on stdout and waits for a line on stdin;
  2. does --calls calls of caller() (each: --callbacks-per-call callbacks of --inner-iterations rounds of C),
     timing them with time.perf_counter() (and CPU time with time.process_time());
  3. prints "elapsed_seconds=<float> cpu_seconds=<float> calls=<int> calls_per_second=<float>" and exits.
With --seconds S instead of --calls it runs until S seconds have passed (no stdin wait: for one-off
recordings), and prints the same line.
"""
import argparse
import sys
import time


def load_extension(directory):
    sys.path.insert(0, directory)
    import callback_ext  # noqa: E402  (built by Scripts/bench-mixed)
    return callback_ext


class Work:
    """The parameters the recursion needs, bound once so each frame passes at most its level."""

    def __init__(self, extension, depth1, depth2, nesting, callbacks_per_call, inner_iterations):
        self.extension = extension
        self.depth1 = depth1
        self.depth2 = depth2
        self.nesting = nesting
        self.callbacks_per_call = callbacks_per_call
        self.inner_iterations = inner_iterations
        # outer_native levels still to enter below the current one (callback() reads and restores it).
        self.levels_left = 0


WORK = None


def burn():
    return WORK.extension.inner_native(WORK.inner_iterations)


def recurse(levels_left):
    # One Python frame per level under the innermost callback; on 3.12 no native frame.
    if levels_left > 0:
        return recurse(levels_left - 1)
    return burn()


def callback():
    # Called by ext_outer_native (C): either enters the next outer_native level or recurses to the burn.
    if WORK.levels_left > 0:
        WORK.levels_left -= 1
        try:
            return caller(WORK.callbacks_per_call if WORK.levels_left == 0 else 1)
        finally:
            WORK.levels_left += 1
    return recurse(WORK.depth2)


def caller(callbacks):
    return WORK.extension.outer_native(callback, callbacks)


def descend(levels_left):
    # One Python frame per level above the extension.
    if levels_left > 0:
        return descend(levels_left - 1)
    WORK.levels_left = WORK.nesting - 1
    # The outer levels call back once each; the innermost one calls back callbacks_per_call times.
    return caller(1 if WORK.nesting > 1 else WORK.callbacks_per_call)


def timed_work(calls, seconds):
    start, cpu_start = time.perf_counter(), time.process_time()
    done = 0
    if seconds is None:
        for _ in range(calls):
            descend(WORK.depth1)
        done = calls
    else:
        deadline = start + seconds
        while time.perf_counter() < deadline:
            descend(WORK.depth1)
            done += 1
    return time.perf_counter() - start, time.process_time() - cpu_start, done


def main():
    global WORK
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("extension_dir", help="directory holding callback_ext built for this interpreter")
    parser.add_argument("--calls", type=int, default=2000, help="caller() calls in the timed work (default: %(default)s)")
    parser.add_argument("--seconds", type=float, help="run for this long instead of --calls, without waiting on stdin")
    parser.add_argument("--depth1", type=int, default=19, help="Python frames above the extension (default: %(default)s)")
    parser.add_argument("--depth2", type=int, default=19, help="Python frames between the extension's two functions (default: %(default)s)")
    parser.add_argument("--nesting", type=int, default=3,
                        help="levels of outer_native, each calling back into Python (default: %(default)s)")
    parser.add_argument("--callbacks-per-call", type=int, default=3, help="callbacks of the innermost outer_native (the outer ones call back once) (default: %(default)s)")
    parser.add_argument("--inner-iterations", type=int, default=200_000,
                        help="rounds of inner_native's loop per callback, ~1 ns each (default: %(default)s)")
    arguments = parser.parse_args()
    WORK = Work(load_extension(arguments.extension_dir), arguments.depth1, arguments.depth2,
                arguments.nesting, arguments.callbacks_per_call, arguments.inner_iterations)
    if arguments.depth1 + arguments.depth2 + 10 > sys.getrecursionlimit():
        sys.setrecursionlimit(arguments.depth1 + arguments.depth2 + 100)
    # Warm up outside the timed region (bytecode specialization happens on the first calls).
    for _ in range(3):
        descend(WORK.depth1)
    if arguments.seconds is None:
        print("ready", flush=True)
        sys.stdin.readline()
    elapsed, cpu, calls = timed_work(arguments.calls, arguments.seconds)
    print(f"elapsed_seconds={elapsed:.6f} cpu_seconds={cpu:.6f} calls={calls} "
          f"calls_per_second={calls / elapsed:.1f}", flush=True)


if __name__ == "__main__":
    main()
