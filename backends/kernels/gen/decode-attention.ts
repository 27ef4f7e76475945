/**
 * Decode attention on CUDA (bf16 heads 64, 128 or 256 wide): flash-decoding with a KV head's query
 * heads together, so each key and value row is read once for all of them. A workgroup per (batch,
 * KV head, query position, key split), four warps; the form's split count (DECODE_ATTENTION_FORMS:
 * many for few rows, fewer for more) is fixed in the kernel. A warp scores
 * KPW keys a step: d / 8 lanes a key, each reading 16 bytes of the key row (kir load16) and of the
 * value row, its eight query columns of every head held in registers; a key's dot products are
 * summed over its lanes by shuffles. Every lane keeps each head's running maximum and sum (the
 * online softmax) and its eight output columns; UNROLL steps' loads are issued before their math,
 * so a warp has 2 x UNROLL row reads in flight. At the end the warp's key groups and then the four
 * warps are merged (shuffles, then workgroup memory) into the split's unnormalized output rows,
 * maxima and sums in the step's scratch, which the attention merge kernel (attention.ts) combines
 * per query row.
 *
 * Measured on the H200 (bench/results/decattn-2026-12-01-h200.md), Ling-mini's decode step (16 query
 * heads, 4 KV heads, 2048 keys of 128: 4 MB a layer a sequence): at batch 1, 20 us a layer against the
 * runtime's attn_decode's 29 (events between launches), 2.00 -> 1.75 ms a step; at batch 32 (4
 * splits), 8.76 -> 8.40 ms a step. The WGSL split form on CUDA (attention_split: a workgroup per
 * query row and split, each KV row read once per query head with two-byte loads, every 128-key
 * block reduced through 14 barriers) was about as slow as attn_decode.
 */
import type { Op, Value } from "../../../ir/module";
import { attrsOf, OPS } from "../../../ir/ops";
import { LingcError } from "../../../ir/errors";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel, GenLimits } from "./context";
import { attentionMergeKernel, mergedColumn, splitWeights } from "./attention";
import { splitQuantEpilogue } from "./quant";
import { decodeAttentionTakes } from "../../../ir/target/kernel-forms";
import { qkvChains, type QkvChain } from "./qkv";
import { headChain, qkvRegistersFits } from "./qkv-registers";

const WARPS = 4;
export const DECODE_ATTENTION_THREADS = WARPS * 32;
/** bf16 elements a lane reads per row (16 bytes). */
const LANE = 8;
/** Warp steps whose loads are issued together. */
const UNROLL = 4;
/** A split with no keys: its maximum (finite, so that exp(m - m) is 1, not NaN) and weight (none). */
const EMPTY_MAX = -1e30;

/** The step's attention where the form takes it (ir/target/kernel-forms.ts: decodeAttentionTakes), else undefined. */
function decodeAttentionOf(ops: readonly Op[]): Op | undefined {
  const att = ops.find((o) => o.opName === "attention");
  return att && decodeAttentionTakes(...(att.operands as [Value, Value, Value])) ? att : undefined;
}

/** Whether the form takes the step's attention on this target (warps of 32 lanes). */
export function coversDecodeAttention(ops: readonly Op[], limits: GenLimits | undefined): boolean {
  return limits?.warpSize === 32 && decodeAttentionOf(ops) !== undefined;
}

