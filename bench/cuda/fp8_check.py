"""FP8 checks on the H200 against tests/data/golden/ling-small-fp8 (device.sh fp8).

  fp8_check.py logits OUT.safetensors KEY        logits/mtp_logits vs the golden's <KEY> (w8a16: tolerance 1e-4; w8a8: report only)
  fp8_check.py module DIR                        writes DIR/p.lir (the three W8A8 projections) and DIR/x.safetensors
  fp8_check.py projections OUT.safetensors [TOL] q and s bit for bit, y within TOL (1e-5) of its largest value
  fp8_check.py ids OUT.safetensors | prompt | want  the golden's input_ids alone / as a --prompt / greedy_ids_w8a16 as text
"""
import sys
import numpy as np
from safetensors.numpy import save_file
from safetensors.torch import load_file as load_torch


def load_file(path):
    """Every tensor as numpy (through torch: numpy has no float8 dtype); fp8 values as f32 (exact)."""
    import torch
    return {k: (v.float() if v.dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.bfloat16) else v).numpy() for k, v in load_torch(path).items()}

G = "tests/data/golden/ling-small-fp8/golden.safetensors"
PROJ = ["layers.0.attention.query_key_value", "layers.0.mlp.down_proj", "layers.1.mlp.shared_experts.down_proj"]


def logits(out, key):
    g, o = load_file(G), load_file(out)
    worst = 0.0
    for name in ["logits", "mtp_logits"]:
        d = float(np.abs(o[name].astype(np.float64) - g[f"{name}_{key}"].astype(np.float64)).max())
        worst = max(worst, d)
        print(f"{name} vs {name}_{key}: max abs error {d:.3e}")
    if key == "w8a16":
        print(f"worst {worst:.3e} ({'PASS' if worst <= 1e-4 else 'FAIL'} at 1e-4)")
    else:
        print(f"W8A8 distance {worst:.3e} (reported; upstream's fp32 and fp64 runs differ by 1.57)")


def module(d):
    g = load_file(G)
    params, weights, body, results, rtypes, xs = [], [], [], [], [], {}
    for i, name in enumerate(PROJ):
        x = g[f"aq.{name}.x"]
        t, k = x.shape
        o = g[f"aq.{name}.y"].shape[1]
        q = f"f8e4m3fn[{t}, {k}] scale(f32, block(1, 128))"
        params.append(f"%x{i}: f32[{t}, {k}]")
        weights.append(f"@model.{name}.weight: f8e4m3fn[{o}, {k}] scale(f32, block(128, 128))")
        body.append(f'    %q{i} = quantize(%x{i}) {{to = f8e4m3fn, block = [1, 128], recipe = "dynamic"}} : {q} scope("aq{i}")')
        body.append(f"    %y{i} = linear(%q{i}, @model.{name}.weight) {{out = f32}} : f32[{t}, {o}] scope(\"proj{i}\")")
        results += [f"%q{i}", f"%y{i}"]
        rtypes += [f"q{i}: {q}", f"y{i}: f32[{t}, {o}]"]
        xs[f"x{i}"] = x
    text = "module @p {\n  func @p(" + ", ".join(params) + ")\n      weights(\n        " + ",\n        ".join(weights) + "\n      )\n      -> (" + ", ".join(rtypes) + ") {\n" + "\n".join(body) + "\n    return " + ", ".join(results) + "\n  }\n}\n"
    open(f"{d}/p.lir", "w").write(text)
    save_file(xs, f"{d}/x.safetensors")


def projections(out, tol=1e-5):
    g, o = load_file(G), load_file(out)
    ok = True
    for i, name in enumerate(PROJ):
        q_ok = np.array_equal(o[f"q{i}"].view(np.uint32), g[f"aq.{name}.q"].astype(np.float32).view(np.uint32))
        s_ok = np.array_equal(o[f"q{i}.scale"].view(np.uint32), g[f"aq.{name}.s"].view(np.uint32))
        want = g[f"aq.{name}.y"].astype(np.float64)
        rel = float(np.abs(o[f"y{i}"].astype(np.float64) - want).max() / np.abs(want).max())
        good = q_ok and s_ok and rel <= tol
        ok &= good
        print(f"{name}: q {'bit-exact' if q_ok else 'DIFFERS'}, s {'bit-exact' if s_ok else 'DIFFERS'}, y max error / max |y| {rel:.3e}: {'PASS' if good else 'FAIL'}")
    print(f"projections PASS (y within {tol:g})" if ok else f"projections FAIL (y within {tol:g})")


def ids(what):
    g = load_file(G)
    x = g["input_ids"]
    if what == "prompt":
        print(";".join(",".join(str(int(v)) for v in r) for r in x))
    elif what == "want":
        print("|".join(" ".join(str(int(v)) for v in r[x.shape[1]:]) for r in g["greedy_ids_w8a16"]))
    else:
        save_file({"input_ids": x}, what)


if __name__ == "__main__":
    {"logits": lambda: logits(sys.argv[2], sys.argv[3]), "module": lambda: module(sys.argv[2]), "projections": lambda: projections(sys.argv[2], *[float(t) for t in sys.argv[3:4]]), "ids": lambda: ids(sys.argv[2])}[sys.argv[1]]()
