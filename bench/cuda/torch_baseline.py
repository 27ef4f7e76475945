"""
The PyTorch baseline for the CUDA benchmark: a straightforward implementation of a Ling 2.0 model
with the real Ling-mini-2.0 sizes (LING2.md), random bf16 weights, written the way the upstream HF
code runs it: eager attention (repeat_kv, matmul, causal mask, fp32 softmax), a KV cache grown by
torch.cat, and MoE inference that sorts tokens by expert and loops over the experts in Python
(moe_infer in modeling_bailing_moe_v2.py). Prints one JSON object with prefill and decode tokens/s.

usage: python3 bench/cuda/torch_baseline.py [--prefill 1x2048,1x8192] [--decode 1x2048,32x2048] [--repeats N]
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F

CFG = dict(vocab=157184, hidden=2048, dense_inter=5120, moe_inter=512, layers=20, heads=16, kv_heads=4, head_dim=128,
           experts=256, top_k=8, groups=8, topk_groups=4, shared=1, first_dense=1, rotary=64, theta=600000.0,
           scale=2.5, eps=1e-6)
DT = torch.bfloat16
DEV = "cuda"


def rnd(*shape, std=None):
    fan = shape[-1]
    return (torch.rand(*shape, device=DEV, dtype=torch.float32) * 2 - 1).mul_(std or 1 / math.sqrt(fan)).to(DT)


def rms(x, w):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + CFG["eps"])
    return w * h.to(x.dtype)


def inv_freq():
    """RoPE's inverse frequencies over the rotated dims."""
    r = CFG["rotary"]
    return 1.0 / (CFG["theta"] ** (torch.arange(0, r, 2, device=DEV).float() / r))