/** The form of `splits` key splits for up to `maxRows` query rows (its scratch's size). */
export function decodeAttentionKernels(g: Gen, merge: Gen, all: Op[], form: { splits: number; maxRows: number }): GeneratedKernel {
  // The attention's own ops (its output transpose, a quantize epilogue), apart from a qk_norm_rope prologue's.
  const ops = splitQkPrologue(all).rest;
  const att = decodeAttentionOf(ops);
  if (!att) throw new LingcError("decode attention: the step is not a bf16 attention of head width 64, 128 or 256 with a whole group of at most 8 query heads a KV head");
  if (g.kb.kernel.wg !== DECODE_ATTENTION_THREADS) throw new LingcError(`decode attention: the form is written for ${DECODE_ATTENTION_THREADS} threads, not ${g.kb.kernel.wg}`);
  const [q, k, v] = att.operands as [Value, Value, Value];
  const { scale, causal } = attrsOf(OPS.attention, att);
  const [Bd, nhD, Sd, dD] = q.type.shape;
  const [nh, nkv, d] = [nhD!.value!, k.type.shape[1]!.value!, dD!.value!];
  const rep = nh / nkv;
  const LPK = d / LANE;
  const KPW = 32 / LPK;
  const SPL = form.splits;
  const W = d + 2;
  const scratchElems = form.maxRows * SPL * W;
  const kb = g.kb;
  const { i, add, sub, mul, div, mod, lt, min, max, sel } = K;
  const scratch = g.scratch(scratchElems);
  // The splits merged by the last of each item to finish (GenLimits.mergeInLastSplit), else by a merge kernel after.
  const mergeInLast = g.limits.mergeInLastSplit === true;
  // A quantize epilogue (quant-epilogue.ts) is the merge kernel's.
  if (mergeInLast && splitQuantEpilogue(ops).quant) throw new LingcError("decode attention: the splits' own merge (LINGC_DECODE_MERGE=last) does not quantize its result");
  // The online softmax a group of UNROLL keys at a time (GenLimits.decodeSoftmaxChunk), else a key at a time.
  const chunked = g.limits.decodeSoftmaxChunk === true;
  const pro = qkPrologue(g, all, att);
  // (With the prologue the query is made in registers: no buffer.)
  const [qb, kbuf, vbuf] = [pro ? undefined : g.buf(q), g.buf(k), g.buf(v)];
  const S = g.size(Sd!);
  const T = g.size(k.type.shape[2]!);
  const itemsDim = Bd!.mul(nkv).mul(Sd!);
  if (g.limits.prefetchKv) prefetchSplitRows(g, { k: kbuf, v: vbuf }, { kRows: g.storageRows(k, 2), vRows: g.storageRows(v, 2) }, { SPL, S, T, d, items: g.size(itemsDim), causal });
  const split = kb.let("split", mod(kb.wg, i(SPL)));
  const item = kb.let("item", div(kb.wg, i(SPL)));
  kb.if(lt(item, g.size(itemsDim)), () => {
    const pos = kb.let("pos", mod(item, S));
    const bkv = kb.let("bkv", div(item, S));
    const b = kb.let("b", div(bkv, i(nkv)));
    const kvh = kb.let("kvh", mod(bkv, i(nkv)));
    const range = splitRange({ SPL, S, T, causal }, pos, split, kb.let.bind(kb));
    const [lo, hi] = [range.lo, range.hi];
    const warp = kb.let("warp", div(kb.lid, i(32)));
    const lane = kb.let("lane", mod(kb.lid, i(32)));
    const sub0 = kb.let("sub", div(lane, i(LPK)));
    const col = kb.let("col", mul(mod(lane, i(LPK)), i(LANE)));
    const kRow = kb.let("krow", mul(bkv, g.storageRows(k, 2)));
    const vRow = kb.let("vrow", mul(bkv, g.storageRows(v, 2)));
    // Query row of head hh of the group: ((b nh + kvh rep + hh) S + pos).
    const qRow = (hh: Expr) => add(mul(add(add(mul(b, i(nh)), mul(kvh, i(rep))), hh), S), pos);
    const unpack = (w: Expr[]) => Array.from({ length: LANE }, (_, t) => K.half(w[t >> 1]!, (t & 1) === 1));
    // With qk_norm_rope as the prologue, the group's query heads from the QKV projection's rows
    // (each workgroup again: 4 KB at Ling-mini), and the split's new key and value rows written here.
    const qf = pro
      ? Array.from({ length: rep }, (_, hh) => pro.head(pro.q, add(mul(b, S), pos), add(mul(kvh, i(rep)), i(hh)), pos, { lane, col }))
      : Array.from({ length: rep }, (_, hh) => unpack(kb.load16("q", qb!, div(add(mul(qRow(i(hh)), i(d)), col), i(2)))).map((x) => kb.let("qf", x)));
    if (pro) {
      const first = kb.let("newrow", sub(T, S)); // the step's first new row of the cache
      kb.for("r", add(max(lo, first), warp), hi, (r) => {
        const s = kb.let("news", sub(r, first));
        const tok = kb.let("newtok", add(mul(b, S), s));
        const kv = [pro.head(pro.k, tok, kvh, s, { lane, col }), pro.head(pro.v, tok, kvh, s, { lane, col })];
        kb.if(K.eq(sub0, i(0)), () => {
          g.store8(k, add(mul(add(kRow, r), i(d)), col), kv[0]!);
          g.store8(v, add(mul(add(vRow, r), i(d)), col), kv[1]!);
        });
      }, i(WARPS));
      kb.barrier();
    }
    const m = Array.from({ length: rep }, () => kb.var("m", K.f(EMPTY_MAX)));
    const l = Array.from({ length: rep }, () => kb.var("l", K.f(0)));
    const acc = Array.from({ length: rep }, () => Array.from({ length: LANE }, () => kb.var("acc", K.f(0))));
    const perStep = WARPS * KPW;
    const n = kb.let("n", max(sub(hi, lo), i(0)));
    const last = kb.let("last", sub(hi, i(1)));
    kb.loop("grp", i(0), div(add(n, i(perStep * UNROLL - 1)), i(perStep * UNROLL)), (grp) => {
      // This lane's key of each unrolled step; a key past the range reads the range's last row and counts for nothing.
      const keys = Array.from({ length: UNROLL }, (_, u) => kb.let("j", add(lo, add(mul(add(mul(add(mul(grp, i(UNROLL)), i(u)), i(WARPS)), warp), i(KPW)), sub0))));
      const rows = keys.map((j) => kb.let("jc", min(j, last)));
      const kw = rows.map((j) => kb.load16("kw", kbuf, div(add(mul(add(kRow, j), i(d)), col), i(2))));
      const vw = rows.map((j) => kb.load16("vw", vbuf, div(add(mul(add(vRow, j), i(d)), col), i(2))));
      // Key u's score for head hh (its lanes' dot products summed by shuffles; a dead key -inf).
      const score = (hh: number, kf: Expr[], live: Expr) => {
        const part = kf.map((x, t) => mul(qf[hh]![t]!, x)).reduce((a, c) => add(a, c));
        const dot = kb.warpSum(kb.let("part", part), LPK);
        return kb.let("s", sel(live, g.fit(mul(g.fit(dot, "bf16"), K.f(scale)), "bf16"), K.f(-Infinity)));
      };
      if (!chunked) {
        // The online softmax a key at a time: the maximum, its correction and the sums after each.
        for (let u = 0; u < UNROLL; u++) {
          const live = kb.let("live", lt(keys[u]!, hi));
          const kf = unpack(kw[u]!);
          const vf = unpack(vw[u]!).map((x) => kb.let("vf", x));
          for (let hh = 0; hh < rep; hh++) {
            const s = score(hh, kf, live);
            const mNew = kb.let("mnew", max(m[hh]!.ref, KPW > 1 ? kb.warpMaxAcross(s, LPK) : s));
            const corr = kb.let("corr", K.exp(sub(m[hh]!.ref, mNew)));
            const p = kb.let("p", K.exp(sub(s, mNew)));
            l[hh]!.set(add(mul(l[hh]!.ref, corr), p));
            for (let t = 0; t < LANE; t++) acc[hh]![t]!.set(add(mul(acc[hh]![t]!.ref, corr), mul(p, vf[t]!)));
            m[hh]!.set(mNew);
          }
        }
        return;
      }
      // A group's UNROLL keys at once: their scores, one maximum (one cross-group shuffle), one
      // correction of the sums, then each key's weight.
      const lives = keys.map((j) => kb.let("live", lt(j, hi)));
      const kfs = kw.map(unpack);
      const scores = Array.from({ length: rep }, (_, hh) => kfs.map((kf, u) => score(hh, kf, lives[u]!)));
      const vfs = vw.map((w) => unpack(w).map((x) => kb.let("vf", x)));
      for (let hh = 0; hh < rep; hh++) {
        const own = kb.let("cmax", scores[hh]!.reduce((a, x) => max(a, x)));
        const mNew = kb.let("mnew", max(m[hh]!.ref, KPW > 1 ? kb.warpMaxAcross(own, LPK) : own));
        const corr = kb.let("corr", K.exp(sub(m[hh]!.ref, mNew)));
        const ps = scores[hh]!.map((s) => kb.let("p", K.exp(sub(s, mNew))));
        l[hh]!.set(add(mul(l[hh]!.ref, corr), ps.reduce((a, x) => add(a, x))));
        for (let t = 0; t < LANE; t++) acc[hh]![t]!.set(ps.reduce((a, p, u) => add(a, mul(p, vfs[u]![t]!)), mul(acc[hh]![t]!.ref, corr)));
        m[hh]!.set(mNew);
      }
    });
    // The warp's key groups (lanes col / 8 apart) hold sums over different keys under one maximum.
    const lw = l.map((x) => (KPW > 1 ? kb.warpSumAcross(x.ref, LPK) : x.ref));
    const ow = acc.map((row) => row.map((x) => (KPW > 1 ? kb.warpSumAcross(x.ref, LPK) : x.ref)));
    const smM = kb.shared("warp_m", "f32", WARPS * rep);
    const smL = kb.shared("warp_l", "f32", WARPS * rep);
    const smO = kb.shared("warp_o", "f32", WARPS * rep * d);
    for (let hh = 0; hh < rep; hh++) {
      const at = kb.let("wi", add(mul(warp, i(rep)), i(hh)));
      kb.if(K.eq(lane, i(0)), () => {
        kb.store(smM, at, m[hh]!.ref);
        kb.store(smL, at, lw[hh]!);
      });
      kb.if(K.eq(sub0, i(0)), () => {
        for (let t = 0; t < LANE; t++) kb.store(smO, add(mul(at, i(d)), add(col, i(t))), ow[hh]![t]!);
      });
    }
    kb.barrier();
    // The warps merged by their maxima: a thread per (head, column) of the group.
    kb.for("e", kb.lid, i(rep * d), (e) => {
      const hh = kb.let("hh", div(e, i(d)));
      const c = kb.let("c", mod(e, i(d)));
      const mw = Array.from({ length: WARPS }, (_, w) => kb.load(smM, add(mul(i(w), i(rep)), hh)));
      const M = kb.let("mx", mw.reduce((a, x) => max(a, x)));
      const wts = mw.map((x) => kb.let("w", K.exp(sub(x, M))));
      const o = wts.map((w, wi) => mul(w, kb.load(smO, add(mul(add(mul(i(wi), i(rep)), hh), i(d)), c)))).reduce((a, x) => add(a, x));
      const row = kb.let("row", qRow(hh));
      const base = kb.let("sbase", mul(add(mul(row, i(SPL)), split), i(W)));
      kb.store(scratch, add(base, c), o);
      kb.if(K.eq(c, i(0)), () => {
        kb.store(scratch, add(base, i(d)), M);
        kb.store(scratch, add(base, i(d + 1)), wts.map((w, wi) => mul(w, kb.load(smL, add(mul(i(wi), i(rep)), hh)))).reduce((a, x) => add(a, x)));
      });
    }, i(DECODE_ATTENTION_THREADS));
    if (mergeInLast) mergeInLastSplit(g, ops, { item, b, kvh, pos, S, qRow }, { nh, rep }, SPL, d, scratch);
  });
  if (mergeInLast) return g.finish({ dim: g.entryDim(itemsDim).mul(SPL), per: 1 });
  const partial = g.finish({ dim: g.entryDim(itemsDim).mul(SPL), per: 1 });
  merge.kb.kernel.name = `${merge.kb.kernel.name}_merge`;
  partial.then = attentionMergeKernel(merge, ops, SPL, scratchElems);
  return partial;
}

