"""A short-lived process of Scripts/bench-all's churn scenario (CPython 3.8 and later).

    python churn_child.py K WORK_MS LIFE_MS LOG     (an exec'ed interpreter)
    churn_child.run(K, WORK_MS, LIFE_MS, LOG, "fork")  (in a multiprocessing fork child)

Runs WORK_MS of CPU time in a function named churn_K (made for this process, so its samples can be told apart
from every other child's by name as well as by pid) right away, as a short script does, then sleeps until
LIFE_MS after it started, and appends one line to LOG:

    K PID KIND WORK_CPU_S TOTAL_CPU_S END

WORK_CPU_S: the thread's CPU time inside churn_K; TOTAL_CPU_S: the process's user + system time (an exec'ed
interpreter's start-up included), both what a sampler at R Hz should turn into about R x seconds samples;
END: time.monotonic() when it wrote the line, just before it exits.
"""
import os
import resource
import sys
import time

SOURCE = """
def churn_{k}(cpu_seconds):
    end = time.thread_time() + cpu_seconds
    total = 0
    while time.thread_time() < end:
        for value in range(200):
            total += value * value % 7
    return total
"""


def run(k, work_ms, life_ms, log_path, kind):
    started = time.monotonic()
    namespace = {}
    exec(SOURCE.format(k=k), {"time": time}, namespace)
    function = namespace["churn_%d" % k]
    before = time.thread_time()
    function(work_ms / 1000.0)
    work = time.thread_time() - before
    remaining = started + life_ms / 1000.0 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    line = "%d %d %s %.6f %.6f %.6f\n" % (k, os.getpid(), kind, work, usage.ru_utime + usage.ru_stime, time.monotonic())
    descriptor = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


if __name__ == "__main__":
    run(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], "exec")
