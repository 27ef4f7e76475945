"""Compares a lingc output file with the golden one: max abs error of each tensor they share (used on the GPU machine)."""
import sys

from safetensors.numpy import load_file

out, gold = load_file(sys.argv[1]), load_file(sys.argv[2])
worst = 0.0
for k in sorted(set(out) & set(gold)):
    if out[k].shape != gold[k].shape:
        print(f"{k}: shape {out[k].shape} vs golden {gold[k].shape}")
        worst = float("inf")
        continue
    d = float(abs(out[k].astype("float64") - gold[k].astype("float64")).max())
    worst = max(worst, d)
    print(f"{k}: max abs error {d:.3e}")
print(f"worst {worst:.3e} ({'PASS' if worst <= 1e-4 else 'FAIL'} at 1e-4)")
