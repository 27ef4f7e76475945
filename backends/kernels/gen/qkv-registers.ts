/**
 * qk_norm_rope with a head in registers (CUDA, bf16): each lane of a head's lane group holds 8 of its
 * elements, read as one 16-byte load and written as one 16-byte store; the norm's sum is the group's
 * shuffles and RoPE's partner elements come from the partner lane by a shuffle, so a head takes one
 * global round trip and no workgroup memory or barriers; the norm's weights and RoPE's cos and sin
 * are 16-byte loads too. The workgroup-memory form (qkv.ts) ran 1.6 ms a forward at 1x8192 on the
 * H200 (Ling-mini), over three times its bytes at the copy rate: each warp's scalar loads, its
 * barriers and its cos/sin loads after them made a chain of round trips a head, and too few heads
 * were in flight to hide them. This form with one token a lane group: 1.0 ms
 * (bench/results/qkv-dispatch-pipe-2026-12-02-h200.md). Nsight Compute then showed it bound by
 * issue, not memory (DRAM 27%, SM 77%, RoPE computing both of its forms); four tokens a group
 * alone did not move it, RoPE as one form with them: 0.78 ms (bench/results/qk-router-2026-12-02-h200.md).
 *
 * The arithmetic is qkv.ts's, value by value (rounded to the dtype where it rounds), except the
 * norm's sum of squares, which adds in another order. Covers bf16 heads whose dimension is a
 * multiple of 8 of at most 256 elements, and whose rotations (if any) turn halves that are whole
 * 8-element pieces; qkvRegistersFits says so.
 */
import { attrsOf, OPS } from "../../../ir/ops";
import type { Op, Value } from "../../../ir/module";
import { product } from "../../../ir/dim";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel, GenLimits } from "./context";
import { qkvChains, type QkvChain } from "./qkv";
import { inverseRms, normedElement } from "./norm";

/** Elements a lane: 16 bytes of bf16. */
const V = 8;
/**
 * Tokens a lane group takes of its head: their loads all issued before any math (TOKENS x 16 bytes
 * in flight a lane), the head's index work shared. Alone it did not move the H200's time (the kernel
 * was bound by issue, not by loads in flight); the one-form RoPE with it did. TOKENS = 1 with the
 * one-form RoPE was not measured.
 */
const TOKENS = 4;
/** Threads a workgroup (4 warps). */
export const QKV_REGISTER_THREADS = 128;

/** Lanes a head takes (a power of two covering d / 8) and heads a warp, or undefined where the form does not apply. */
function shape(ops: readonly Op[], limits: GenLimits): { lanes: number; perWarp: number } | undefined {
  if (limits.warpSize !== 32) return undefined;
  const { reshape, chains } = qkvChains(ops);
  const heads = reshape.results[0]!;
  const [, , NHd, Dd] = heads.type.shape;
  const d = Dd?.value;
  const NH = NHd?.value;
  if (d === undefined || NH === undefined || d % V !== 0 || d / V > 32) return undefined;
  if (heads.type.dtype !== "bf16" || heads.type.quant || reshape.operands[0]!.type.dtype !== "bf16") return undefined;
  for (const ch of chains) {
    if (ch.out.type.dtype !== "bf16") return undefined;
    for (const op of ch.ops) if (op.opName === "rope" && (op.operands[1]!.type.shape[1]!.value! % V !== 0 || 2 * op.operands[1]!.type.shape[1]!.value! > d)) return undefined;
  }
  const lanes = 2 ** Math.ceil(Math.log2(d / V));
  // Heads a warp: as many as fit, fewer until every chain's slice (and the head count) is whole
  // warps, so a warp's lanes take one branch and its shuffles run in all of them.
  let perWarp = 32 / lanes;
  while (perWarp > 1 && (NH % perWarp !== 0 || chains.some((ch) => ch.start % perWarp !== 0 || ch.end % perWarp !== 0))) perWarp /= 2;
  return { lanes: 32 / perWarp, perWarp };
}

