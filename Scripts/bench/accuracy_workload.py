"""Workload for Scripts/bench-accuracy: four functions whose true CPU time shares the workload measures itself,
reached through call chains that cannot mix, so a profiler's torn (impossible) stacks are detectable.

Protocol:
  1. prints "ready" on stdout and waits for a line on stdin (the harness attaches the profiler meanwhile);
  2. runs ROUNDS rounds; each round calls caller_a, caller_b, caller_c and caller_d once, in a shuffled
     order, timing each call with time.thread_time_ns() (CPU time: what a CPU sampler estimates) and with
     time.perf_counter_ns() (wall time: what a wall-clock sampler such as py-spy estimates);
  3. prints one JSON line and exits:
     {"true_shares": {CPU shares}, "wall_shares": {...}, "cpu_seconds": ..., "wall_seconds": ...}

The only call chains this program can produce (root first; a stack is legal when it is a prefix of one):
  <module> > main > wait_for_start
  <module> > main > run_rounds > caller_a > middle_a > a > helper_a1 > helper_a2
  <module> > main > run_rounds > caller_b > b > helper_b1 > leaf_b1
  <module> > main > run_rounds > caller_b > b > helper_b2 > leaf_b2
  <module> > main > run_rounds > caller_c > middle_c > inner_c > c
  <module> > main > run_rounds > caller_d > d > helper_d
LEGAL_CHAINS below is the same list; bench-accuracy reads it from here. The chains have different depths on
purpose: CPython reuses frame slots at the same depth, so a stack read while the target runs (py-spy
--nonblocking) can combine a slot's old and new occupant, e.g. "caller_b > middle_a", which is then visible.
The leaves call small helpers millions of times a second, as real code does, so the stack changes constantly;
b alternates between two helpers that call different leaves, so a tear inside b's loop ("helper_b1 >
leaf_b2") is visible too. Tears that recombine frames of one path (a's helpers) look legal: the count of
impossible stacks is a lower bound of the torn ones.
Everything the program does while profiled happens in these functions: the call orders are drawn before the
start, the start line is read with a C-level read and the results are printed with C-level calls only.
"""
import argparse
import random
import sys
import time

LEGAL_CHAINS = [
    ["<module>", "main", "wait_for_start"],
    ["<module>", "main", "run_rounds", "caller_a", "middle_a", "a", "helper_a1", "helper_a2"],
    ["<module>", "main", "run_rounds", "caller_b", "b", "helper_b1", "leaf_b1"],
    ["<module>", "main", "run_rounds", "caller_b", "b", "helper_b2", "leaf_b2"],
    ["<module>", "main", "run_rounds", "caller_c", "middle_c", "inner_c", "c"],
    ["<module>", "main", "run_rounds", "caller_d", "d", "helper_d"],
]

# Function -> loop iterations per call. Roughly 40/30/20/10 % of the CPU time, about 0.7-3 ms per call; the
# exact shares are whatever the workload measures, so these need no tuning per machine.
WORK_PER_CALL = {"a": 10_000, "b": 7_000, "c": 14_400, "d": 6_300}


# Chain a: deep, two levels of helpers.
def helper_a2(value):
    return (value * 2654435761) & 0xFFFF


def helper_a1(value):
    return helper_a2(value) ^ helper_a2(value + 7)


def a(iterations):
    total = 0
    for index in range(iterations):
        total += helper_a1(index)
    return total


def middle_a(iterations):
    return a(iterations)


def caller_a(iterations):
    return middle_a(iterations)


# Chain b: shallow, two helpers calling different leaves.
def leaf_b1(value):
    return (value * 40503) % 65521


def helper_b1(value):
    return leaf_b1(value) + 1


def leaf_b2(value):
    return (value * 8191) % 65521


def helper_b2(value):
    return leaf_b2(value) - 1


def b(iterations):
    total = 0
    for index in range(iterations):
        total += helper_b1(index) + helper_b2(index)
    return total


def caller_b(iterations):
    return b(iterations)


# Chain c: deep, no calls in its loop (its stack stays still while it runs).
def c(iterations):
    total = 0
    for index in range(iterations):
        total = (total + index * index) & 0xFFFFFFFF
    return total


def inner_c(iterations):
    return c(iterations)


def middle_c(iterations):
    return inner_c(iterations)


def caller_c(iterations):
    return middle_c(iterations)


# Chain d: shallow, one helper.
def helper_d(value):
    return value ^ (value >> 3)


def d(iterations):
    total = 0
    for index in range(iterations):
        total += helper_d(index)
    return total


def caller_d(iterations):
    return d(iterations)


CALLERS = {"a": caller_a, "b": caller_b, "c": caller_c, "d": caller_d}


def call_orders(rounds, seed):
    # A shuffled order each round, so that a sampler's fixed period cannot lock onto the round's rhythm. Drawn
    # in advance: random.shuffle is Python code, whose frames would be outside the legal chains.
    shuffler = random.Random(seed)
    orders = []
    for _ in range(rounds):
        names = sorted(CALLERS)
        shuffler.shuffle(names)
        orders.append(names)
    return orders


def run_rounds(orders):
    cpu_ns = dict.fromkeys(CALLERS, 0)
    wall_ns = dict.fromkeys(CALLERS, 0)
    cpu_clock, wall_clock = time.thread_time_ns, time.perf_counter_ns
    for names in orders:
        for name in names:
            cpu_started, wall_started = cpu_clock(), wall_clock()
            CALLERS[name](WORK_PER_CALL[name])
            wall_ns[name] += wall_clock() - wall_started
            cpu_ns[name] += cpu_clock() - cpu_started
    return cpu_ns, wall_ns


def wait_for_start():
    print("ready", flush=True)
    # A binary read: reading sys.stdin as text runs the codec's Python-level decode().
    sys.stdin.buffer.readline()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3_000, help="rounds of the four calls (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the call order (default: %(default)s)")
    arguments = parser.parse_args()
    orders = call_orders(arguments.rounds, arguments.seed)
    run_rounds(orders[:20])  # warm-up: bytecode specialization happens before anyone samples
    wait_for_start()
    cpu_started, wall_started = time.thread_time_ns(), time.perf_counter_ns()
    cpu_ns, wall_ns = run_rounds(orders)
    cpu_total = time.thread_time_ns() - cpu_started
    wall_total = time.perf_counter_ns() - wall_started
    # Shares of the whole timed loop's time; what is left (the loop and the clock calls) is "other".
    # Loops, not generator expressions: a genexpr is a frame of its own, outside the legal chains.
    cpu_parts, wall_parts = [], []
    for name in sorted(cpu_ns):
        cpu_parts.append(f'"{name}": {cpu_ns[name] / cpu_total:.6f}')
        wall_parts.append(f'"{name}": {wall_ns[name] / wall_total:.6f}')
    cpu_shares, wall_shares = ", ".join(cpu_parts), ", ".join(wall_parts)
    sys.stdout.write(f'{{"true_shares": {{{cpu_shares}}}, "wall_shares": {{{wall_shares}}}, '
                     f'"cpu_seconds": {cpu_total / 1e9:.6f}, "wall_seconds": {wall_total / 1e9:.6f}}}\n')
    sys.stdout.flush()


if __name__ == "__main__":
    main()
