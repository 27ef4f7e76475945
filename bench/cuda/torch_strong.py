"""
The strong PyTorch baseline for the CUDA benchmark: the same Ling 2.0 model as torch_baseline.py
(Ling-mini-2.0 sizes, random bf16 weights), written the way a user who wants speed would write it
in PyTorch:
- a static KV cache (preallocated per layer, written in place at the step's position; decode
  attends over the whole buffer with a position mask, so every step has the same shapes);
- F.scaled_dot_product_attention (flash attention with GQA for prefill; for decode the query heads
  of a KV group are laid out as that group's query rows, so no KV head is repeated);
- the router in fp32 (as upstream), group-limited top-k on the GPU with no host sync;
- MoE through torch._grouped_mm over the token copies sorted by expert (gate and up fused into
  one grouped GEMM per layer, down into a second), the shared expert and dense MLP with fused
  gate+up weights;
- the whole forward under torch.compile (inductor, fullgraph, static shapes);
- each decode step captured as one CUDA graph and replayed (with --prefill-graph, each prefill too,
  timed beside the plain call as graph_ms);
- a prefill's LM head on its last position only (what generation reads: transformers' logits_to_keep=1),
  as lingc's prefill graph does; --all-logits for every position's (lingc's forward graph).
Prints one JSON object with prefill and decode times in the format of torch_baseline.py.

usage: python3 bench/cuda/torch_strong.py [--prefill 1x2048,1x8192] [--decode 1x2048,32x2048] [--repeats N] [--rounds N] [--prefill-graph] [--all-logits]
       python3 bench/cuda/torch_strong.py --check    # same logits as torch_baseline.py on a small config
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_baseline as eager  # noqa: E402  (the same model, eager; its CFG is shared)

CFG = eager.CFG
rms, timed = eager.rms, eager.timed  # the same RMSNorm and timing as the eager baseline
DT = torch.bfloat16
DEV = "cuda"


def grouped_mm(x, w, offs):
    """x [M, K], its rows grouped (group e ends at row offs[e]), times w[e]^T per group (w [E, N, K])."""
    if x.dtype == torch.bfloat16:
        return torch._grouped_mm(x, w.transpose(1, 2), offs=offs)
    # torch._grouped_mm takes bf16 only: the fp32 check multiplies group by group.
    out, start = x.new_empty(x.shape[0], w.shape[1]), 0
    for e, end in enumerate(offs.tolist()):
        out[start:end] = x[start:end] @ w[e].T
        start = end
    return out


class Strong:
    """Weights laid out for speed: fused gate+up, experts stacked [E, N, K]."""

    def __init__(self, m):
        self.embed, self.lm_head, self.norm = m.embed, m.lm_head, m.norm
        self.layers = []
        for L in m.layers:
            S = dict(ln1=L["ln1"], ln2=L["ln2"], qkv=L["qkv"], qn=L["qn"], kn=L["kn"], dense=L["dense"])
            if "gate" in L:
                S["gate_up"] = torch.cat([L["gate"], L["up"]], 0)
                S["down"] = L["down"]
            else:
                S["router"], S["bias"] = L["router"], L["bias"]
                # [E, 2I, H] and [E, H, I]; passed to _grouped_mm transposed ([E, K, N], column-major).
                S["w13"] = torch.stack([torch.cat([g, u], 0) for g, u, _ in L["experts"]])
                S["w2"] = torch.stack([dn for _, _, dn in L["experts"]])
                S["shared_gate_up"] = torch.cat([L["sg"], L["su"]], 0)
                S["shared_down"] = L["sd"]
            self.layers.append(S)
        self.inv_freq = eager.inv_freq()

    @staticmethod
    def random():
        """Ling-mini-sized weights made directly in the fused layout (the eager model's expert lists
        would take twice the memory while stacking)."""
        c = CFG
        rnd = eager.rnd
        H, nh, nkv, d = c["hidden"], c["heads"], c["kv_heads"], c["head_dim"]
        self = Strong.__new__(Strong)
        ones = lambda n: torch.ones(n, device=DEV, dtype=DT)  # noqa: E731
        self.embed, self.lm_head, self.norm = rnd(c["vocab"], H, std=0.02), rnd(c["vocab"], H), ones(H)
        self.layers = []
        for i in range(c["layers"]):
            S = dict(ln1=ones(H), ln2=ones(H), qkv=rnd((nh + 2 * nkv) * d, H), qn=ones(d), kn=ones(d), dense=rnd(H, nh * d))
            if i < c["first_dense"]:
                S.update(gate_up=rnd(2 * c["dense_inter"], H), down=rnd(H, c["dense_inter"]))
            else:
                E, I, sh = c["experts"], c["moe_inter"], c["shared"]
                S.update(router=rnd(E, H).float(), bias=torch.rand(E, device=DEV) * 0.01,
                         w13=rnd(E, 2 * I, H), w2=rnd(E, H, I),
                         shared_gate_up=rnd(2 * I * sh, H), shared_down=rnd(H, I * sh))
            self.layers.append(S)
        self.inv_freq = eager.inv_freq()
        return self

    # x [B, heads, S, d], pos [S]: rotate-half on the first `rotary` dims, as the eager model does.
    rope = eager.Model.rope

    @staticmethod
    def swiglu(x, gate_up, down):
        g, u = F.linear(x, gate_up).chunk(2, -1)
        return F.linear(F.silu(g) * u, down)

    def moe(self, x, L):
        c = CFG
        T, H = x.shape
        K, E = c["top_k"], c["experts"]
        scores = torch.sigmoid(F.linear(x.float(), L["router"]))
        sel = scores + L["bias"]
        gs = sel.view(T, c["groups"], -1).topk(2, dim=-1)[0].sum(-1)
        gidx = torch.topk(gs, c["topk_groups"], dim=-1, sorted=False)[1]
        gmask = torch.zeros_like(gs).scatter_(1, gidx, 1)
        smask = gmask.unsqueeze(-1).expand(T, c["groups"], E // c["groups"]).reshape(T, E)
        idx = torch.topk(sel.masked_fill(smask == 0, float("-inf")), K, dim=-1)[1]
        w = scores.gather(1, idx)
        w = w / (w.sum(-1, keepdim=True) + 1e-20) * c["scale"]
        # Token copies sorted by expert; group ends from a scatter count (static shapes, no sync).
        flat = idx.view(-1)
        order = flat.argsort()
        counts = torch.zeros(E, device=x.device, dtype=torch.int32).scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
        offs = counts.cumsum(0, dtype=torch.int32)
        xs = x[order // K]
        g, u = grouped_mm(xs, L["w13"], offs).chunk(2, -1)
        ys = grouped_mm(F.silu(g) * u, L["w2"], offs)
        y = torch.empty_like(ys)
        y[order] = ys
        routed = (y.view(T, K, H).float() * w.unsqueeze(-1)).sum(1).to(x.dtype)
        return routed + self.swiglu(x, L["shared_gate_up"], L["shared_down"])

    def forward(self, ids, kc, vc, pos0, length=None, last=False):
        """ids [B, S]; kc/vc: per layer [B, nkv, C, d] static caches, written at pos0..pos0+S-1.
        S > 1 is a prefill from position 0 (causal flash attention over the new keys); S = 1 is a
        decode step at position pos0 (a tensor): over the whole cache, masked past pos0, or, given
        `length` (pos0 + 1 as a Python int: one compiled graph per length), over the cache's first
        `length` positions with flash attention (split over the keys), which is faster at batch 1.
        `last`: the logits of the last position only."""
        c = CFG
        nh, nkv, d = c["heads"], c["kv_heads"], c["head_dim"]
        B, S = ids.shape
        C = kc[0].shape[2]
        pos = pos0 + torch.arange(S, device=DEV)
        h = self.embed[ids]
        if S == 1:
            keep = (torch.arange(C, device=DEV) <= pos0).view(1, 1, 1, C)
        for i, L in enumerate(self.layers):
            x = rms(h, L["ln1"])
            qkv = F.linear(x, L["qkv"]).view(B, S, nh + 2 * nkv, d)
            q, k, v = qkv.split([nh, nkv, nkv], dim=2)
            q = self.rope(rms(q, L["qn"]).transpose(1, 2), pos)
            k = self.rope(rms(k, L["kn"]).transpose(1, 2), pos)
            v = v.transpose(1, 2)
            kc[i].index_copy_(2, pos, k)
            vc[i].index_copy_(2, pos, v)
            if S > 1:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                o = o.transpose(1, 2).reshape(B, S, nh * d)
            elif length is not None:
                o = F.scaled_dot_product_attention(q, kc[i][:, :, :length], vc[i][:, :, :length], enable_gqa=True)
                o = o.transpose(1, 2).reshape(B, 1, nh * d)
            else:
                # The g = nh / nkv query heads of a KV head are its g query rows.
                qg = q.reshape(B, nkv, nh // nkv, d)
                o = F.scaled_dot_product_attention(qg, kc[i], vc[i], attn_mask=keep).reshape(B, 1, nh * d)
            h = h + F.linear(o, L["dense"])
            x = rms(h, L["ln2"])
            if "gate_up" in L:
                h = h + self.swiglu(x, L["gate_up"], L["down"])
            else:
                h = h + self.moe(x.view(B * S, -1), L).view(B, S, -1)
        return F.linear(rms(h[:, -1:] if last else h, self.norm), self.lm_head).float()


def caches(B, C):
    c = CFG
    shape = (B, c["kv_heads"], C, c["head_dim"])
    return [torch.zeros(shape, device=DEV, dtype=DT) for _ in range(c["layers"])], [torch.zeros(shape, device=DEV, dtype=DT) for _ in range(c["layers"])]


def check():
    """The strong model computes the eager one's function: on the same (small) weights in fp32 (in
    bf16 the routers' near-ties flip experts between two summation orders, so bf16 logits differ by
    whole experts), eagerly and compiled, prefill logits and a decode step's logits by both decode
    attentions; and torch._grouped_mm (bf16 only, so the fp32 runs multiply group by group) against
    per-group matmuls."""
    global DT
    ok = True
    torch.manual_seed(0)
    offs = torch.tensor([0, 5, 5, 130, 131, 300], device=DEV, dtype=torch.int32)
    x, w = torch.randn(300, 256, device=DEV, dtype=torch.bfloat16), torch.randn(6, 384, 256, device=DEV, dtype=torch.bfloat16)
    a, b = grouped_mm(x, w, offs).float(), grouped_mm(x.float(), w.float(), offs)
    rel = ((a - b).abs().max() / b.abs().max()).item()
    print(f"torch._grouped_mm (bf16) against per-group fp32 matmuls: max |diff| / max |ref| {rel:.3e}")
    ok &= rel < 1e-2
    DT = eager.DT = torch.float32
    CFG.update(vocab=4096, layers=3, experts=32, groups=4, topk_groups=2, top_k=4, dense_inter=1024)
    m = eager.Model()
    s = Strong(m)
    with torch.inference_mode():
        B, S = 4, 64
        ids = torch.randint(0, CFG["vocab"], (B, S + 1), device=DEV)
        ref, cache = m.forward(ids[:, :S])
        ref_step, _ = m.forward(ids[:, S:], cache)
        for how, fwd in (("eager", s.forward), ("compiled", torch.compile(s.forward, dynamic=False))):
            kc, vc = caches(B, S + 16)
            got = fwd(ids[:, :S], kc, vc, torch.tensor(0, device=DEV))
            got_step = fwd(ids[:, S:], kc, vc, torch.tensor(S, device=DEV))
            got_sliced = fwd(ids[:, S:], kc, vc, torch.tensor(S, device=DEV), S + 1)
            for name, a, b in (("prefill", got, ref), ("decode, masked", got_step, ref_step), ("decode, sliced", got_sliced, ref_step)):
                rel = ((a - b).abs().max() / b.abs().max()).item()
                print(f"{how} {name} against torch_baseline.py (fp32): max |diff| / max |ref| {rel:.3e}")
                ok &= rel < 1e-3
    print("check:", "PASS" if ok else "FAIL")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefill", default="1x2048,1x8192")
    ap.add_argument("--prefill-graph", action="store_true", help="also time each prefill captured as one CUDA graph (graph_ms)")
    ap.add_argument("--decode", default="1x2048,32x2048")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="prefill rows: timed this many times (each the median of --repeats), the fastest reported")
    ap.add_argument("--all-logits", action="store_true", help="prefill rows: the LM head on every position (default: the last, as generation reads)")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also print the GPU kernels of 5 replayed decode steps (torch.profiler), to stderr")
    ap.add_argument("--decode-attention", choices=["sliced", "masked"], default="sliced",
                    help="decode attention over the cache's filled prefix (one graph per length) or over the whole buffer with a mask")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check() else 1)
    torch.manual_seed(0)
    m = Strong.random()
    fwd = torch.compile(m.forward, fullgraph=True, dynamic=False)
    res = {"baseline": "pytorch strong: static cache, SDPA, fp32 router, torch._grouped_mm experts, torch.compile, decode as a CUDA graph",
           "torch": torch.__version__, "prefill_logits": "all positions" if a.all_logits else "last position", "prefill": [], "decode": [], "compile_s": {}}
    with torch.inference_mode():
        for s in filter(None, a.prefill.split(",")):
            B, S = map(int, s.split("x"))
            ids = torch.randint(0, CFG["vocab"], (B, S), device=DEV)
            kc, vc = caches(B, S)
            zero = torch.tensor(0, device=DEV)
            last = not a.all_logits
            t0 = time.time()
            fwd(ids, kc, vc, zero, None, last)
            torch.cuda.synchronize()
            res["compile_s"][f"prefill {s}"] = round(time.time() - t0, 1)
            # Timed in rounds (each the median of `repeats` calls), the fastest kept: the host launches a
            # compiled forward's kernels one by one, so a round can run behind a slow host (a 1x2048
            # round once took 37.6 ms where the others took 24.1-27.1); the baseline is its best.
            rounds = [timed(lambda: fwd(ids, kc, vc, zero, None, last), a.repeats) for _ in range(a.rounds)]
            ms = min(rounds)
            row = {"batch": B, "seq": S, "ms": ms, "tokens_per_s": B * S / (ms / 1e3), "ms_rounds": rounds}
            if a.prefill_graph:
                # The same compiled forward captured as one CUDA graph (as decode is): no host work a
                # kernel, so the row does not move with the host's speed.
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        fwd(ids, kc, vc, zero, None, last)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    fwd(ids, kc, vc, zero, None, last)
                torch.cuda.synchronize()
                row["graph_ms"] = timed(graph.replay, a.repeats)
                del graph
            res["prefill"].append(row)
            del kc, vc
        for s in filter(None, a.decode.split(",")):
            B, P = map(int, s.split("x"))
            # The cache holds P positions (random keys and values), the step writes position P; the
            # buffer is padded to a multiple of 64 past it, masked.
            kc, vc = caches(B, (P + 1 + 63) // 64 * 64)
            for t in kc + vc:
                t[:, :, :P].normal_()
            ids = torch.randint(0, CFG["vocab"], (B, 1), device=DEV)
            pos = torch.tensor(P, device=DEV)
            length = P + 1 if a.decode_attention == "sliced" else None
            t0 = time.time()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    fwd(ids, kc, vc, pos, length)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fwd(ids, kc, vc, pos, length)
            torch.cuda.synchronize()
            res["compile_s"][f"decode {s}"] = round(time.time() - t0, 1)
            ms = timed(graph.replay, max(a.repeats, 5))
            if a.profile:
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                    for _ in range(5):
                        graph.replay()
                    torch.cuda.synchronize()
                print(f"decode {s}, 5 replayed steps:", file=sys.stderr)
                print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=90), file=sys.stderr)
            res["decode"].append({"batch": B, "cache": P, "attention": a.decode_attention, "ms_per_step": ms, "tokens_per_s": B / (ms / 1e3)})
            del graph, kc, vc
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
