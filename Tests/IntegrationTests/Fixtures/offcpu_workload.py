"""A workload whose main thread spends its wall time in four parts, about equally: computing, sleeping, waiting
for a lock another thread holds, and waiting for data on a socket. For the --mode wall and --mode offcpu tests.

Usage: offcpu_workload.py ROUNDS [PART_SECONDS]
  Each round runs compute_part, sleep_part, lock_part and socket_part for about PART_SECONDS (default 0.05) of
  wall time each. Prints "main-tid N", then at the end "parts" and each part's measured wall time in seconds
  ("compute_part 0.513"): the profile's shares are checked against these, not against the nominal lengths, so a
  busy machine that stretches a part does not fail the test.
"""
from __future__ import print_function

import ctypes
import socket
import sys
import threading
import time

clock = getattr(time, "perf_counter", None) or time.time


def native_thread_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86_64


def compute_part(seconds):
    end = clock() + seconds
    total = 0
    while clock() < end:
        for i in range(2000):
            total += i * i
    return total


def sleep_part(seconds):
    time.sleep(seconds)


def lock_part(lock, requests, wakeup, held):
    # The helper takes the lock and holds it for the part's length; this thread blocks on it meanwhile.
    requests.append("lock")
    wakeup.set()
    held.wait()
    held.clear()
    lock.acquire()
    lock.release()


def socket_part(receiver, requests, wakeup):
    # The helper sends one byte after the part's length; this thread blocks in recv meanwhile.
    requests.append("socket")
    wakeup.set()
    receiver.recv(1)


def helper(seconds, lock, requests, held, sender, wakeup):
    while True:
        wakeup.wait()
        wakeup.clear()
        while requests:
            request = requests.pop(0)
            if request == "stop":
                return
            if request == "lock":
                lock.acquire()
                held.set()
                time.sleep(seconds)
                lock.release()
            else:
                time.sleep(seconds)
                sender.send(b"x")


def main():
    rounds = int(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    print("main-tid", native_thread_id())
    sys.stdout.flush()
    lock = threading.Lock()
    held = threading.Event()
    wakeup = threading.Event()
    requests = []
    receiver, sender = socket.socketpair()
    thread = threading.Thread(target=helper, args=(seconds, lock, requests, held, sender, wakeup))
    thread.start()
    spent = {"compute_part": 0.0, "sleep_part": 0.0, "lock_part": 0.0, "socket_part": 0.0}
    for _ in range(rounds):
        start = clock()
        compute_part(seconds)
        middle = clock()
        spent["compute_part"] += middle - start
        sleep_part(seconds)
        start = clock()
        spent["sleep_part"] += start - middle
        lock_part(lock, requests, wakeup, held)
        middle = clock()
        spent["lock_part"] += middle - start
        socket_part(receiver, requests, wakeup)
        spent["socket_part"] += clock() - middle
    requests.append("stop")
    wakeup.set()
    thread.join()
    print("parts")
    for name in sorted(spent):
        print(name, "%.4f" % spent[name])
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
