"""Workloads of known shape for pybpfprof's integration tests. Runs on CPython 2.7 and 3.6 and later.

The tests find expected line numbers from the `# LINE:name` markers below, never from fixed numbers, so
lines may be added or moved freely; a marker names the line it sits on.

Modes (the first argument):
  shape [--seconds S] [--exit-status N]
      main thread: caller() runs heavy() and light(), whose work is in the ratio 3:1, then a recursion
      that is RECURSION_DEPTH calls deep below its first call; a second thread runs worker_loop(), which
      shares no function with the main thread. Prints "main-tid N" and "worker-tid N" (native thread
      ids), then "ready". Runs S seconds then exits with status N, or without --seconds until SIGTERM (then
      exits 0). On its way out prints "shape-cpu H L": the main thread's CPU time (ns) in heavy() and in light(),
      the workload's own account of the 3:1 its profile must show; SIGUSR1 starts that account afresh (sent
      once sampling has started, so that the account and the profile cover the same time).
  deep [--depth D]
      recursion D calls deep below its first call, then spins at the bottom until killed. Prints "ready"
      once at the bottom.
  late-thread
      prints "ready", sleeps 1 s, then starts a thread that spins about 1 s in late_thread_work(), joins
      it, prints "late-tid N" and exits 0.
"""
from __future__ import print_function

import argparse
import ctypes
import functools
import signal
import sys
import threading
import time

# 3.3+ has time.process_time, 3.8+ threading.get_native_id; 2.7, 3.6 and 3.7 get them here.
# Timed runs end after an amount of the process's CPU time (2.7's time.clock is that on Unix), not of wall time: what
# a profiler samples then does not depend on how much CPU a busy machine left the workload.
cpu_time = getattr(time, "process_time", None) or time.clock


def native_thread_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86_64


class Timespec(ctypes.Structure):
    _fields_ = [("seconds", ctypes.c_long), ("nanoseconds", ctypes.c_long)]


# The calling thread's CPU time, CLOCK_THREAD_CPUTIME_ID (3), the clock the kernel charges samples to: read_thread_clock()
# fills thread_clock. Called through ctypes by a C-level partial on every version (2.7 has no time.clock_gettime), so that
# reading it adds no Python frame to the stacks the tests check: only native ones, under caller(). Through PyDLL, which
# keeps the GIL during the call: CDLL releases it, and a thread that releases and at once retakes the GIL several times
# a millisecond starves the other (the waiting worker never sees a 5 ms interval without a switch, so never asks for it).
thread_clock = Timespec()
read_thread_clock = functools.partial(ctypes.PyDLL(None).clock_gettime, 3, ctypes.byref(thread_clock))


def say(*words):
    print(*words)
    sys.stdout.flush()

# Iterations of spin's loop in one call; light() makes one call and heavy() three. About half a millisecond,
# so that the main loop checks its deadline often.
UNIT = 20000
# Recursive calls below recurse()'s first call: the stack holds RECURSION_DEPTH + 1 recurse frames.
RECURSION_DEPTH = 60


def spin(iterations):
    total = 0
    for number in range(iterations):  # LINE:spin-loop
        total += number  # LINE:spin-add
    return total


def heavy():
    # Three calls of light()'s one, not one three times as long: spin's additions get slower once its
    # total outgrows one 30-bit digit, which makes one call three times as long more than three times the work.
    for _ in range(3):
        spin(UNIT)  # LINE:heavy-call


def light():
    spin(UNIT)  # LINE:light-call


# The main thread's CPU time in heavy() and light(), in ns. A machine (an emulator, a host loaded with other guests) can
# run the two at other speeds than their 3:1 work; the profile's shares are checked against this account.
# Kept per call: the account is the sum of the calls, less those longer than STALL times their function's median. Under
# emulation on a loaded host a guest's CPU can stop for tens of milliseconds while its clock runs on: the thread's CPU
# clock counts the stall, the sampling timer fires once after it, and a few stalls landing in one function's calls pulled
# the plain sum from 3 to 4.35 (a 6.1 guest). The median itself is no account: it missed the mean by 20% on 2.7.
cpu_in = {"heavy": [], "light": []}


def restart_cpu_account(number, frame):
    cpu_in["heavy"] = []
    cpu_in["light"] = []


STALL = 5


