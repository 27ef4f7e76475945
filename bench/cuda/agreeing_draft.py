"""
A checkpoint whose MTP layer drafts exactly what its main model will pick (speculative decoding
accepts every draft): every attention output projection and MLP down projection zeroed, the final
norms made ones, eh_proj made [I | 0] (tests/support/agreeing-draft.ts says why; the same rule).

usage: python3 bench/cuda/agreeing_draft.py FROM_DIR TO_DIR
"""
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

src, dst = sys.argv[1], sys.argv[2]
t = load_file(os.path.join(src, "model.safetensors"))
for name, w in t.items():
    if name.endswith("attention.dense.weight") or name.endswith("down_proj.weight"):
        t[name] = np.zeros_like(w)
    elif name == "model.norm.weight" or name.endswith(".enorm.weight") or name.endswith(".final_layernorm.weight"):
        t[name] = np.ones_like(w)
    elif name.endswith(".eh_proj.weight"):
        e = np.zeros_like(w)
        e[:, : w.shape[0]] = np.eye(w.shape[0], dtype=w.dtype)
        t[name] = e
os.makedirs(dst, exist_ok=True)
save_file(t, os.path.join(dst, "model.safetensors"))
shutil.copy(os.path.join(src, "config.json"), os.path.join(dst, "config.json"))
