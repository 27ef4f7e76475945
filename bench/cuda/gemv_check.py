"""Decode's dense GEMVs (linear_gemv: backends/kernels/gen/grouped-gemv.ts) on the GPU against the interpreter
(device.sh gemvsplit). Standard library only.

  gemv_check.py make DIR       writes DIR/g.lir: one row through Ling-mini-2.0's dense linears, each its own step:
                               the router gate (f32, 256 x 2048: K split among all eight warps of a tile), QKV
                               (bf16, 3072 x 2048), the attention output (2048 x 2048), the shared expert's SwiGLU
                               (gate and up 512 x 2048, silu, mul) and its down projection (2048 x 512); and
                               DIR/x.safetensors, its seeded inputs, DIR/w.safetensors, its weights.
  gemv_check.py compare A B    every tensor of A against B's: max |A - B| / max |B| within 1e-5 for f32 results,
                               2^-7 for bf16 ones (a sum in another order can round a bf16 result one step the
                               other way)
"""
import random
import sys
from array import array

from attention_check import bf16_bits, read_safetensors, write_safetensors

H, N_QKV, F, E = 2048, 3072, 512, 256

LIR = f"""module @g {{
  func @g(%x: bf16[1, {H}], %xf: f32[1, {H}], %h: bf16[1, {F}])
      weights(@gate: f32[{E}, {H}], @qkv: bf16[{N_QKV}, {H}], @o: bf16[{H}, {H}], @sg: bf16[{F}, {H}], @su: bf16[{F}, {H}], @sd: bf16[{H}, {F}])
      -> (router: f32[1, {E}], qkv: bf16[1, {N_QKV}], o: bf16[1, {H}], swiglu: bf16[1, {F}], down: bf16[1, {H}]) {{
    %router = linear(%xf, @gate) : f32[1, {E}]
    %qkv = linear(%x, @qkv) : bf16[1, {N_QKV}]
    %o = linear(%x, @o) : bf16[1, {H}]
    %a = linear(%x, @sg) : bf16[1, {F}]
    %b = linear(%x, @su) : bf16[1, {F}]
    %s = silu(%a) : bf16[1, {F}]
    %swiglu = mul(%s, %b) : bf16[1, {F}]
    %down = linear(%h, @sd) : bf16[1, {H}]
    return %router, %qkv, %o, %swiglu, %down
  }}
}}
"""


def make(d):
    rng = random.Random(5)
    with open(f"{d}/g.lir", "w") as f:
        f.write(LIR)
    bf = lambda n, s: ("BF16", array("H", (bf16_bits(rng.gauss(0.0, s)) for _ in range(n))).tobytes())
    f32 = lambda n, s: ("F32", array("f", (rng.gauss(0.0, s) for _ in range(n))).tobytes())
    inputs = {"x": ([1, H], bf(H, 1.0)), "xf": ([1, H], f32(H, 1.0)), "h": ([1, F], bf(F, 1.0))}
    weights = {"gate": ([E, H], f32(E * H, 0.02)), "qkv": ([N_QKV, H], bf(N_QKV * H, 0.02)), "o": ([H, H], bf(H * H, 0.02)),
               "sg": ([F, H], bf(F * H, 0.02)), "su": ([F, H], bf(F * H, 0.02)), "sd": ([H, F], bf(H * F, 0.04))}
    for path, ts in ((f"{d}/x.safetensors", inputs), (f"{d}/w.safetensors", weights)):
        write_safetensors(path, {n: (dt, shape, raw) for n, (shape, (dt, raw)) in ts.items()})


def compare(a_path, b_path):
    a, b = read_safetensors(a_path), read_safetensors(b_path)
    ok = True
    for name in sorted(b):
        x, y = a[name], b[name]
        tol = 1e-5 if name == "router" else 2**-7
        big = max(abs(v) for v in y) or 1.0
        err = max(abs(p - q) for p, q in zip(x, y))
        good = len(x) == len(y) and err <= tol * big
        print(f"{name} ({len(y)} values): max error / max |ref| {err / big:.3e} (tolerance {tol:.3g}) {'ok' if good else 'OVER'}")
        ok = ok and good
    print("PASS" if ok else "FAIL")
    return ok


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"]:
        make(sys.argv[2])
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(0 if compare(sys.argv[2], sys.argv[3]) else 1)
    else:
        sys.exit(__doc__)