def total_without_stalls(times):
    if not times:
        return 0
    median = sorted(times)[len(times) // 2]
    return sum(time for time in times if time <= STALL * median)


def caller():
    # The clock is read here, in caller()'s own frame, so its system calls are neither heavy()'s nor light()'s. Each
    # interval also holds the end of one read and the start of the next, which samples find in caller(), not in heavy()
    # or light(): an empty interval, measured each time, is taken off both. Under emulation a system call costs as much
    # as a good part of light(), and left in, it pulled the measured ratio from 3 towards 1 (2.34 once, in a 6.12
    # guest, where the samples said 2.98).
    read_thread_clock()
    started = thread_clock.seconds * 1000000000 + thread_clock.nanoseconds
    read_thread_clock()
    empty_end = thread_clock.seconds * 1000000000 + thread_clock.nanoseconds
    heavy()  # LINE:caller-heavy
    read_thread_clock()
    between = thread_clock.seconds * 1000000000 + thread_clock.nanoseconds
    light()  # LINE:caller-light
    read_thread_clock()
    empty = empty_end - started
    cpu_in["heavy"].append(between - empty_end - empty)
    cpu_in["light"].append(thread_clock.seconds * 1000000000 + thread_clock.nanoseconds - between - empty)


def recurse(depth):
    if depth == 0:
        return spin(UNIT)  # LINE:recurse-bottom
    return recurse(depth - 1)  # LINE:recurse-self


def worker_compute():
    # Its own loop rather than spin(): the worker's stacks must share no function with the main thread's.
    total = 0
    for number in range(UNIT):  # LINE:worker-loop
        total += number * 2  # LINE:worker-add
    return total


def worker_loop(stop, started, native_ids):
    native_ids.append(native_thread_id())
    started.set()
    while not stop.is_set():
        worker_compute()  # LINE:worker-call
        # Sleeping gives the GIL back, so the main thread, whose 3:1 ratio is measured, keeps most samples.
        time.sleep(0.002)


def run_shape(seconds, exit_status):
    stop = threading.Event()
    started = threading.Event()
    worker_ids = []
    worker = threading.Thread(target=worker_loop, args=(stop, started, worker_ids), name="shape-worker")
    worker.start()
    started.wait()
    print("main-tid", native_thread_id())
    print("worker-tid", worker_ids[0])
    terminated = []
    signal.signal(signal.SIGTERM, lambda number, frame: terminated.append(number))
    signal.signal(signal.SIGUSR1, restart_cpu_account)
    say("ready")
    deadline = None if seconds is None else cpu_time() + seconds
    rounds = 0
    # The clock is read every 16 rounds (a few ms): reading the process's CPU time is a system call, and the main
    # thread is to be found in the shape's functions, not in the clock.
    while not terminated and (deadline is None or rounds % 16 or cpu_time() < deadline):
        caller()  # LINE:main-caller
        recurse(RECURSION_DEPTH)  # LINE:main-recurse
        rounds += 1
    stop.set()
    worker.join()
    say("shape-cpu", total_without_stalls(cpu_in["heavy"]), total_without_stalls(cpu_in["light"]))
    return 0 if terminated else exit_status


def deep_spin():
    say("ready")
    total = 0
    while True:
        total += 1  # LINE:deep-spin


def deep_recurse(depth):
    if depth == 0:
        deep_spin()  # LINE:deep-bottom
    deep_recurse(depth - 1)  # LINE:deep-self


def run_deep(depth):
    deep_recurse(depth)  # LINE:deep-first
    return 0


def late_thread_work(seconds, native_ids):
    native_ids.append(native_thread_id())
    # The main thread waits in join(): the process's CPU time is this thread's.
    deadline = cpu_time() + seconds
    count = 0
    # The clock is a system call: read it every 10000 rounds.
    while count % 10000 or cpu_time() < deadline:  # LINE:late-loop
        count += 1  # LINE:late-add
    return count


def run_late_thread():
    say("ready")
    time.sleep(1.0)
    late_ids = []
    thread = threading.Thread(target=late_thread_work, args=(1.0, late_ids), name="late-thread")
    thread.start()
    thread.join()
    say("late-tid", late_ids[0])
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["shape", "deep", "late-thread"])
    parser.add_argument("--seconds", type=float, default=None, help="of CPU time")
    parser.add_argument("--exit-status", type=int, default=0)
    parser.add_argument("--depth", type=int, default=400)
    arguments = parser.parse_args()
    if arguments.mode == "shape":
        return run_shape(arguments.seconds, arguments.exit_status)
    if arguments.mode == "deep":
        return run_deep(arguments.depth)
    return run_late_thread()


if __name__ == "__main__":
    sys.exit(main())  # LINE:module-main
