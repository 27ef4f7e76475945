"""The router kernels on the GPU against the interpreter (device.sh routerwarp). Standard library only.

  router_check.py make DIR   writes DIR/r.lir: Ling-mini-2.0's router on 37 tokens (256 experts in 8 groups,
                             the best 4 groups by their top-2 sums, top-8, weights normalized and scaled
                             by 2.5), DIR/x.safetensors (seeded logits) and DIR/w.safetensors (its bias).
Compare with `lingc compare DIR/r.lir --weights DIR/w.safetensors --input DIR/x.safetensors --backends
interp,cuda [--prefer router:router_warp]`: the indices must be equal, the weights within 1e-4.
"""
import random
import sys
from array import array

from attention_check import write_safetensors

T, E, G, KEEP, GST, K = 37, 256, 8, 4, 2, 8

LIR = f"""module @r {{
  func @r(%x: f32[{T}, {E}]) weights(@bias: f32[{E}]) -> (idx: i32[{T}, {K}], w: f32[{T}, {K}]) {{
    %s = sigmoid(%x) : f32[{T}, {E}]
    %b = add(%s, @bias) : f32[{T}, {E}]
    %idx = group_topk(%b) {{k = {K}, groups = {G}, topk_groups = {KEEP}, group_score_topk = {GST}}} : i32[{T}, {K}]
    %g = take_along(%s, %idx) : f32[{T}, {K}]
    %sum = reduce_sum(%g) {{axes = [-1], keepdims = true}} : f32[{T}, 1]
    %eps = constant() {{values = [1e-20], dtype = f32}} : f32[]
    %d = add(%sum, %eps) : f32[{T}, 1]
    %n = div(%g, %d) : f32[{T}, {K}]
    %c = constant() {{values = [2.5], dtype = f32}} : f32[]
    %w = mul(%n, %c) : f32[{T}, {K}]
    return %idx, %w
  }}
}}
"""


def make(d):
    rng = random.Random(11)
    with open(f"{d}/r.lir", "w") as f:
        f.write(LIR)
    x = array("f", (rng.gauss(0.0, 2.0) for _ in range(T * E)))
    bias = array("f", (rng.uniform(-0.05, 0.05) for _ in range(E)))
    write_safetensors(f"{d}/x.safetensors", {"x": ("F32", [T, E], x.tobytes())})
    write_safetensors(f"{d}/w.safetensors", {"bias": ("F32", [E], bias.tobytes())})


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"]:
        make(sys.argv[2])
    else:
        raise SystemExit(__doc__)
