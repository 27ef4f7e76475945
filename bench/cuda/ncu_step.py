"""One decode step's kernels from an Nsight Compute CSV (gpu__time_duration.sum per kernel, each kernel
alone): the step between the last two launches of the step's first kernel (the token embedding),
its kernel count and summed time, and each kernel name's count and time.

usage: python3 bench/cuda/ncu_step.py NCU.csv [FIRST_KERNEL_PREFIX]   (default prefix: k_embedding)
"""
import collections
import csv
import sys


def main() -> None:
    path = sys.argv[1]
    first = sys.argv[2] if len(sys.argv) > 2 else "k_embedding"
    rows = list(csv.reader(open(path)))
    head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
    if head is None:
        sys.exit(f"{path}: no 'Kernel Name' column (not an ncu --csv file?)")
    cols = rows[head]
    name_at, value_at = cols.index("Kernel Name"), cols.index("Metric Value")
    kernels = [(r[name_at], float(r[value_at].replace(",", ""))) for r in rows[head + 1:] if len(r) > value_at]
    starts = [i for i, (k, _) in enumerate(kernels) if k.startswith(first)]
    if len(starts) < 2:
        sys.exit(f"{path}: fewer than two launches of a kernel named {first}*: no whole step to show")
    step = kernels[starts[-2]:starts[-1]]
    print(f"one step: {len(step)} kernels, {sum(v for _, v in step) / 1000:.1f} us summed (each kernel alone)")
    total: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for k, v in step:
        key = k.split("(")[0][:60]
        total[key] += v
        count[key] += 1
    for k, v in total.most_common():
        print(f"{v / 1000:9.1f} us {count[k]:4d} x {v / 1000 / count[k]:7.2f} us  {k}")


if __name__ == "__main__":
    main()