class Model:
    def __init__(self):
        c = CFG
        H, nh, nkv, d = c["hidden"], c["heads"], c["kv_heads"], c["head_dim"]
        self.embed = rnd(c["vocab"], H, std=0.02)
        self.lm_head = rnd(c["vocab"], H)
        self.norm = torch.ones(H, device=DEV, dtype=DT)
        self.layers = []
        for i in range(c["layers"]):
            L = dict(ln1=torch.ones(H, device=DEV, dtype=DT), ln2=torch.ones(H, device=DEV, dtype=DT),
                     qkv=rnd((nh + 2 * nkv) * d, H), qn=torch.ones(d, device=DEV, dtype=DT), kn=torch.ones(d, device=DEV, dtype=DT),
                     dense=rnd(H, nh * d))
            if i < c["first_dense"]:
                L.update(gate=rnd(c["dense_inter"], H), up=rnd(c["dense_inter"], H), down=rnd(H, c["dense_inter"]))
            else:
                E, I = c["experts"], c["moe_inter"]
                L.update(router=rnd(E, H).float(), bias=(torch.rand(E, device=DEV) * 0.01),
                         experts=[(rnd(I, H), rnd(I, H), rnd(H, I)) for _ in range(E)],
                         sg=rnd(I * c["shared"], H), su=rnd(I * c["shared"], H), sd=rnd(H, I * c["shared"]))
            self.layers.append(L)
        self.inv_freq = inv_freq()

    def rope(self, x, pos):
        f = pos[:, None].float() * self.inv_freq[None]
        emb = torch.cat([f, f], -1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        r = cos.shape[-1]
        xr, xp = x[..., :r], x[..., r:]
        x1, x2 = xr[..., : r // 2], xr[..., r // 2:]
        return torch.cat([xr * cos + torch.cat([-x2, x1], -1) * sin, xp], -1)

    def mlp(self, x, g, u, dn):
        return F.linear(F.silu(F.linear(x, g)) * F.linear(x, u), dn)

    def moe(self, x, L):
        c = CFG
        B, S, H = x.shape
        flat = x.view(-1, H)
        logits = F.linear(flat.float(), L["router"])
        scores = torch.sigmoid(logits)
        sel = scores + L["bias"]
        T = flat.shape[0]
        gs = sel.view(T, c["groups"], -1).topk(2, dim=-1)[0].sum(-1)
        gidx = torch.topk(gs, c["topk_groups"], dim=-1, sorted=False)[1]
        gmask = torch.zeros_like(gs).scatter_(1, gidx, 1)
        smask = gmask.unsqueeze(-1).expand(T, c["groups"], c["experts"] // c["groups"]).reshape(T, -1)
        idx = torch.topk(sel.masked_fill(~smask.bool(), float("-inf")), c["top_k"], dim=-1)[1]
        w = scores.gather(1, idx)
        w = w / (w.sum(-1, keepdim=True) + 1e-20) * c["scale"]
        # moe_infer: sort pairs by expert, loop over experts in Python.
        cnts = idx.new_zeros((T, c["experts"])).scatter_(1, idx, 1).sum(0).cpu().numpy()
        order = idx.view(-1).argsort()
        sorted_tokens = flat[order // c["top_k"]]
        outs, start = [], 0
        for e, n in enumerate(cnts):
            if n == 0:
                continue
            g, u, dn = L["experts"][e]
            outs.append(self.mlp(sorted_tokens[start:start + n], g, u, dn))
            start += n
        outs = torch.cat(outs, 0)
        new = torch.empty_like(outs)
        new[order] = outs
        y = (new.view(T, c["top_k"], H).float() * w.unsqueeze(-1)).sum(1).to(x.dtype).view(B, S, H)
        return y + self.mlp(x, L["sg"], L["su"], L["sd"])

    def forward(self, ids, cache=None):
        c = CFG
        nh, nkv, d = c["heads"], c["kv_heads"], c["head_dim"]
        B, S = ids.shape
        P = 0 if cache is None else cache[0][0].shape[2]
        pos = torch.arange(P, P + S, device=DEV)
        h = self.embed[ids]
        new_cache = []
        for i, L in enumerate(self.layers):
            x = rms(h, L["ln1"])
            qkv = F.linear(x, L["qkv"]).view(B, S, nh + 2 * nkv, d)
            q, k, v = qkv.split([nh, nkv, nkv], dim=2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q, k = self.rope(rms(q, L["qn"]), pos), self.rope(rms(k, L["kn"]), pos)
            if cache is not None:
                k = torch.cat([cache[i][0], k], 2)
                v = torch.cat([cache[i][1], v], 2)
            new_cache.append((k, v))
            T = k.shape[2]
            kr = k.repeat_interleave(nh // nkv, dim=1)
            vr = v.repeat_interleave(nh // nkv, dim=1)
            att = torch.matmul(q, kr.transpose(2, 3)) / math.sqrt(d)
            if S > 1:
                mask = torch.full((S, T), float("-inf"), device=DEV).triu(T - S + 1)
                att = att + mask.to(att.dtype)
            att = F.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype)
            o = torch.matmul(att, vr).transpose(1, 2).reshape(B, S, nh * d)
            h = h + F.linear(o, L["dense"])
            x = rms(h, L["ln2"])
            h = h + (self.mlp(x, L["gate"], L["up"], L["down"]) if "gate" in L else self.moe(x, L))
        logits = F.linear(rms(h, self.norm), self.lm_head).float()
        return logits, new_cache


def timed(fn, repeats):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefill", default="1x2048,1x8192")
    ap.add_argument("--decode", default="1x2048,32x2048")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    m = Model()
    res = {"baseline": "pytorch eager, experts looped (upstream moe_infer)", "torch": torch.__version__, "prefill": [], "decode": []}
    with torch.inference_mode():
        for s in a.prefill.split(","):
            B, S = map(int, s.split("x"))
            ids = torch.randint(0, CFG["vocab"], (B, S), device=DEV)
            ms = timed(lambda: m.forward(ids), a.repeats)
            res["prefill"].append({"batch": B, "seq": S, "ms": ms, "tokens_per_s": B * S / (ms / 1e3)})
        for s in a.decode.split(","):
            B, P = map(int, s.split("x"))
            c = CFG
            cache = [(torch.randn(B, c["kv_heads"], P, c["head_dim"], device=DEV, dtype=DT), torch.randn(B, c["kv_heads"], P, c["head_dim"], device=DEV, dtype=DT)) for _ in range(c["layers"])]
            ids = torch.randint(0, CFG["vocab"], (B, 1), device=DEV)
            ms = timed(lambda: m.forward(ids, cache), max(a.repeats, 5))
            res["decode"].append({"batch": B, "cache": P, "ms_per_step": ms, "tokens_per_s": B / (ms / 1e3)})
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
