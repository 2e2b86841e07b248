"""One of the long-lived processes of Scripts/bench-all's steady scenario (CPython 3.8 and later).

    python host_workload.py INDEX light|busy THREADS SEED

light: a service that mostly waits. Every 0.3-1.7 s (uniform, mean 1 s) it wakes and runs 2-8 ms of Python
       (CPU time, mean 5 ms) at the bottom of a 5-25 frame recursion: about 0.5% of a core.
busy:  a worker that is half the time on the CPU: 50 ms of Python under a 20-frame recursion, then 150 ms of
       sleep: about 25% of a core.
THREADS > 1: the process runs its loop in that many threads (a thread pool), each with the same pattern.

Prints "ready" on stdout once the interpreter is up, then runs until killed.
"""
import random
import sys
import threading
import time


def spin(cpu_seconds):
    """Pure Python work for about this much CPU time of the calling thread."""
    end = time.thread_time() + cpu_seconds
    total = 0
    while time.thread_time() < end:
        for value in range(200):
            total += value * value % 7
    return total


def descend(depth, cpu_seconds):
    if depth <= 0:
        return spin(cpu_seconds)
    return descend(depth - 1, cpu_seconds) + 1


def light_loop(rng):
    while True:
        time.sleep(rng.uniform(0.3, 1.7))
        descend(rng.randint(5, 25), rng.uniform(0.002, 0.008))


def busy_loop(rng):
    while True:
        descend(20, 0.050)
        time.sleep(0.150)


def main():
    index, kind, threads, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    loop = light_loop if kind == "light" else busy_loop
    workers = [threading.Thread(target=loop, args=(random.Random(seed * 100 + n),), daemon=True, name="worker-%d" % n)
               for n in range(1, threads)]
    for worker in workers:
        worker.start()
    print("ready", index, flush=True)
    loop(random.Random(seed * 100))


if __name__ == "__main__":
    main()
