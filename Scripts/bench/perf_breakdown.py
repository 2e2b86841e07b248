"""Where pybpfprof's own CPU went, from `perf record -g -p PID` of one `record` run (Scripts/bench-all --perf).

    python3 perf_breakdown.py PERF.DATA

Reads `perf script` and puts each sample of the profiler's threads in one bucket, by the outermost pybpfprof
function on its stack that names a phase of the recording (first match in BUCKETS, root side first), and
prints the buckets' shares of all samples. Symbols are matched mangled (no demangler needed).
A sample goes to the first bucket in BUCKETS that any of its frames matches, so the list is in priority order:
start-up phases before the per-process work they share code with, specific drain work before the drain loop.
"""
import subprocess
import sys
from collections import Counter

# (bucket, substrings of a mangled Swift symbol), in priority order.
BUCKETS = [
    ("start: kernel symbols (/proc/kallsyms)", ["KernelSymbolsV4read"]),
    ("start: BPF load (verifier), maps", ["7SamplerC14ringBufferBytes", "BPFObject"]),
    ("start: scan /proc for interpreters", ["ProcessScannerO15pythonProcesses"]),
    ("start: register running processes (unwind tables)", ["registerRunningTargets"]),
    ("sampling: locate new processes", ["18InterpreterLocatorO6locate3pid", "InterpreterLocatorO6locate"]),
    ("sampling: register new processes (maps, unwind tables)", ["8RecorderC8register", "followNewProcesses"]),
    ("sampling: re-read maps of processes (new libraries)", ["refreshStaleMappings"]),
    ("drain: symbolize Python frames", ["StackDecoderV11pythonFrame", "StackDecoderC11pythonFrame", "PythonSymbolizer"]),
    ("drain: symbolize native frames", ["StackDecoderV11nativeFrame", "StackDecoderC11nativeFrame"]),
    ("drain: process events (exec/fork/exit)", ["handleProcessEvent"]),
    ("drain: decode and store samples", ["8RecorderC6handle", "RingBufferReader", "Sampler"]),
    ("end: write the profile", ["Exporter", "writeAtomically", "OutputFormat"]),
    ("end: summary", ["7SummaryV"]),
    ("end: statistics, teardown", ["8RecorderC6finish", "RecorderCfD", "RecorderCfd"]),
    ("recording loop, idle polling", ["8RecorderC3run"]),
]


def bucket_of(frames):
    """The first bucket of BUCKETS that any frame of the stack matches."""
    best = None
    for frame in frames:  # leaf first
        for rank, (name, needles) in enumerate(BUCKETS):
            if any(needle in frame for needle in needles):
                if best is None or rank < best[0]:
                    best = (rank, name)
    # Mostly malloc/free/munmap, whose stacks perf cannot unwind through glibc: large buffers freed at the start.
    return best[1] if best else "other: allocator and kernel, stack not unwound"


def main():
    script = subprocess.run(["perf", "script", "-i", sys.argv[1], "-F", "tid,ip,sym"], capture_output=True, text=True).stdout
    counts = Counter()
    for block in script.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if not lines:
            continue
        counts[bucket_of(lines[1:])] += 1
    total = sum(counts.values())
    print(f"{total} perf samples of pybpfprof")
    for name, count in counts.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