/** A merged step's qk_norm_rope ops (up to its last cache append) and the attention's after them; qk empty for an attention step alone. */
export function splitQkPrologue(ops: readonly Op[]): { qk: Op[]; rest: Op[] } {
  let last = -1;
  ops.forEach((o, k) => (last = o.opName === "cache_append" ? k : last));
  return { qk: ops.slice(0, last + 1), rest: ops.slice(last + 1) };
}

/**
 * qk_norm_rope as decode attention's prologue (backends/cuda/attention-prologue.ts merges the two
 * steps at decode): the query heads and the step's new key and value rows computed from the fused
 * QKV projection's rows by qk_norm_rope's own chains (qkv-registers.ts headChain, so value by value
 * its results), the query never stored. Undefined where the step has no qk_norm_rope ops; refused
 * (a LingcError: the merge is then not made) where the attention's query, keys or values are not
 * those chains' results (the keys and values through their cache appends), or the query is read
 * elsewhere, or the heads do not fit a lane group's registers.
 */
function qkPrologue(g: Gen, ops: Op[], att: Op) {
  if (!ops.some((o) => o.opName === "cache_append")) return undefined;
  const [q, k, v] = att.operands as [Value, Value, Value];
  const { reshape, chains, appendOf } = qkvChains(ops);
  const chainOf = (x: Value) => chains.find((ch) => ch.out === x || appendOf.get(ch.out)?.results[0] === x);
  const [qc, kc, vc] = [chainOf(q), chainOf(k), chainOf(v)];
  if (!qc || !kc || !vc || qc.out !== q || appendOf.has(qc.out) || !appendOf.has(kc.out) || !appendOf.has(vc.out)) throw new LingcError("decode attention: its query, keys and values are not qk_norm_rope's heads and cache appends");
  if (g.isOutput(q)) throw new LingcError("decode attention: qk_norm_rope's query is read elsewhere");
  if (!qkvRegistersFits(ops, g.limits)) throw new LingcError("decode attention: qk_norm_rope's heads do not fit a lane group");
  const src = reshape.operands[0]!;
  const NH = reshape.results[0]!.type.shape[2]!.value!;
  const d = q.type.shape[3]!.value!;
  const kb = g.kb;
  const { i, add, mul } = K;
  return {
    q: qc,
    k: kc,
    v: vc,
    /** Head `j` of chain `ch` (from its first) of token `tok`, at position `pos` of the step: a lane's 8 elements from `col`. */
    head(ch: QkvChain, tok: Expr, j: Expr, pos: Expr, at: { lane: Expr; col: Expr }): Expr[] {
      const xs = g.load8(src, add(mul(add(mul(tok, i(NH)), add(j, i(ch.start))), i(d)), at.col)).map((e) => kb.let("x", e));
      return headChain(g, ch, [xs], [pos], { lane: at.lane, c0: at.col, at: at.col, L: d / LANE })[0]!;
    },
  };
}

