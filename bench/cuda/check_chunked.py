"""Chunked prefill on a backend, from the golden set: a forward of the first K tokens, then the decode
graph over the rest with that cache, against the forward of the whole prompt (used on the GPU machine).
  check_chunked.py first GOLDEN K OUT        the first K tokens as a forward input
  check_chunked.py rest GOLDEN K FIRST OUT   the other tokens and the forward's cache as a decode input
  check_chunked.py compare GOLDEN K DECODED  the decode's logits against golden logits[:, K:]"""
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

cmd, gold, k = sys.argv[1], load_file(sys.argv[2]), int(sys.argv[3])
ids = gold["input_ids"]
if cmd == "first":
    save_file({"input_ids": np.ascontiguousarray(ids[:, :k])}, sys.argv[4])
elif cmd == "rest":
    first = load_file(sys.argv[4])
    out = {"input_ids": np.ascontiguousarray(ids[:, k:])}
    for name, t in first.items():
        if name.startswith("present."):
            out["past." + name[len("present."):]] = t
    save_file(out, sys.argv[5])
else:
    got, want = load_file(sys.argv[4])["logits"], gold["logits"][:, k:]
    d = float(abs(got.astype("float64") - want.astype("float64")).max()) if got.shape == want.shape else float("inf")
    print(f"chunked prefill: logits of tokens {k}.. {got.shape}: max abs error {d:.3e} ({'PASS' if d <= 1e-4 else 'FAIL'} at 1e-4)")
