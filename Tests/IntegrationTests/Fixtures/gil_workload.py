"""Two threads busy at once, for the --mode gil test: python_work spins in pure Python (it holds the GIL but for the
interpreter's switches), compressing_work compresses 2 MiB with bz2 over and over (bz2 releases the GIL while it
compresses, on every version; hashlib does not everywhere: pyenv's 2.7 and 3.6 hash with their own _sha256, which keeps
it). Prints "python-tid N" and "compressing-tid N", and ends once the process has used SECONDS
(default 2) of CPU time, however long a busy machine takes to give it that.
"""
from __future__ import print_function

import ctypes
import bz2
import sys
import threading
import time

cpu_time = getattr(time, "process_time", None) or time.clock


def native_thread_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86_64


def python_work(deadline, ids):
    ids.append(native_thread_id())
    total = 0
    while cpu_time() < deadline:
        for number in range(10000):
            total += number
    return total


def compressing_work(deadline, ids):
    ids.append(native_thread_id())
    data = b"xy" * (1 << 20)
    while cpu_time() < deadline:
        bz2.compress(data, 1)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    deadline = cpu_time() + seconds
    python_ids, compressing_ids = [], []
    threads = [threading.Thread(target=python_work, args=(deadline, python_ids)),
               threading.Thread(target=compressing_work, args=(deadline, compressing_ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("python-tid", python_ids[0])
    print("compressing-tid", compressing_ids[0])
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
