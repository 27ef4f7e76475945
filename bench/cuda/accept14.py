#!/usr/bin/env python3
"""Issue 14's rows from one device call (bench/cuda/device.sh accept14): lingc's builds against the
strong PyTorch implementation, each row's speedup (the bar: 1.25x), decode batch 1's fraction of the
copy bandwidth lingc measured in the call (the bar: 40%), and prefill 1x8192 in model FLOPs against
the bf16 GEMM rate measured in the call (the bar: 50%).

Model FLOPs of a prefill (2 per multiply-add, from the model's config.json): every linear layer
(QKV, output, router gate, the dense MLP, the eight routed and the shared experts a token uses), the
attention's two matmuls over the causal half of the score matrix (S * S / 2 per head), and the LM
head on the last position only (both sides' prefill rows compute it there: logits_to_keep=1).

usage: accept14.py CONFIG LINGC_JSON... TORCH_JSON   (each lingc JSON one build, named by its file)
"""
import json
import os
import sys


def prefill_flops(c: dict, s: int) -> float:
    h, d = c["hidden_size"], c["head_dim"]
    nq, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    layers, dense = c["num_hidden_layers"], c["first_k_dense_replace"]
    attn = 2 * s * h * (nq + 2 * nkv) * d + 2 * s * nq * d * h + 2 * 2 * (s * s / 2) * nq * d
    experts = c["num_experts_per_tok"] + c["num_shared_experts"]
    moe = 2 * s * experts * 3 * h * c["moe_intermediate_size"] + 2 * s * h * c["num_experts"]
    mlp = 2 * s * 3 * h * c["intermediate_size"]
    head = 2 * 1 * h * c["vocab_size"]
    return layers * attn + dense * mlp + (layers - dense) * moe + head


def rows(j: dict, graph: bool) -> dict:
    out = {f"prefill 1x{p['seq']}": p["ms"] for p in j["prefill"] if p["batch"] == 1}
    for d in j["decode"]:
        out[f"decode b{d['batch']}"] = d["graph_ms_per_step" if graph else "ms_per_step"]
    return out


def main() -> int:
    cfg = json.load(open(sys.argv[1]))
    builds = [(os.path.basename(p).removesuffix(".json").removeprefix("lingc-bench-"), json.load(open(p))) for p in sys.argv[2:-1]]
    torch = rows(json.load(open(sys.argv[-1])), graph=False)
    ok = True
    for name, j in builds:
        mine = rows(j, graph=True)
        copy, gemm = j["copy_bandwidth_GBps"], j["bf16_gemm_TFLOPs"]
        print(f"== {name}: copy bandwidth {copy:.1f} GB/s, bf16 GEMM {gemm:.1f} TFLOP/s (measured in this call)")
        print(f"{'row':<16} {'lingc ms':>10} {'strong torch ms':>16} {'speedup':>8}  bar 1.25x")
        for row, t in torch.items():
            r = t / mine[row]
            ok &= r >= 1.25
            print(f"{row:<16} {mine[row]:>10.3f} {t:>16.3f} {r:>7.2f}x  {'PASS' if r >= 1.25 else 'FAIL'}")
        b1 = next(d for d in j["decode"] if d["batch"] == 1)
        frac = b1["bandwidth_fraction"]
        ok &= frac >= 0.40
        print(f"decode b1: {b1['bytes_per_step']:.0f} bytes a step in {b1['graph_ms_per_step']:.3f} ms = {b1['GBps']:.1f} GB/s, {100 * frac:.1f}% of copy ({'PASS' if frac >= 0.40 else 'FAIL'} at 40%)")
        f = prefill_flops(cfg, 8192)
        ms = mine["prefill 1x8192"]
        rate = f / (ms * 1e-3) / 1e12
        ok &= rate >= 0.5 * gemm
        print(f"prefill 1x8192: {f / 1e12:.2f} TFLOP in {ms:.3f} ms = {rate:.1f} TFLOP/s, {100 * rate / gemm:.1f}% of the GEMM rate ({'PASS' if rate >= 0.5 * gemm else 'FAIL'} at 50%)")
    print("all rows: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
