"""Whether two lingc output files hold the same tensors bit for bit (names, shapes and every value)."""
import sys

import numpy as np
from safetensors.numpy import load_file

a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
if set(a) != set(b):
    print(f"different tensors: only in the first {sorted(set(a) - set(b))[:5]}, only in the second {sorted(set(b) - set(a))[:5]}")
    print("bitwise FAIL")
    sys.exit(1)
bad = [k for k in sorted(a) if a[k].shape != b[k].shape or not np.array_equal(a[k].view(np.uint8), b[k].view(np.uint8))]
for k in bad[:5]:
    d = float(abs(a[k].astype("float64") - b[k].astype("float64")).max()) if a[k].shape == b[k].shape else float("inf")
    print(f"{k}: differs (max abs {d:.3e})")
print(f"{len(a)} tensors, {sum(v.size for v in a.values())} values: bitwise {'PASS' if not bad else 'FAIL'}")
sys.exit(1 if bad else 0)
