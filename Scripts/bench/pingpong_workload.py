"""Context-switch-heavy workload for Scripts/bench-offcpu: two threads pass a byte back and forth through a pair of
pipes for a fixed number of round trips.

Each round trip, the main thread writes a byte to the partner's pipe and blocks reading its own; the partner, blocked
reading its pipe, wakes, does --work iterations of a small Python loop and writes the byte back. So every round trip
each thread blocks once and is woken once: about two context switches of the process per round trip, more when the
GIL changes hands on its own. --work sets the pace: 0 switches as fast as the machine can, and each unit adds an
iteration of a Python loop per round trip. The pace also depends on where the scheduler puts the two threads (on one
CPU a switch is cheaper than a wake-up of the other CPU): on the 2-CPU host of docs/PERFORMANCE.md --work 400 gave
21,000 to 74,000 switches a second from one start to the next, and --work 0 about 20,000 in its emulated guest.

Both threads run at the bottom of a stack --stack-depth Python frames deep (the off-CPU hooks walk the stack of a
thread coming back to a CPU, and real programs rarely block at depth 3).

Protocol (so that a profiler can be attached before the measured part starts):
  1. warms up, prints "ready" on stdout and waits for a line on stdin;
  2. does the round trips, timing them with time.perf_counter() (and their CPU time with time.process_time());
  3. prints "elapsed_seconds=<float> cpu_seconds=<float> round_trips=<int> switches=<int>
     switches_per_second=<float> round_trips_per_second=<float>", where switches are the voluntary and involuntary
     context switches of the process's threads during the round trips (from /proc/self/task/*/status);
  4. waits for another line on stdin (or its end) before it exits, so that the harness can read the kernel's
     figures while the profiler is still attached.
"""
import argparse
import os
import sys
import threading
import time


def context_switches():
    """Voluntary plus involuntary context switches of every thread of this process so far."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/status") as status:
                for line in status:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass  # a thread that just exited
    return total


def spin(work):
    total = 0
    for value in range(work):
        total += value * value
    return total


def partner_loop(inbox, outbox, work):
    while True:
        byte = os.read(inbox, 1)
        if byte != b"x":
            return
        spin(work)
        os.write(outbox, byte)


def main_loop(outbox, inbox, round_trips):
    for _ in range(round_trips):
        os.write(outbox, b"x")
        os.read(inbox, 1)


def descend(levels_left, function, *arguments):
    # One Python frame per level, so that a stack walk has a realistic depth to cover.
    if levels_left > 0:
        return descend(levels_left - 1, function, *arguments)
    return function(*arguments)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-trips", type=int, default=100_000, help="round trips timed (default: %(default)s)")
    parser.add_argument("--work", type=int, default=400,
                        help="iterations of the partner's Python loop per round trip (default: %(default)s)")
    parser.add_argument("--stack-depth", type=int, default=20, help="frames above each thread's loop (default: %(default)s)")
    arguments = parser.parse_args()

    to_partner_read, to_partner_write = os.pipe()
    to_main_read, to_main_write = os.pipe()
    partner = threading.Thread(target=descend, name="partner",
                               args=(arguments.stack_depth, partner_loop, to_partner_read, to_main_write, arguments.work))
    partner.start()
    # Warm up outside the timed region (bytecode specialization, the pipes' first pages).
    descend(arguments.stack_depth, main_loop, to_partner_write, to_main_read, 2_000)
    print("ready", flush=True)
    sys.stdin.readline()

    switches_before = context_switches()
    start, cpu_start = time.perf_counter(), time.process_time()
    descend(arguments.stack_depth, main_loop, to_partner_write, to_main_read, arguments.round_trips)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    switches = context_switches() - switches_before

    os.write(to_partner_write, b"q")
    partner.join()
    print(f"elapsed_seconds={elapsed:.6f} cpu_seconds={cpu:.6f} round_trips={arguments.round_trips} "
          f"switches={switches} switches_per_second={switches / elapsed:.0f} "
          f"round_trips_per_second={arguments.round_trips / elapsed:.0f}", flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