export const qkvRegistersFits = (ops: readonly Op[], limits: GenLimits): boolean => shape(ops, limits) !== undefined;

/**
 * A head's chain (its RMSNorm and partial RoPE, in order) on the head's values as a lane group holds
 * them: `xs[u]` the 8 elements from `c0` of token u (at sequence position `pos[u]` of the step, the
 * row of RoPE's tables), the group L lanes wide, `at` the first of the 8 the lane reads of the
 * norm's weights (c0 kept in range); lanes past the head hold zeros. The norm's sum is the
 * group's shuffles, RoPE's partner elements the partner lane's: every lane of the warp must run it.
 * qk_norm_rope's kernel here and decode attention's prologue (decode-attention.ts) both compute
 * their heads by it, value by value the same.
 */
export function headChain(g: Gen, ch: QkvChain, xs: Expr[][], pos: Expr[], group: { lane: Expr; c0: Expr; at: Expr; L: number }): Expr[][] {
  const kb = g.kb;
  const { i, add, mul, lt, sel } = K;
  const { lane, c0, at, L } = group;
  const d = ch.out.type.shape[3]!.value!;
  const dt = ch.out.type.dtype;
  let vs = xs;
  for (const op of ch.ops) {
    if (op.opName === "rms_norm") {
      const w = op.operands[1]!;
      const eps = attrsOf(OPS.rms_norm, op).eps;
      const ws = g.wide8(w) ? g.load8(w, at) : xs[0]!.map((_, n) => kb.load(g.buf(w), add(at, i(n))));
      vs = vs.map((v) => {
        let ss: Expr = K.f(0);
        for (const e of v) ss = add(ss, mul(e, e));
        const own = kb.let("ss", ss);
        const inv = kb.let("inv", inverseRms(kb.warpSum(own, L), d, eps));
        return v.map((e, n) => kb.let("n", normedElement(g, ws[n]!, e, inv, dt)));
      });
    } else {
      const [cosT, sinT] = [op.operands[1]!, op.operands[2]!];
      const half = cosT.type.shape[1]!.value!;
      const r = (e: Expr) => g.fit(e, dt);
      // A lane's 8 elements are all below half, all in [half, 2 half) or all past the rotation;
      // element c's partner c +- half is the same element of the lane half / 8 away.
      const lo = kb.let("lo", lt(c0, i(half)));
      const rotated = kb.let("rot", lt(c0, i(2 * half)));
      const partner = kb.let("pl", add(lane, sel(lo, i(half / V), sel(rotated, i(-half / V), i(0)))));
      const p0 = kb.let("p0", K.min(sel(lo, c0, K.sub(c0, i(half))), i(half - V))); // the pairs' first index, in range
      // The 8 pairs' cos and sin of each token: 16-byte loads (half is whole pieces, so p0 is one's start), all issued first.
      const table = (t: Value, row: Expr) => (g.wide8(t) ? g.load8(t, row) : xs[0]!.map((_, n) => kb.load(g.buf(t), add(row, i(n)))));
      const tables = pos.map((s) => {
        const row = kb.let("trow", add(mul(s, i(half)), p0));
        return [table(cosT, row).map((e) => kb.let("cs", e)), table(sinT, row).map((e) => kb.let("sn", e))] as const;
      });
      vs = vs.map((v, u) => {
        const [coss, sins] = tables[u]!;
        const pv = v.map((e) => kb.let("pv", K.shflIdx(e, partner)));
        return v.map((e, n) => {
          const [cs, sn] = [coss[n]!, sins[n]!];
          // below half: x[c] cos - x[c + half] sin; above: x[c] cos + x[c - half] sin (qkv.ts's
          // two forms in one: rounding to nearest is odd, so r(-y) = -r(y))
          const ps = kb.let("ps", r(mul(pv[n]!, sn)));
          return kb.let("r", sel(rotated, r(add(r(mul(e, cs)), sel(lo, K.neg(ps), ps))), e));
        });
      });
    }
  }
  return vs;
}