/**
 * The keys [lo, hi) that split `split` of a query at position `pos` of the step scores: the keys it
 * sees (all T, or causally those up to its own) in SPL chunks. `bind` names a part (kb.let in the
 * body; the expression itself before the wait, where no lets run).
 */
function splitRange(at: { SPL: number; S: Expr; T: Expr; causal: boolean }, pos: Expr, split: Expr, bind: (name: string, e: Expr) => Expr): { lo: Expr; hi: Expr } {
  const { i, add, sub, mul, div, min } = K;
  const visible = at.causal ? bind("visible", add(sub(at.T, at.S), add(pos, i(1)))) : at.T;
  const chunk = bind("chunk", div(add(visible, i(at.SPL - 1)), i(at.SPL)));
  const lo = bind("lo", mul(split, chunk));
  return { lo, hi: bind("hi", min(visible, add(lo, chunk))) };
}

/**
 * The key and value rows of this workgroup's split, prefetched into L2 before the wait for the
 * kernel before (Kernel.preWait): at decode batch 1 a split is 64 keys (32 KB), too little for one
 * multiprocessor to stream at speed in the microseconds the kernel runs, and the cache rows do not
 * depend on that kernel (but for the rows it appends, which it writes through L2 after the prefetch
 * or not). The split's range as the body computes it, inline (no lets before the wait).
 */
