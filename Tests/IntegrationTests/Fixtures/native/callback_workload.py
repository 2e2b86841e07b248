"""Mixed Python/native stacks for pybpfprof's integration tests. Runs on CPython 2.7 and 3.6 and later.

Usage: callback_workload.py EXTENSION_DIR SECONDS
  EXTENSION_DIR holds callback_ext built for this interpreter (NativeFixtures.buildCallbackExtension).
  Prints "ready" once the module is imported, calls caller() until SECONDS have passed, prints "calls N"
  (how many caller() calls ran) and exits 0.

While it burns CPU the stack is, innermost last:
    main -> caller -> ext_outer_native (C) -> callback -> ext_inner_native (C)
and well over 90% of the CPU time is inside ext_inner_native: one inner_native call is some hundreds of
microseconds of C arithmetic, against a fraction of a microsecond of Python around it.

The tests find expected line numbers from the `# LINE:name` markers below, never from fixed numbers, so
lines may be added or moved freely; a marker names the line it sits on.
"""
from __future__ import print_function

import sys
import time

sys.path.insert(0, sys.argv[1])

import callback_ext  # noqa: E402

# CPU time of the process (3.3+ time.process_time; 2.7's time.clock is the same on Unix): the run ends after a
# given amount of it, so what a profiler samples does not depend on how much CPU a busy machine left the workload.
cpu_time = getattr(time, "process_time", None) or time.clock


def say(*words):
    print(*words)
    sys.stdout.flush()

# Rounds of ext_inner_native's loop in one callback() call: about a third of a millisecond.
INNER_ITERATIONS = 200000
# callback() calls in one caller() call: caller() takes about a millisecond, so main checks its deadline often.
CALLBACKS_PER_CALLER = 3


def callback():
    return callback_ext.inner_native(INNER_ITERATIONS)  # LINE:callback-inner


def caller():
    return callback_ext.outer_native(callback, CALLBACKS_PER_CALLER)  # LINE:caller-outer


def main(cpu_seconds):
    say("ready")
    deadline = cpu_time() + cpu_seconds
    calls = 0
    while cpu_time() < deadline:
        caller()  # LINE:main-caller
        calls += 1
    say("calls", calls)
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[2])))  # LINE:module-main
