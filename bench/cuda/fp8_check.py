"""FP8 checks on the H200 against tests/data/golden/ling-small-fp8 (device.sh fp8).

  fp8_check.py logits OUT.safetensors KEY        logits/mtp_logits vs the golden's <KEY> (w8a16: tolerance 1e-4; w8a8: report only)
  fp8_check.py module DIR [y]                    writes DIR/p.lir (the three W8A8 projections) and DIR/x.safetensors;
                                                 with y, p-y.lir returns only the outputs (the quantized inputs stay internal)
  fp8_check.py projections OUT.safetensors [TOL] q and s bit for bit, y within TOL (1e-5) of its largest value
  fp8_check.py ids OUT.safetensors | prompt | want  the golden's input_ids alone / as a --prompt / greedy_ids_w8a16 as text
  fp8_check.py experts DIR                       writes DIR/e.lir (W8A8 routed experts of layer 1: SwiGLU then down, rows
                                                 grouped unevenly over the experts, some empty, some over 128) and DIR/e.safetensors
  fp8_check.py compare A.safetensors B.safetensors TOL [NAME=TOL ...]   every tensor of A against B's: max error / max |B| within TOL (or NAME's own)
"""
import sys
import numpy as np


def save_file(tensors, path):
    from safetensors.numpy import save_file as save
    save(tensors, path)


def load_file(path):
    """Every tensor as numpy (through torch: numpy has no float8 dtype); fp8 values as f32 (exact)."""
    import torch
    from safetensors.torch import load_file as load_torch
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


def module(d, only_y=False):
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
        results += [f"%y{i}"] if only_y else [f"%q{i}", f"%y{i}"]
        rtypes += [f"y{i}: f32[{t}, {o}]"] if only_y else [f"q{i}: {q}", f"y{i}: f32[{t}, {o}]"]
        xs[f"x{i}"] = x
    text = "module @p {\n  func @p(" + ", ".join(params) + ")\n      weights(\n        " + ",\n        ".join(weights) + "\n      )\n      -> (" + ", ".join(rtypes) + ") {\n" + "\n".join(body) + "\n    return " + ", ".join(results) + "\n  }\n}\n"
    open(f"{d}/p-y.lir" if only_y else f"{d}/p.lir", "w").write(text)
    save_file(xs, f"{d}/x.safetensors")


def projections(out, tol=1e-5):
    g, o = load_file(G), load_file(out)
    ok = True
    for i, name in enumerate(PROJ):
        # (a run of p-y.lir has no q and s: they are checked where they are outputs)
        q_ok = f"q{i}" not in o or np.array_equal(o[f"q{i}"].view(np.uint32), g[f"aq.{name}.q"].astype(np.float32).view(np.uint32))
        s_ok = f"q{i}" not in o or np.array_equal(o[f"q{i}.scale"].view(np.uint32), g[f"aq.{name}.s"].view(np.uint32))
        want = g[f"aq.{name}.y"].astype(np.float64)
        rel = float(np.abs(o[f"y{i}"].astype(np.float64) - want).max() / np.abs(want).max())
        good = q_ok and s_ok and rel <= tol
        ok &= good
        qs = f"q {'bit-exact' if q_ok else 'DIFFERS'}, s {'bit-exact' if s_ok else 'DIFFERS'}" if f"q{i}" in o else "q, s internal"
        print(f"{name}: {qs}, y max error / max |y| {rel:.3e}: {'PASS' if good else 'FAIL'}")
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


# Row counts per expert for the experts check: empty experts, single rows, tiles of exactly 128, more than two tiles.
EXPERT_ROWS = [0, 1, 130, 5, 0, 128, 7, 33, 0, 0, 257, 3, 64, 2, 0, 9]


def st_write(path, tensors):
    """A safetensors file of f32/i32 numpy arrays (no safetensors package needed)."""
    import json
    code = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32", np.dtype(np.int64): "I64"}
    header, blobs, at = {}, [], 0
    for k, v in tensors.items():
        v = np.ascontiguousarray(v)
        header[k] = {"dtype": code[v.dtype], "shape": list(v.shape), "data_offsets": [at, at + v.nbytes]}
        blobs.append(v.tobytes())
        at += v.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def st_read(path):
    """f32/i32/i64 tensors of a safetensors file as numpy arrays."""
    import json
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    kinds = {"F32": np.float32, "I32": np.int32, "I64": np.int64}
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] not in kinds:
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=kinds[v["dtype"]]).reshape(v["shape"])
    return out


def experts(d):
    E, H, F = len(EXPERT_ROWS), 256, 128
    R = sum(EXPERT_ROWS)
    w = lambda p, o, i: f"@model.layers.1.mlp.experts.*.{p}.weight: f8e4m3fn[{E}, {o}, {i}] scale(f32, block(128, 128))"
    q = lambda n: f'{{to = f8e4m3fn, block = [1, 128], recipe = "dynamic"}} : f8e4m3fn[R, {n}] scale(f32, block(1, 128))'
    gl = lambda x, p, n: f"grouped_linear({x}, @model.layers.1.mlp.experts.*.{p}.weight, %off) {{out = f32}} : f32[R, {n}]"
    text = f"""module @e {{
  func @e(%x: f32[R, {H}], %off: i32[{E + 1}])
      weights(
        {w("gate_proj", F, H)},
        {w("up_proj", F, H)},
        {w("down_proj", H, F)}
      )
      -> (h: f32[R, {F}], y: f32[R, {H}]) {{
    %q = quantize(%x) {q(H)}
    %g = {gl("%q", "gate_proj", F)}
    %u = {gl("%q", "up_proj", F)}
    %s = silu(%g) : f32[R, {F}]
    %h = mul(%s, %u) : f32[R, {F}]
    %q2 = quantize(%h) {q(F)}
    %y = {gl("%q2", "down_proj", H)}
    return %h, %y
  }}
}}
"""
    open(f"{d}/e.lir", "w").write(text)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((R, H)).astype(np.float32)
    x[::17] *= 40  # rows whose groups have much larger scales than their neighbours'
    off = np.concatenate([[0], np.cumsum(EXPERT_ROWS)]).astype(np.int32)
    st_write(f"{d}/e.safetensors", {"x": x, "off": off})


def compare(a, b, tol, *per_key):
    """per_key: NAME=TOL entries for tensors held to another bound than tol."""
    A, B = st_read(a), st_read(b)
    bounds = {k: float(v) for k, v in (e.split("=") for e in per_key)}
    ok = True
    for k in sorted(B):
        if k not in A:
            continue
        want = B[k].astype(np.float64)
        rel = float(np.abs(A[k].astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))
        tol_k = bounds.get(k, tol)
        ok &= rel <= tol_k
        print(f"{k}: max error / max |ref| {rel:.3e} ({'PASS' if rel <= tol_k else 'FAIL'} at {tol_k:g})")
    print("compare PASS" if ok else "compare FAIL")


if __name__ == "__main__":
    {"logits": lambda: logits(sys.argv[2], sys.argv[3]), "module": lambda: module(sys.argv[2], sys.argv[3:4] == ["y"]), "projections": lambda: projections(sys.argv[2], *[float(t) for t in sys.argv[3:4]]), "ids": lambda: ids(sys.argv[2]),
     "experts": lambda: experts(sys.argv[2]), "compare": lambda: compare(sys.argv[2], sys.argv[3], float(sys.argv[4]), *sys.argv[5:])}[sys.argv[1]]()
