"""Counts, in a folded profile of Tests/IntegrationTests/Fixtures/native/callback_workload.py, the samples in
ext_inner_native whose whole user stack is __libc_start_main ... caller;ext_outer_native;callback;ext_inner_native.
Usage: exact_chains.py PROFILE.folded"""
import sys
exact = total = marked = 0
for line in open(sys.argv[1]):
    stack, count = line.rstrip("\n").rsplit(" ", 1)
    frames = [f.split(" (")[0] for f in stack.split(";") if not f.endswith("_[k]") and not f.split(" (")[0].endswith("_[k]")]
    if not frames or frames[-1] != "ext_inner_native":
        continue
    total += int(count)
    if any(f.startswith("[native") for f in frames):
        marked += int(count)
    elif frames[-4:] == ["caller", "ext_outer_native", "callback", "ext_inner_native"] and frames[0].startswith("__libc_start_main"):
        exact += int(count)
print(f"ext_inner_native samples {total}, marked {marked}, exact chain root..caller;ext_outer_native;callback;ext_inner_native {exact} ({100*exact/max(total-marked,1):.2f}% of unmarked)")