export function qkvRegistersKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const { lanes: L, perWarp } = shape(ops, g.limits)!;
  const { reshape, chains, appendOf } = qkvChains(ops);
  const heads = reshape.results[0]!;
  const [Bd, Sd, NHd, Dd] = heads.type.shape;
  const NH = NHd!.value!;
  const d = Dd!.value!;
  const src = reshape.operands[0]!;
  const kb = g.kb;
  const { i, add, mul, div, mod, lt, ge, and, sel } = K;
  const S = g.size(Sd!);
  const tokensDim = product([Bd!, Sd!]);
  const BS = g.size(tokensDim);
  const perGroup = (kb.kernel.wg / 32) * perWarp;
  const lane = kb.let("lane", mod(kb.lid, i(32)));
  const q = kb.let("q", mod(lane, i(L))); // this lane's place in its head's group
  // A lane group's unit: one head of TOKENS consecutive tokens (the head, so its chain, is the
  // same for all of them: one branch, and every load issued before any math).
  const unit = kb.let("unit", add(mul(kb.wg, i(perGroup)), div(kb.lid, i(L))));
  const c0 = kb.let("c0", mul(q, i(V))); // its first element
  const holds = kb.let("holds", lt(c0, i(d))); // lanes past d / 8 (a group wider than the head) hold nothing
  kb.if(lt(unit, mul(div(add(BS, i(TOKENS - 1)), i(TOKENS)), i(NH))), () => {
    const j = kb.let("j", mod(unit, i(NH)));
    const t0 = kb.let("t0", mul(div(unit, i(NH)), i(TOKENS)));
    const at = kb.let("at", K.min(c0, i(d - V))); // in range in every lane
    const toks = Array.from({ length: TOKENS }, (_, u) => {
      const tok = kb.let("tok", add(t0, i(u)));
      const live = kb.let("live", lt(tok, BS)); // past the last token: read the last one's head, write nothing
      const tc = kb.let("tc", K.min(tok, K.sub(BS, i(1))));
      return { live, b: kb.let("b", div(tc, S)), s: kb.let("s", mod(tc, S)), tc };
    });
    // (Lanes past the head read its last piece again; zeros for them where a group is wider than the head.)
    const xs = toks.map(({ tc }) => g.load8(src, add(mul(add(mul(tc, i(NH)), j), i(d)), at)).map((e) => kb.let("x", L * V === d ? e : sel(holds, e, K.f(0)))));
    const run = (ch: (typeof chains)[number]) => {
      const vs = headChain(g, ch, xs, toks.map(({ s }) => s), { lane, c0, at, L });
      const n = ch.end - ch.start;
      // Row (b, head, s) of a [B, n, rows, d] buffer at `past` rows into its sequence axis.
      const write = (out: Value, rows: Expr, past: Expr) =>
        toks.forEach(({ live, b, s }, u) => {
          const base = kb.let("obase", mul(add(mul(add(mul(b, i(n)), K.sub(j, i(ch.start))), rows), add(past, s)), i(d)));
          kb.if(and(holds, live), () => g.store8(out, add(base, c0), vs[u]!));
        });
      const append = appendOf.get(ch.out);
      if (append) {
        const grown = append.results[0]!;
        write(grown, g.storageRows(grown, 2), g.size(append.operands[0]!.type.shape[2]!));
      }
      if (!append || g.isOutput(ch.out)) write(ch.out, S, i(0));
    };
    const branch = (k: number): void => {
      const ch = chains[k]!;
      kb.if(and(ge(j, i(ch.start)), lt(j, i(ch.end))), () => run(ch), k + 1 < chains.length ? () => branch(k + 1) : undefined);
    };
    branch(0);
  });
  // Units: heads x ceil(tokens / TOKENS), perGroup a workgroup; (tokens + TOKENS - 1) x heads over
  // perGroup x TOKENS gives at least as many workgroups (the extra ones exit).
  return g.finish({ dim: g.entryDim(tokensDim.add(TOKENS - 1).mul(NHd!)), per: perGroup * TOKENS });
}
