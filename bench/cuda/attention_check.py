"""Attention kernels on the GPU against the interpreter (device.sh flashtile, decattn). Standard library only.

  attention_check.py make DIR      writes DIR/a.lir: four bf16 attentions, (a) head dim 128, 8 query heads on
                                   2 KV heads, causal, S = 200 (a partial last tile of 64); (b) head dim 64,
                                   4 heads, not causal, S = 130, its result transposed to [1, S, 256] (the
                                   transposed output form); (c) batch 2, 70 queries after 80 cached keys
                                   (S < T, causal from position 80), transposed; (d) head dim 64, 8 heads,
                                   causal, S = 130; and DIR/x.safetensors, its seeded inputs.
  attention_check.py make-decode DIR   the same for decode shapes (few queries, many cached keys): (e) Ling-mini's,
                                   16 query heads on 4 KV heads, head dim 128, 1 query over 2048 keys; (f) batch 3,
                                   8 heads on 2, head dim 64, 2 queries (a drafted step) over 301 keys; (g) 6
                                   heads on 2 (groups of 3), head dim 256, 1 query over 70 keys, transposed;
                                   (h) batch 32 (512 query rows: the GQA form of 4 splits), 16 heads on 4, head
                                   dim 128, 1 query over 600 keys.
  attention_check.py compare A B TOL   every tensor of A against B's: max |A - B| / max |B| within TOL
"""
import json
import random
import struct
import sys
from array import array

CASES = [  # name, batch, query heads, KV heads, S (queries), T (keys), head dim, causal, transposed
    ("a", 1, 8, 2, 200, 200, 128, True, False),
    ("b", 1, 4, 4, 130, 130, 64, False, True),
    ("c", 2, 4, 2, 70, 150, 128, True, True),
    ("d", 1, 8, 8, 130, 130, 64, True, False),
]

DECODE_CASES = [
    ("e", 1, 16, 4, 1, 2048, 128, True, False),
    ("f", 3, 8, 2, 2, 301, 64, True, False),
    ("g", 1, 6, 2, 1, 70, 256, True, True),
    ("h", 32, 16, 4, 1, 600, 128, True, False),
]


def bf16_bits(x):
    """Round-to-nearest-even f32 -> bf16 bits."""
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        raw = data[8 + n + a : 8 + n + b]
        if meta["dtype"] == "BF16":
            vals = array("H", raw)
            out[name] = [struct.unpack("<f", struct.pack("<I", v << 16))[0] for v in vals]
        elif meta["dtype"] == "F32":
            out[name] = list(array("f", raw))
        else:
            raise SystemExit(f"{path}: {name} is {meta['dtype']}, this check reads BF16 and F32")
    return out


def make(d, cases):
    rng = random.Random(7)
    params, ops, results, tensors = [], [], [], {}
    for name, B, nh, nkv, S, T, D, causal, transposed in cases:
        for t, heads, rows in (("q", nh, S), ("k", nkv, T), ("v", nkv, T)):
            shape = [B, heads, rows, D]
            params.append(f"%{t}{name}: bf16[{', '.join(map(str, shape))}]")
            vals = array("H", (bf16_bits(rng.uniform(-1.0, 1.0)) for _ in range(B * heads * rows * D)))
            tensors[f"{t}{name}"] = ("BF16", shape, vals.tobytes())
        scale = 1.0 / D**0.5
        ops.append(f"    %o{name} = attention(%q{name}, %k{name}, %v{name}) {{scale = {scale!r}, causal = {str(causal).lower()}}} : bf16[{B}, {nh}, {S}, {D}]")
        if transposed:
            ops.append(f"    %t{name} = transpose(%o{name}) {{perm = [0, 2, 1, 3]}} : bf16[{B}, {S}, {nh}, {D}]")
            ops.append(f"    %r{name} = reshape(%t{name}) {{shape = [{B}, {S}, {nh * D}]}} : bf16[{B}, {S}, {nh * D}]")
            results.append((f"r{name}", f"{name}: bf16[{B}, {S}, {nh * D}]"))
        else:
            results.append((f"o{name}", f"{name}: bf16[{B}, {nh}, {S}, {D}]"))
    lir = "module @att {\n  func @att(" + ", ".join(params) + ")\n      -> (" + ", ".join(r[1] for r in results) + ") {\n"
    lir += "\n".join(ops) + "\n    return " + ", ".join(f"%{r[0]}" for r in results) + "\n  }\n}\n"
    with open(f"{d}/a.lir", "w") as f:
        f.write(lir)
    write_safetensors(f"{d}/x.safetensors", tensors)


def compare(a_path, b_path, tol):
    a, b = read_safetensors(a_path), read_safetensors(b_path)
    ok = True
    for name in sorted(b):
        x, y = a[name], b[name]
        big = max(abs(v) for v in y) or 1.0
        err, at = max((abs(p - q), j) for j, (p, q) in enumerate(zip(x, y)))
        bad = sum(1 for p, q in zip(x, y) if abs(p - q) > tol * big)
        print(f"{name} ({len(y)} values): max error / max |ref| {err / big:.3e} (at {at}: {x[at]:.6g} vs {y[at]:.6g}; {bad} values past the tolerance)")
        ok = ok and bad == 0 and len(x) == len(y)
    print(("PASS" if ok else "FAIL") + f" at {tol}")
    return ok


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"]:
        make(sys.argv[2], CASES)
    elif sys.argv[1:2] == ["make-decode"]:
        make(sys.argv[2], DECODE_CASES)
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(0 if compare(sys.argv[2], sys.argv[3], float(sys.argv[4])) else 1)
    else:
        raise SystemExit(__doc__)
