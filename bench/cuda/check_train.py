"""Checks a `lingc run --graph train` output against upstream's training step (train_golden.safetensors):
losses within 1e-5 relative, every gradient within 1e-4 of its tensor's max abs value, tokens_per_expert
identical, no gradient that upstream lacks. Prints one line per failure and a verdict (used on the GPU machine)."""
import sys

import numpy as np
from safetensors.numpy import load_file

got, want = load_file(sys.argv[1]), load_file(sys.argv[2])
# lingc_model itself writes a layer's expert gradients stacked (`...experts.*.<proj>`, [E, ...]); `lingc run` per expert.
for k in [k for k in got if ".*." in k]:
    for e in range(got[k].shape[0]):
        got[k.replace(".*.", f".{e}.")] = got[k][e]
    del got[k]
bad = 0
for k in ("loss", "loss_main", "loss_mtp"):
    rel = abs(float(got[k][0]) / float(want[k][0]) - 1)
    print(f"{k}: {float(got[k][0]):.8f} vs {float(want[k][0]):.8f} (rel {rel:.2e})")
    bad += rel > 1e-5
grads = [k for k in want if k.startswith("grad.")]
worst = 0.0
for k in grads:
    if k not in got or got[k].shape != want[k].shape:
        print(f"{k}: missing or shape {got.get(k, np.zeros(0)).shape} vs {want[k].shape}")
        bad += 1
        continue
    most = float(abs(want[k].astype("float64")).max())
    d = float(abs(got[k].astype("float64") - want[k].astype("float64")).max())
    worst = max(worst, d / most if most else d)
    if d > 1e-4 * most:
        print(f"{k}: max error {d:.3e} against max |g| {most:.3e}")
        bad += 1
for k in [k for k in want if k.startswith("tokens_per_expert.")]:
    if not np.array_equal(got[k], want[k]):
        print(f"{k}: {got[k].tolist()} vs {want[k].tolist()}")
        bad += 1
extra = [k for k in got if k.startswith("grad.") and k not in want]
if extra:
    print(f"gradients upstream lacks: {extra}")
    bad += 1
print(f"{len(grads)} gradients, worst error / max |g| {worst:.2e}: {'PASS' if bad == 0 else f'FAIL ({bad})'}")
