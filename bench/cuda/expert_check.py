"""The routed experts' bf16 tile program against the interpreter (device.sh tiles).

  expert_check.py make DIR        writes DIR/e.lir (token gather, SwiGLU experts, down experts: bf16; both results
                                  combined back per token, as the row order of a GPU dispatch varies), its seeded
                                  weights DIR/w.safetensors and input DIR/e.safetensors. The routing is uneven on
                                  purpose: expert 0 gets no rows, expert 1 every token (several row tiles), expert 2
                                  one row; the expert width F = 200 is no multiple of the 32-wide K stages or the
                                  64-column tiles, so the last stage and the last column tile are partial.
  expert_check.py compare A B TOL every tensor of A against B's: max |A - B| / max |B| within TOL
"""
import sys
import numpy as np
import torch
from safetensors.torch import load_file, save_file

T, H, F, E, K = 200, 256, 200, 16, 4
# Other sizes from the environment (EXPERT_T=2 EXPERT_H=512 EXPERT_F=256: decode-sized rows, the expert GEMVs).
import os
T, H, F = (int(os.environ.get(f"EXPERT_{n}", v)) for n, v in (("T", T), ("H", H), ("F", F)))


def make(d):
    g = torch.Generator().manual_seed(11)
    ids = np.zeros((T, K), dtype=np.int32)
    rng = np.random.default_rng(11)
    for t in range(T):
        rest = rng.choice(np.arange(3, E), size=K - 1, replace=False)
        ids[t] = [1, *rest]
    if T > 7:
        ids[7, 1] = 2  # expert 2: exactly one row
    # Outputs per token (moe_combine): the rows' dispatch order is not deterministic on the GPU.
    lir = f"""module @e {{
  func @e(%x: bf16[{T}, {H}], %ids: i32[{T}, {K}], %wts: f32[{T}, {K}])
      weights(
        @gate: bf16[{E}, {F}, {H}],
        @up: bf16[{E}, {F}, {H}],
        @down: bf16[{E}, {H}, {F}]
      )
      -> (h: bf16[{T}, {F}], y: bf16[{T}, {H}]) {{
    %order, %offsets, %rows = moe_dispatch(%ids) {{num_experts = {E}}} : i32[{T * K}], i32[{E + 1}], i32[{T * K}]
    %p = moe_permute(%x, %order) {{k = {K}}} : bf16[{T * K}, {H}]
    %g = grouped_linear(%p, @gate, %offsets) : bf16[{T * K}, {F}]
    %u = grouped_linear(%p, @up, %offsets) : bf16[{T * K}, {F}]
    %s = silu(%g) : bf16[{T * K}, {F}]
    %hr = mul(%s, %u) : bf16[{T * K}, {F}]
    %yr = grouped_linear(%hr, @down, %offsets) : bf16[{T * K}, {H}]
    %h = moe_combine(%hr, %rows, %wts) : bf16[{T}, {F}]
    %y = moe_combine(%yr, %rows, %wts) : bf16[{T}, {H}]
    return %h, %y
  }}
}}
"""
    open(f"{d}/e.lir", "w").write(lir)
    w = lambda *s: (torch.randn(*s, generator=g) * 0.06).to(torch.bfloat16)
    save_file({"gate": w(E, F, H), "up": w(E, F, H), "down": w(E, H, F)}, f"{d}/w.safetensors")
    wts = torch.rand(T, K, generator=g) * 0.9 + 0.1
    save_file({"x": torch.randn(T, H, generator=g).to(torch.bfloat16), "ids": torch.from_numpy(ids), "wts": wts}, f"{d}/e.safetensors")


def compare(a, b, tol):
    A, B = load_file(a), load_file(b)
    ok = True
    for name, want in B.items():
        want = want.double()
        got = A[name].double()
        err = (got - want).abs()
        rel = float(err.max() / want.abs().max())
        ok &= rel <= tol
        at = np.unravel_index(int(err.argmax()), tuple(err.shape))
        bad = int((err > tol * want.abs().max()).sum())
        print(f"{name} {tuple(want.shape)}: max error / max |ref| {rel:.3e} (at {tuple(int(i) for i in at)}: {float(got[at]):.6g} vs {float(want[at]):.6g}; {bad} values past the tolerance)")
    print(f"{'PASS' if ok else 'FAIL'} at {tol:g}")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        compare(sys.argv[2], sys.argv[3], float(sys.argv[4]))
