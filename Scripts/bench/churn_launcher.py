"""Starts Scripts/bench-all's churn: RATE new short Python processes a second for SECONDS (CPython 3.8+).

    python churn_launcher.py RATE SECONDS FORK_EVERY LOG INTERPRETER...

Process k (k = 0, 1, 2 ...) starts at k / RATE s. Every FORK_EVERY-th one is a multiprocessing child forked
from this launcher (no new interpreter: the child runs the parent's); the others are fresh interpreters
exec'ed by subprocess, taking the INTERPRETERs in turn. Each runs churn_child.run with its own k, 15-45 ms
of CPU in churn_k (uniform) and a lifetime of 200-500 ms (uniform). Appends "k pid kind interpreter time" to
LOG.launched for each start (time.monotonic() once Popen or Process.start has returned: after the exec for an
exec'ed child, after the fork for a forked one); the children append their own line to LOG. Waits for every
child before it exits; prints how far behind schedule the latest start was.
"""
import multiprocessing
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import churn_child  # noqa: E402

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "churn_child.py")


def main():
    rate, seconds, fork_every, log = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    interpreters = sys.argv[5:]
    context = multiprocessing.get_context("fork")
    rng = random.Random(1)
    count = int(rate * seconds)
    running = []
    launched = open(log + ".launched", "w")
    start = time.monotonic()
    exec_index = 0
    lateness = 0.0
    for k in range(count):
        due = start + k / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        lateness = max(lateness, time.monotonic() - due)
        work_ms, life_ms = rng.uniform(15, 45), rng.uniform(200, 500)
        if fork_every > 0 and k % fork_every == fork_every - 1:
            child = context.Process(target=churn_child.run, args=(k, work_ms, life_ms, log, "fork"))
            child.start()
            launched.write("%d %d fork %s %.6f\n" % (k, child.pid, sys.executable, time.monotonic()))
        else:
            interpreter = interpreters[exec_index % len(interpreters)]
            exec_index += 1
            child = subprocess.Popen([interpreter, CHILD, str(k), "%.3f" % work_ms, "%.3f" % life_ms, log])
            launched.write("%d %d exec %s %.6f\n" % (k, child.pid, interpreter, time.monotonic()))
        running.append(child)
        # Reap the finished ones as we go.
        still = []
        for process in running:
            done = process.poll() is not None if isinstance(process, subprocess.Popen) else not process.is_alive()
            if not done:
                still.append(process)
        running = still
    launched.close()
    for process in running:
        if isinstance(process, subprocess.Popen):
            process.wait()
        else:
            process.join()
    print("launched %d in %.2f s, at most %.0f ms behind schedule" % (count, time.monotonic() - start, lateness * 1000),
          flush=True)


if __name__ == "__main__":
    main()
