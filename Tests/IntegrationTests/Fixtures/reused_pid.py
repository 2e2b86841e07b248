"""Two programs under one pid, for the pid-reuse test.

Usage:
  reused_pid.py first SECONDS    busy in first_program_work() for SECONDS, prints "pid N", exits
  reused_pid.py second SECONDS   the same in second_program_work()
  reused_pid.py again PID SECONDS
      starts `reused_pid.py second SECONDS` as a new process that gets pid PID (PID must be free: the first
      program has exited). The kernel hands out pids in order, so writing PID - 1 to ns_last_pid (root) just
      before forking gives the child PID, unless another process takes it first: then that child exits at
      once and it tries again. Prints "pid N" for the process that ran second_program_work.
"""
import os
import sys
import time


def first_program_work(seconds):
    end = time.process_time() + seconds  # CPU time: as long for a profiler on any machine
    count = 0
    while count % 10000 or time.process_time() < end:  # the clock is a system call: read it now and then
        count += 1
    return count


def second_program_work(seconds):
    end = time.process_time() + seconds  # CPU time: as long for a profiler on any machine
    count = 0
    while count % 10000 or time.process_time() < end:  # the clock is a system call: read it now and then
        count += 1
    return count


def again(pid, seconds):
    for _ in range(100):
        with open("/proc/sys/kernel/ns_last_pid", "w") as last:
            last.write(str(pid - 1))
        child = os.fork()
        if child == 0:
            if os.getpid() == pid:
                os.execv(sys.executable, [sys.executable, __file__, "second", seconds])
            os._exit(3)
        _, status = os.waitpid(child, 0)
        if child == pid:
            return os.waitstatus_to_exitcode(status)
    print("could not get pid", pid, file=sys.stderr)
    return 1


def main():
    if sys.argv[1] == "again":
        return again(int(sys.argv[2]), sys.argv[3])
    work = first_program_work if sys.argv[1] == "first" else second_program_work
    print("pid", os.getpid(), flush=True)
    work(float(sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