function prefetchSplitRows(
  g: Gen,
  bufs: { k: string; v: string },
  cap: { kRows: Expr; vRows: Expr },
  at: { SPL: number; S: Expr; T: Expr; d: number; items: Expr; causal: boolean },
): void {
  const kb = g.kb;
  const { i, sub, add, mul, div, mod, lt } = K;
  const item = div(kb.wg, i(at.SPL));
  const { lo, hi } = splitRange(at, mod(item, at.S), mod(kb.wg, i(at.SPL)), (_, e) => e);
  const n = sub(hi, lo);
  const bkv = div(item, at.S);
  const rowBytes = at.d * 2;
  kb.beforeWait(() =>
    kb.if(K.and(K.eq(kb.lid, i(0)), K.and(lt(item, at.items), lt(i(0), n))), () => {
      kb.prefetchL2(bufs.k, mul(add(mul(bkv, cap.kRows), lo), i(rowBytes)), mul(n, i(rowBytes)));
      kb.prefetchL2(bufs.v, mul(add(mul(bkv, cap.vRows), lo), i(rowBytes)), mul(n, i(rowBytes)));
    }),
  );
}

/**
 * The item's last split to finish merges all of them (one launch where two were): every workgroup
 * fences its partial rows and counts itself in the item's counter; the one that counts last reads
 * the others' rows (written before their fences), merges them as the merge kernel does (attention.ts
 * splitWeights and mergedColumn: the same sums in the same order) and sets the counter back to zero.
 * Measured on the H200 against the merge kernel (bench/results/strong-2026-12-01f-h200.md, call 7):
 * exact against the interpreter and sanitizer-clean, but slower at Ling-mini's batch 1 (1.476, 1.461
 * against 1.442, 1.450 ms a step; the same at batch 32): one workgroup then merges an item's 32 splits
 * alone, after its own, where the merge kernel spreads the rows over the GPU and starts early (PDL).
 * So it is not the default: LINGC_DECODE_MERGE=last (GenLimits.mergeInLastSplit) selects it, for the
 * launch-count work (a persistent decode kernel would merge this way).
 */
