"""CPU-bound workload for Scripts/bench-mixed: a fixed amount of work on a deep mixed Python/native stack.

Usage: mixed_workload.py EXTENSION_DIR [--calls N | --seconds S] [--depth1 D1] [--depth2 D2] [--nesting K]
EXTENSION_DIR holds the test fixture extension callback_ext
(Tests/IntegrationTests/Fixtures/native/callback_ext.c), built by Scripts/bench-mixed for the interpreter
that runs this file. While the workload burns CPU its stack is, root first:

    <module> -> main -> timed_work -> descend x (D1 + 1)
        -> caller -> ext_outer_native (C) -> callback      (level 1 of K: its callback calls caller again)
        -> caller -> ext_outer_native (C) -> callback      (...)
        -> caller -> ext_outer_native (C) -> callback      (level K: its callback recurses to the burn)
        -> recurse x (D2 + 1) -> burn -> ext_inner_native (C)

Nearly all of the CPU time (98-99% on 3.12) is in ext_inner_native, C arithmetic compiled without frame
pointers (-O2 -fomit-frame-pointer), so nearly every sample has that whole stack.

Python frames: 3 + (D1 + 1) + 2 K + (D2 + 1) + 1, 50 with the defaults (D1 = D2 = 19, K = 3).
Native frames, as pybpfprof --interpreter-frames shows them on pyenv's CPython 3.12.1 (measured, and
measured again by every Scripts/bench-mixed run): 12 from _start to the first _PyEval_EvalFrameDefault, 5 per
outer_native level (_PyObject_MakeTpCall, cfunction_call, ext_outer_native, PyObject_CallNoArgs,
_PyEval_EvalFrameDefault; a Python -> Python call adds none) and 3 for the call of inner_native
(_PyObject_MakeTpCall, cfunction_call, ext_inner_native): 12 + 5 K + 3 = 30 with K = 3. One level (the
shape of Tests/IntegrationTests/Fixtures/native/callback_workload.py) gives only 20, hence K.

Protocol (as Scripts/bench/overhead_workload.py, so that a profiler can attach before the measured part):
  1. warms up, prints "ready" on stdout and waits for a line on stdin;
  2. makes --calls calls of descend() (each ends in --callbacks-per-call calls of inner_native, each
     --inner-iterations rounds of C: about 1 ms per call), timed with time.perf_counter() (and its CPU time
     with time.process_time());
  3. prints "elapsed_seconds=<float> cpu_seconds=<float> calls=<int> calls_per_second=<float>" and exits.
With --seconds S instead of --calls it prints "ready", does not wait, and works until S seconds have passed
(for recordings that need no timing), then prints the same line.
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
    parser.add_argument("--calls", type=int, default=5000, help="descend() calls in the timed work, about 1 ms each (default: %(default)s)")
    parser.add_argument("--seconds", type=float, help="run for this long instead of --calls, without waiting on stdin")
    parser.add_argument("--depth1", type=int, default=19, help="Python frames above the extension (default: %(default)s)")
    parser.add_argument("--depth2", type=int, default=19, help="Python frames between the extension's two functions (default: %(default)s)")
    parser.add_argument("--nesting", type=int, default=3,
                        help="levels of outer_native, each calling back into Python (default: %(default)s)")
    parser.add_argument("--callbacks-per-call", type=int, default=3, help="callbacks of the innermost outer_native (the outer ones call back once) (default: %(default)s)")
    parser.add_argument("--inner-iterations", type=int, default=200_000,
                        help="rounds of inner_native's loop per callback, ~1 ns each (default: %(default)s)")
    arguments = parser.parse_args()
    if arguments.nesting < 1 or arguments.depth1 < 0 or arguments.depth2 < 0:
        parser.error("--nesting must be at least 1, the depths at least 0")
    WORK = Work(load_extension(arguments.extension_dir), arguments.depth1, arguments.depth2,
                arguments.nesting, arguments.callbacks_per_call, arguments.inner_iterations)
    if arguments.depth1 + arguments.depth2 + 10 > sys.getrecursionlimit():
        sys.setrecursionlimit(arguments.depth1 + arguments.depth2 + 100)
    # Warm up outside the timed region (bytecode specialization happens on the first calls).
    for _ in range(3):
        descend(WORK.depth1)
    print("ready", flush=True)
    if arguments.seconds is None:
        sys.stdin.readline()
    elapsed, cpu, calls = timed_work(arguments.calls, arguments.seconds)
    print(f"elapsed_seconds={elapsed:.6f} cpu_seconds={cpu:.6f} calls={calls} "
          f"calls_per_second={calls / elapsed:.1f}", flush=True)


if __name__ == "__main__":
    main()
