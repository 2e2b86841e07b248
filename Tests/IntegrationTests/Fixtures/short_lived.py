"""A short Python process for the process-following tests.

Usage: short_lived.py SECONDS [fork N | linger PATH]
  Busy in short_lived_work() for SECONDS and exits; with `fork N` it first forks N children (os.fork, no
  exec: the children run the same interpreter image) that each do the same, and waits for them.
  Prints "pid N" for itself and each child, so the tests know whose samples to look for.
  With `linger PATH` it prints "done" after its work and stays, idle, until PATH exists: its code objects stay
  readable until the profiler has named its frames, however far a CPU-starved profiler lags behind.
"""
import os
import sys
import time


def short_lived_work(seconds):
    end = time.process_time() + seconds  # CPU time: as long for a profiler on any machine
    count = 0
    while count % 10000 or time.process_time() < end:  # the clock is a system call: read it now and then
        count += 1
    return count


def main():
    seconds = float(sys.argv[1])
    children = int(sys.argv[3]) if len(sys.argv) == 4 and sys.argv[2] == "fork" else 0
    linger = sys.argv[3] if len(sys.argv) == 4 and sys.argv[2] == "linger" else None
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            short_lived_work(seconds)
            os._exit(0)
        pids.append(pid)
    print("pid", os.getpid(), flush=True)
    for pid in pids:
        print("pid", pid, flush=True)
    short_lived_work(seconds)
    for pid in pids:
        os.waitpid(pid, 0)
    if linger:
        print("done", flush=True)
        while not os.path.exists(linger):
            time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
