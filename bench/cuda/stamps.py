#!/usr/bin/env python3
"""Reads the timeline stamps of one CUDA-graph decode step (lingc_runtime.h's stamps: a model.cu
compiled with LINGC_STAMPS=on, `lingc_model bench ...` run with LINGC_STAMPS_OUT=PREFIX) and prints
where the step's time goes: every generated kernel's launches in start order, each one's span (the
first workgroup past the wait for the kernel before to the last workgroup's end), the gap since the
launch before ended (negative: they overlapped, as programmatic dependent launch lets them), when
its last workgroup started and its first ended, and for a launch with grid barriers each barrier's
spread (first to last arrival) and release (last arrival to first departure). Runtime kernels (cuBLASLt, the MoE dispatch) are not stamped: they show as gaps.

usage: stamps.py MODEL_CU STAMPS.bin [--layer N]   (N: which repeat of the step's most launched kernel
       to show in full; default the middle one)
"""
import re
import struct
import sys
from collections import defaultdict

KERNELS, LAUNCHES, EVENTS = 1024, 64, 16  # lingc_runtime.h's STAMP_KERNELS, STAMP_LAUNCHES, STAMP_EVENTS


def kernel_names(model_cu):
    names = {}
    for m in re.finditer(r'__global__ void (?:__launch_bounds__\([^)]*\) )?(k_\w+?_(\d+))\(', open(model_cu).read()):
        names[int(m.group(2))] = m.group(1)
    return names


def launches(path):
    data = open(path, "rb").read()
    words = struct.unpack(f"<{len(data) // 8}Q", data)
    out = []
    for kid in range(KERNELS):
        if not words[kid]:
            continue
        for launch in range(LAUNCHES):
            base = KERNELS + (kid * LAUNCHES + launch) * EVENTS * 2
            ev = {}
            for e in range(EVENTS):
                lo, hi = words[base + 2 * e], words[base + 2 * e + 1]
                if hi:
                    ev[e] = ((~lo) & 0xFFFFFFFFFFFFFFFF, hi)
            if 0 in ev and 15 in ev:
                out.append((kid, launch, ev))
    return out


def main():
    args = sys.argv[1:]
    layer = None
    if "--layer" in args:
        i = args.index("--layer")
        layer = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    names = kernel_names(args[0])
    ls = launches(args[1])
    if not ls:
        sys.exit(f"{args[1]}: no stamped launches")
    ls.sort(key=lambda x: x[2][0][0])
    t0 = ls[0][2][0][0]
    stamps = sorted({t for _, _, ev in ls for pair in ev.values() for t in pair})
    steps = [b - a for a, b in zip(stamps, stamps[1:]) if b > a]
    print(f"{len(ls)} stamped launches; span {(ls[-1][2][15][1] - t0) / 1e3:.1f} us; timer step {min(steps) if steps else 0} ns")
    by_name = defaultdict(lambda: [0, 0.0, 0.0, 0.0])  # launches, span, gap before, barrier release
    prev_end = None
    rows = []
    for kid, launch, ev in ls:
        name = names.get(kid, f"kernel {kid}")
        start, end = ev[0][0], ev[15][1]
        gap = (start - prev_end) if prev_end is not None else 0
        release = 0
        barriers = []
        for a in range(1, 15, 2):
            if a in ev and a + 1 in ev:
                spread = ev[a][1] - ev[a][0]
                rel = ev[a + 1][0] - ev[a][1]
                release += rel
                barriers.append((a, spread, rel, ev[a][1] - start))
        s = by_name[name]
        s[0] += 1
        s[1] += end - start
        s[2] += gap
        s[3] += release
        rows.append((name, launch, start - t0, end - start, gap, barriers, ev[0][1] - start, ev[15][0] - start))
        prev_end = end if prev_end is None else max(prev_end, end)
    total_span = sum(r[3] for r in rows)
    total_gap = sum(r[4] for r in rows)
    print(f"sum of launch spans {total_span / 1e3:.1f} us, of gaps between them {total_gap / 1e3:.1f} us (negative: overlap)")
    print(f"\n{'kernel':40s} {'launches':>8s} {'span us':>9s} {'mean':>7s} {'gaps us':>9s} {'mean':>7s} {'barrier release us':>19s}")
    for name, (n, span, gap, rel) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:40s} {n:8d} {span / 1e3:9.1f} {span / n / 1e3:7.2f} {gap / 1e3:9.1f} {gap / n / 1e3:7.2f} {rel / 1e3:19.1f}")
    # One layer in full: between two launches of the most launched kernel.
    counts = defaultdict(list)
    for i, r in enumerate(rows):
        counts[r[0]].append(i)
    anchor = max(counts.values(), key=lambda v: (len(v), -v[0]))
    k = layer if layer is not None else len(anchor) // 2
    if k + 1 < len(anchor):
        print(f"\nrepeat {k} of {rows[anchor[0]][0]} to the next (us from the step's first stamp):")
        print(f"{'kernel':40s} {'start':>9s} {'span':>7s} {'gap':>7s} {'last in':>7s} {'1st out':>7s}  barriers (event: arrival spread / release, at us into the launch)")
        for r in rows[anchor[k] : anchor[k + 1]]:
            bars = "  ".join(f"{a}: {sp / 1e3:.2f}/{rel / 1e3:.2f} @{at / 1e3:.1f}" for a, sp, rel, at in r[5])
            print(f"{r[0]:40s} {r[2] / 1e3:9.2f} {r[3] / 1e3:7.2f} {r[4] / 1e3:7.2f} {r[6] / 1e3:7.2f} {r[7] / 1e3:7.2f}  {bars}")


if __name__ == "__main__":
    main()
