"""Sums Nsight Compute's per-kernel durations (ncu --csv --metrics gpu__time_duration.sum) by kernel.

Usage: python3 bench/cuda/ncu_step.py report.csv [step_start_regex]
Prints each kernel's launches and total microseconds, largest first, and the sum: each kernel timed
alone (serialized, caches flushed), so the sum is the step's work without launch gaps or overlap.
With step_start_regex (a decode step's first kernel, e.g. ^k_iota_), only the kernels from its first
match up to its second are counted: one step.
"""
import csv
import re
import sys
from collections import defaultdict

rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
if len(sys.argv) > 2:
    starts = [i for i, r in enumerate(rows) if re.search(sys.argv[2], r["Kernel Name"])]
    rows = rows[starts[0] : starts[1] if len(starts) > 1 else len(rows)]
total = defaultdict(float)
count = defaultdict(int)
for r in rows:
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = re.sub(r"_\d+$", "", r["Kernel Name"].split("(")[0])
    scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}[r["Metric Unit"]]
    total[name] += float(r["Metric Value"].replace(",", "")) * scale
    count[name] += 1
for name, us in sorted(total.items(), key=lambda kv: -kv[1]):
    print(f"{us:10.1f} us  {count[name]:4d} x  {name}")
print(f"{sum(total.values()):10.1f} us  {sum(count.values()):4d} launches in all")