function mergeInLastSplit(g: Gen, ops: Op[], at: { item: Expr; b: Expr; kvh: Expr; pos: Expr; S: Expr; qRow: (hh: Expr) => Expr }, heads: { nh: number; rep: number }, splits: number, d: number, scratch: string): void {
  const kb = g.kb;
  const { i, add, mul, div, mod, eq } = K;
  const { nh, rep } = heads;
  const outValue = ops[ops.length - 1]!.results[0]!;
  const transposed = ops.some((o) => o.opName === "transpose");
  const W = d + 2;
  const counters = g.counters();
  const flag = kb.shared("last_split", "i32", 1);
  kb.fence();
  kb.barrier();
  kb.if(eq(kb.lid, i(0)), () => {
    const before = kb.atomicAdd("done", counters, at.item, i(1));
    kb.store(flag, i(0), K.sel(eq(before, i(splits - 1)), i(1), i(0)));
  });
  kb.barrier();
  kb.if(eq(kb.load(flag, i(0)), i(1)), () => {
    kb.fence();
    kb.if(eq(kb.lid, i(0)), () => kb.store(counters, at.item, i(0)));
    kb.for("e", kb.lid, i(rep * d), (e) => {
      const hh = kb.let("hh", div(e, i(d)));
      const c = kb.let("c", mod(e, i(d)));
      const row = kb.let("mrow", at.qRow(hh));
      const base = kb.let("mbase", mul(row, i(splits * W)));
      const part = (s: number, col: Expr) => kb.load(scratch, add(base, add(i(s * W), col)));
      const { wts, l } = splitWeights(kb, part, splits, d);
      // [B, nh, S, d], or [B, S, nh, d] when the transpose is fused.
      const h = add(mul(at.kvh, i(rep)), hh);
      const outBase = transposed ? mul(add(mul(add(mul(at.b, at.S), at.pos), i(nh)), h), i(d)) : mul(row, i(d));
      kb.store(g.buf(outValue), add(outBase, c), g.fit(mergedColumn(part, wts, l, c), outValue.type.dtype));
    }, i(DECODE_ATTENTION_THREADS));
  });
}
