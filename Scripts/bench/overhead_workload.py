"""CPU-bound workload for Scripts/bench-overhead: a fixed amount of work made of Python function calls.

Protocol (so that a profiler can be attached before the measured part starts):
  1. prints "ready" on stdout and waits for a line on stdin (the harness attaches the profiler meanwhile);
  2. does the fixed work, timing it with time.perf_counter() (and its CPU time with time.process_time());
  3. prints "elapsed_seconds=<float> cpu_seconds=<float>" and exits.
The elapsed time excludes interpreter startup and the wait, so it measures only what a profiler slows down.

The work runs at the bottom of a stack STACK_DEPTH frames deep, because a sampler's cost per sample grows with
the number of frames it walks and real programs rarely run at depth 3.
"""
import argparse
import sys
import time


def leaf(value):
    return (value * 2654435761) & 0xFFFF


def middle(value):
    return leaf(value) + leaf(value + 1)


def hot_loop(iterations):
    total = 0
    for index in range(iterations):
        total += middle(index)
    return total


def descend(levels_left, iterations):
    # One Python frame per level, so the profilers see (and walk) a realistic stack depth.
    if levels_left > 0:
        return descend(levels_left - 1, iterations)
    return hot_loop(iterations)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=25_000_000, help="calls of middle() (default: %(default)s)")
    parser.add_argument("--stack-depth", type=int, default=20, help="frames above the hot loop (default: %(default)s)")
    arguments = parser.parse_args()
    # Warm up outside the timed region (specialization of the bytecode happens on the first calls).
    descend(arguments.stack_depth, 10_000)
    print("ready", flush=True)
    sys.stdin.readline()
    start, cpu_start = time.perf_counter(), time.process_time()
    descend(arguments.stack_depth, arguments.iterations)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"elapsed_seconds={elapsed:.6f} cpu_seconds={cpu:.6f}", flush=True)


if __name__ == "__main__":
    main()
