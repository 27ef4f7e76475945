/**
 * Attention, a workgroup per query row (batch, head, position), in three forms. Common to all:
 * grouped KV heads, a causal mask aligned to the end of the key range (query i sits at position
 * T-S+i), an online softmax over key blocks (the flash-attention recurrence), so the score row is
 * never stored whole; with the output transpose fused, the result is written as [B, S, heads, d]
 * directly; keys and values are read with their buffers' row counts, so a KV cache grown in place
 * (rows past T not yet written) is read where it lies.
 *
 * The row form (attentionKernel), for CPU rasterizers: blocks of as many keys as the workgroup has
 * threads; each thread scores one key against the query row (held in workgroup memory), the
 * workgroup reduces the block's maximum and sum, and each thread updates the output columns it owns
 * (c = lid, lid + wg, ...) from the block's probabilities. (On the H200 through WebGPU, a thread per
 * row took 65 ms per layer for one query over 2048 keys; this form, 3.45 ms: its value loop is a
 * dependent chain of 256 loads per block.)
 *
 * The blocked form (attentionBlockedKernel), for GPUs (WebGpuProfile.gpuForms): each thread's loads
 * of a key block are independent statements (unrolled here: WGSL compilers do not unroll), so a
 * block is a few memory round trips rather than one per key (0.83 ms). Per block of NB keys: P
 * threads score each key (column c = p + P t, so neighbouring threads read neighbouring floats),
 * their partial dots summed through workgroup memory; the block's maximum and sum reduce over NB
 * entries; then KQ groups of dv threads each take every KQ-th key of the block for their output
 * column, summed across groups at the end.
 *
 * The split form (attentionSplitKernels), the blocked form for few rows: see below (0.15 ms).
 */
import { attrsOf, OPS } from "../../../ir/ops";
import type { Dim } from "../../../ir/dim";
import type { Op, Value } from "../../../ir/module";
import { product } from "../../../ir/dim";
import { LingcError } from "../../../ir/errors";
import * as K from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { quantRecipe, splitQuantEpilogue } from "./quant";
import { ATTENTION_SPLITS, ATTENTION_SPLIT_MAX_ROWS } from "../../../ir/target/kernel-forms";

/** A workgroup's query row: where its query and its KV head's rows are, the keys it sees, where its output goes. */
interface RowAt {
  row: K.Expr;
  qBase: K.Expr;
  kRow: K.Expr;
  vRow: K.Expr;
  visible: K.Expr;
  outBase: K.Expr;
}

/** What every form shares: a workgroup's query row, its KV head's rows, and where its output goes. */
interface RowSetup {
  q: Value;
  k: Value;
  v: Value;
  /** The result (before a trailing quantize). */
  outValue: Value;
  /** The step's trailing quantize of the result (a quantize epilogue: backends/cuda/quant-epilogue.ts), which only the merge kernel takes. */
  quant?: Op;
  d: number;
  dv: number;
  scaleOf: (dot: K.Expr) => K.Expr;
  rowsDim: Dim;
  /** Per workgroup (inside the row guard); `row`: the query row it computes (default: the workgroup's index). */
  at: (body: (r: RowAt) => void, row?: K.Expr) => void;
}

function rowSetup(g: Gen, ops: Op[]): RowSetup {
  const att = ops.find((o) => o.opName === "attention")!;
  const transposed = ops.some((o) => o.opName === "transpose");
  const { quant, ops: body } = splitQuantEpilogue(ops);
  const outValue = body[body.length - 1]!.results[0]!;
  const [q, k, v] = att.operands as [Value, Value, Value];
  const { scale, causal } = attrsOf(OPS.attention, att);
  const dt = q.type.dtype;
  const [, nhD, Sd] = q.type.shape as [Dim, Dim, Dim];
  const nh = nhD.value!;
  const nkv = k.type.shape[1]!.value!;
  const d = q.type.shape[3]!.value;
  const dv = v.type.shape[3]!.value;
  // Each thread keeps a row of the output in registers: the head widths must be numbers (an
  // attention whose values are [.., T, T], as its derivative builds, is not one of these).
  if (d === undefined || dv === undefined) throw new LingcError(`attention kernel: head widths ${q.type.shape[3]} and ${v.type.shape[3]} must be numbers (this kernel keeps an output row in registers)`);
  const rep = nh / nkv;
  const kb = g.kb;
  const S = g.size(Sd);
  const T = g.size(k.type.shape[2]!);
  const rowsDim = attentionRows(ops);
  const at: RowSetup["at"] = (body, rowOf) => {
    const row = kb.let("row", rowOf ?? kb.wg);
    kb.if(K.lt(row, g.size(rowsDim)), () => {
      const i = kb.let("i", K.mod(row, S));
      const bh = kb.let("bh", K.div(row, S));
      const h = kb.let("h", K.mod(bh, K.i(nh)));
      const b = kb.let("b", K.div(bh, K.i(nh)));
      const kvh = kb.let("kvh", K.div(h, K.i(rep)));
      const qBase = kb.let("qbase", K.mul(row, K.i(d)));
      const kvHead = kb.let("kvhead", K.add(K.mul(b, K.i(nkv)), kvh));
      const kRow = kb.let("krow", K.mul(kvHead, g.storageRows(k, 2)));
      const vRow = kb.let("vrow", K.mul(kvHead, g.storageRows(v, 2)));
      const visible = causal ? kb.let("visible", K.add(K.sub(T, S), K.add(i, K.i(1)))) : T;
      // [B, nh, S, dv], or [B, S, nh, dv] when the transpose is fused.
      const outBase = transposed ? K.mul(K.add(K.mul(K.add(K.mul(b, S), i), K.i(nh)), h), K.i(dv)) : K.mul(row, K.i(dv));
      body({ row, qBase, kRow, vRow, visible, outBase });
    });
  };
  return { q, k, v, outValue, ...(quant ? { quant } : {}), d, dv, rowsDim, at, scaleOf: (dot) => g.fit(K.mul(g.fit(dot, dt), K.f(scale)), dt) };
}

/** The query row, read once into workgroup memory (a barrier follows before it is read). */
function queryRow(g: Gen, q: Value, qBase: K.Expr, d: number): string {
  const kb = g.kb;
  const qs = kb.shared("q_row", "f32", d);
  kb.for("c", kb.lid, K.i(d), (c) => kb.store(qs, c, kb.load(g.buf(q), K.add(qBase, c))), K.i(kb.kernel.wg));
  return qs;
}

export function attentionKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const { q, k, v, outValue, d, dv, rowsDim, at, scaleOf } = rowSetup(g, ops);
  const dt = q.type.dtype;
  const kb = g.kb;
  const wg = kb.kernel.wg;
  at(({ qBase, kRow, vRow, visible, outBase }) => {
    const qs = queryRow(g, q, qBase, d);
    // The block's probabilities, one per key.
    const ps = kb.shared("p_block", "f32", wg);
    kb.barrier();
    // This thread's output columns: c = lid + t x wg.
    const own = Math.ceil(dv / wg);
    const acc = kb.array("acc", "f32", own);
    for (let t = 0; t < own; t++) kb.store(acc, K.i(t), K.f(0));
    const m = kb.var("m", K.f(-Infinity));
    const l = kb.var("l", K.f(0));
    kb.for("j0", K.i(0), visible, (j0) => {
      const j = kb.let("j", K.add(j0, kb.lid));
      const live = kb.let("live", K.lt(j, visible));
      const s = kb.var("s", K.f(-Infinity));
      kb.if(live, () => {
        const dot = kb.var("dot", K.f(0));
        const kBase = kb.let("kbase", K.mul(K.add(kRow, j), K.i(d)));
        kb.for("c", K.i(0), K.i(d), (c) => dot.set(K.add(dot.ref, K.mul(kb.load(qs, c), kb.load(g.buf(k), K.add(kBase, c))))));
        s.set(scaleOf(dot.ref));
      });
      const mNew = kb.let("mnew", K.max(m.ref, kb.workgroupMax(s.ref)));
      const p = kb.let("p", K.sel(live, K.exp(K.sub(s.ref, mNew)), K.f(0)));
      kb.store(ps, kb.lid, p);
      const corr = kb.let("corr", K.exp(K.sub(m.ref, mNew)));
      // (The reduction's barriers also publish ps.)
      l.set(K.add(K.mul(l.ref, corr), kb.workgroupSum(p)));
      const n = kb.let("n", K.min(K.i(wg), K.sub(visible, j0)));
      for (let t = 0; t < own; t++) {
        const c = kb.let("col", K.add(kb.lid, K.i(t * wg)));
        kb.if(K.lt(c, K.i(dv)), () => {
          const sum = kb.var("pv", K.mul(kb.load(acc, K.i(t), "f32"), corr));
          kb.for("jj", K.i(0), n, (jj) => sum.set(K.add(sum.ref, K.mul(kb.load(ps, jj), kb.load(g.buf(v), K.add(K.mul(K.add(vRow, K.add(j0, jj)), K.i(dv)), c))))));
          kb.store(acc, K.i(t), sum.ref);
        });
      }
      m.set(mNew);
      // ps is rewritten by the next block.
      kb.barrier();
    }, K.i(wg));
    const ob = kb.let("obase", outBase);
    for (let t = 0; t < own; t++) {
      const c = kb.let("col", K.add(kb.lid, K.i(t * wg)));
      kb.if(K.lt(c, K.i(dv)), () => kb.store(g.buf(outValue), K.add(ob, c), g.fit(K.div(kb.load(acc, K.i(t), "f32"), l.ref), dt)));
    }
  });
  return g.finish({ dim: g.entryDim(rowsDim), per: 1 });
}

/** The smallest power of two at least n. */
const pow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * The blocked form (see the file's note). The workgroup's size must be a power of two. Loads per
 * thread per block: ceil(d / P) keys' columns (P: threads per key, so that it is at most 64) and
 * ceil(NB / KQ) values per output column.
 */
export function attentionBlockedKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const setup = rowSetup(g, ops);
  const { outValue, rowsDim, at } = setup;
  const dt = setup.q.type.dtype;
  at((r) => {
    const ob = g.kb.let("obase", r.outBase);
    blockedRow(g, setup, r, K.i(0), r.visible, (col, o, l) => g.kb.store(g.buf(outValue), K.add(ob, col), g.fit(K.div(o, l), dt)));
  });
  return g.finish({ dim: g.entryDim(rowsDim), per: 1 });
}

/** The query rows of an attention group (batch x heads x positions: a workgroup each). */
export function attentionRows(ops: readonly Op[]): Dim {
  const q = ops.find((o) => o.opName === "attention")!.operands[0]!;
  return product(q.type.shape.slice(0, 3));
}

// Key splits of the split form, and the most query rows it takes (ir/target/kernel-forms.ts: the CUDA dispatch bounds by it too).
export { ATTENTION_SPLITS, ATTENTION_SPLIT_MAX_ROWS };

/**
 * The split form, for few query rows (a decode step: batch x heads rows): the blocked form over
 * ATTENTION_SPLITS workgroups per row, each over its share of the keys, writing its unnormalized
 * output row, running maximum and sum to a scratch buffer ([rows, splits, dv + 2] f32); then a
 * second kernel, a workgroup per row, merges the splits (flash-decoding's two passes). With 16 rows
 * the blocked form keeps 16 of the H200's 132 SMs busy, each walking 16 key blocks in a chain.
 */
export function attentionSplitKernels(g: Gen, merge: Gen, ops: Op[]): GeneratedKernel {
  const setup = rowSetup(g, ops);
  const { dv, rowsDim } = setup;
  const kb = g.kb;
  const W = dv + 2;
  const scratchElems = ATTENTION_SPLIT_MAX_ROWS * ATTENTION_SPLITS * W;
  const scratch = g.scratch(scratchElems);
  const split = kb.let("split", K.mod(kb.wg, K.i(ATTENTION_SPLITS)));
  setup.at((r) => {
    const chunk = kb.let("chunk", K.div(K.add(r.visible, K.i(ATTENTION_SPLITS - 1)), K.i(ATTENTION_SPLITS)));
    const lo = kb.let("lo", K.mul(split, chunk));
    const hi = kb.let("hi", K.min(r.visible, K.add(lo, chunk)));
    const base = kb.let("sbase", K.mul(K.add(K.mul(r.row, K.i(ATTENTION_SPLITS)), split), K.i(W)));
    blockedRow(g, setup, r, lo, hi, (col, o, l, m) => {
      kb.store(scratch, K.add(base, col), o);
      kb.if(K.eq(col, K.i(0)), () => {
        kb.store(scratch, K.add(base, K.i(dv)), m);
        kb.store(scratch, K.add(base, K.i(dv + 1)), l);
      });
    });
  }, K.div(kb.wg, K.i(ATTENTION_SPLITS)));
  const partial = g.finish({ dim: g.entryDim(rowsDim).mul(ATTENTION_SPLITS), per: 1 });
  merge.kb.kernel.name = `${merge.kb.kernel.name}_merge`;
  partial.then = attentionMergeKernel(merge, ops, ATTENTION_SPLITS, scratchElems);
  return partial;
}

/**
 * A split form's second kernel: per query row, a thread per output column, the row's `splits`
 * partial results (scratch: [rows, splits, dv + 2] f32, the unnormalized output row, then its
 * maximum and sum of exponentials) merged by their maxima.
 */
export function attentionMergeKernel(g: Gen, ops: Op[], splits: number, scratchElems: number): GeneratedKernel {
  const setup = rowSetup(g, ops);
  const { dv, outValue, rowsDim, quant } = setup;
  const W = dv + 2;
  const dt = setup.q.type.dtype;
  const kb = g.kb;
  const wg = kb.kernel.wg;
  if (quant) quantizedRowFits(quant, dv, wg);
  const scratch = g.scratch(scratchElems);
  setup.at((r) => {
    const base = kb.let("sbase", K.mul(r.row, K.i(splits * W)));
    const at = (s: number, c: K.Expr) => kb.load(scratch, K.add(base, K.add(K.i(s * W), c)));
    const { wts, l } = splitWeights(kb, at, splits, dv);
    const ob = kb.let("obase", r.outBase);
    if (quant) {
      // A quantize epilogue: the row (a thread a column) is one 1 x dv group; its amax over the
      // workgroup, then each thread's code and the first thread's scale.
      const codes = quant.results[0]!;
      const v = kb.let("ov", g.fit(mergedColumn(at, wts, l, kb.lid), dt));
      const { s, q } = quantRecipe(g, quant, kb.workgroupMax(K.abs(v)));
      kb.store(g.buf(codes, true), K.add(ob, kb.lid), q(v));
      kb.if(K.eq(kb.lid, K.i(0)), () => kb.store(g.scalesBuf(codes), g.scaleIndex(codes, ob), s));
      return;
    }
    kb.for("c", kb.lid, K.i(dv), (c) => kb.store(g.buf(outValue), K.add(ob, c), g.fit(mergedColumn(at, wts, l, c), dt)), K.i(wg));
  });
  return g.finish({ dim: g.entryDim(rowsDim), per: 1 });
}

/** Refuses a quantize epilogue the merge kernel cannot take: e4m3 in one 1 x dv group a row, a thread a column. */
function quantizedRowFits(quant: Op, dv: number, wg: number): void {
  const { to, block } = attrsOf(OPS.quantize, quant);
  const [rb, G] = block as [number, number];
  if (to !== "f8e4m3fn" || rb !== 1 || G !== dv || wg !== dv) throw new LingcError(`attention merge: cannot quantize its ${dv}-wide rows in ${rb} x ${G} groups of ${to} with ${wg} threads in its epilogue`);
}

/** A query row's split `s`, column `c` of its partial result ([dv + 2]: the unnormalized row, its maximum, its sum of exponentials). */
export type SplitPart = (s: number, c: K.Expr) => K.Expr;

/**
 * The merge of a query row's `splits` partial results: each split's weight exp(m_s - m) under the
 * row's maximum m, and the row's sum of exponentials. A split with no keys has maximum -inf (the
 * lowest float) or a large negative one, and weighs nothing.
 */
export function splitWeights(kb: K.KernelBuilder, part: SplitPart, splits: number, dv: number): { wts: K.Expr[]; l: K.Expr } {
  let mx: K.Expr = part(0, K.i(dv));
  for (let s = 1; s < splits; s++) mx = K.max(mx, part(s, K.i(dv)));
  const m = kb.let("m", mx);
  const wts = Array.from({ length: splits }, (_, s) => kb.let("w", K.exp(K.sub(part(s, K.i(dv)), m))));
  const l = kb.let("l", wts.map((w, s) => K.mul(w, part(s, K.i(dv + 1)))).reduce((a, b) => K.add(a, b)));
  return { wts, l };
}

/** Column c of the merged row (unrounded): the splits' sums by their weights, over the row's sum. */
export function mergedColumn(part: SplitPart, wts: K.Expr[], l: K.Expr, c: K.Expr): K.Expr {
  return K.div(wts.map((w, s) => K.mul(w, part(s, c))).reduce((a, b) => K.add(a, b)), l);
}

/**
 * The blocked online softmax of one query row over keys [lo, hi) (hi <= visible), then `finish`
 * with each output column's unnormalized sum, the row's sum of exponentials and its maximum (once
 * per column, by one thread each).
 */
function blockedRow(g: Gen, setup: RowSetup, r: RowAt, lo: K.Expr, hi: K.Expr, finish: (col: K.Expr, o: K.Expr, l: K.Expr, m: K.Expr) => void): void {
  const { q, k, v, d, dv, scaleOf } = setup;
  const { qBase, kRow, vRow } = r;
  const kb = g.kb;
  const wg = kb.kernel.wg;
  if (wg !== pow2(wg)) throw new LingcError(`attention kernel: the blocked form needs a power-of-two workgroup, not ${wg}`);
  const P = Math.min(wg, pow2(Math.ceil(d / 64)));
  const NB = wg / P;
  const dPer = Math.ceil(d / P);
  const dvSpan = Math.min(dv, wg);
  const KQ = Math.floor(wg / dvSpan);
  const own = Math.ceil(dv / dvSpan);
  const keysPer = Math.ceil(NB / KQ);
  const zero = K.f(0);
  const qs = queryRow(g, q, qBase, d);
  const partial = kb.shared("dot_part", "f32", wg);
  const probs = kb.shared("p_block", "f32", NB);
  const red = kb.shared("red", "f32", NB);
  kb.barrier();
  // Scoring: key kk of the block, columns p, p + P, ...
  const kk = kb.let("kk", K.div(kb.lid, K.i(P)));
  const p = kb.let("p", K.mod(kb.lid, K.i(P)));
  // Values: output column col0 (+ t x dvSpan), keys kq, kq + KQ, ... of the block.
  const col0 = kb.let("col0", K.mod(kb.lid, K.i(dvSpan)));
  const kq = kb.let("kq", K.div(kb.lid, K.i(dvSpan)));
  const last = kb.let("last", K.sub(hi, K.i(1)));
  const acc = kb.array("acc", "f32", own);
  for (let t = 0; t < own; t++) kb.store(acc, K.i(t), zero);
  const m = kb.var("m", K.f(-Infinity));
  const l = kb.var("l", K.f(0));
  /** Workgroup reduction of red[0 .. NB) into red[0], then read by all (a barrier after its use is the caller's). */
  const reduceBlock = (combine: (a: K.Expr, b: K.Expr) => K.Expr): K.Expr => {
    for (let s = NB / 2; s >= 1; s /= 2) {
      kb.if(K.lt(kb.lid, K.i(s)), () => kb.store(red, kb.lid, combine(kb.load(red, kb.lid), kb.load(red, K.add(kb.lid, K.i(s))))));
      kb.barrier();
    }
    return kb.let("total", kb.load(red, K.i(0)));
  };
  kb.for("j0", lo, hi, (j0) => {
    // Rows past the range are read at its last row (so never outside what is written) and count
    // for nothing.
    const kBase = kb.let("kbase", K.mul(K.add(kRow, K.min(K.add(j0, kk), last)), K.i(d)));
    const terms: K.Expr[] = [];
    for (let t = 0; t < dPer; t++) {
      const c = K.add(p, K.i(P * t));
      if (P * (t + 1) <= d) terms.push(K.mul(kb.load(qs, c), kb.let("kx", kb.load(g.buf(k), K.add(kBase, c)))));
      else {
        const cc = K.min(c, K.i(d - 1));
        terms.push(K.sel(K.lt(c, K.i(d)), K.mul(kb.load(qs, cc), kb.let("kx", kb.load(g.buf(k), K.add(kBase, cc)))), zero));
      }
    }
    kb.store(partial, kb.lid, terms.reduce((a, b) => K.add(a, b)));
    kb.barrier();
    kb.if(K.lt(kb.lid, K.i(NB)), () => {
      let dot: K.Expr = kb.load(partial, K.mul(kb.lid, K.i(P)));
      for (let pp = 1; pp < P; pp++) dot = K.add(dot, kb.load(partial, K.add(K.mul(kb.lid, K.i(P)), K.i(pp))));
      const s = kb.let("s", K.sel(K.lt(K.add(j0, kb.lid), hi), scaleOf(dot), K.f(-Infinity)));
      kb.store(probs, kb.lid, s);
      kb.store(red, kb.lid, s);
    });
    kb.barrier();
    const mNew = kb.let("mnew", K.max(m.ref, reduceBlock(K.max)));
    kb.barrier();
    kb.if(K.lt(kb.lid, K.i(NB)), () => {
      const pj = kb.let("pj", K.sel(K.lt(K.add(j0, kb.lid), hi), K.exp(K.sub(kb.load(probs, kb.lid), mNew)), zero));
      kb.store(probs, kb.lid, pj);
      kb.store(red, kb.lid, pj);
    });
    kb.barrier();
    const corr = kb.let("corr", K.exp(K.sub(m.ref, mNew)));
    l.set(K.add(K.mul(l.ref, corr), reduceBlock(K.add)));
    kb.if(K.lt(kq, K.i(KQ)), () => {
      const sums: K.Expr[][] = Array.from({ length: own }, (_, t) => [K.mul(kb.load(acc, K.i(t), "f32"), corr)]);
      for (let u = 0; u < keysPer; u++) {
        const jj = K.add(kq, K.i(KQ * u));
        const inBlock = KQ * (u + 1) <= NB;
        const jc = inBlock ? jj : K.min(jj, K.i(NB - 1));
        const pj = kb.let("pj", inBlock ? kb.load(probs, jc) : K.sel(K.lt(jj, K.i(NB)), kb.load(probs, jc), zero));
        const vBase = kb.let("vbase", K.mul(K.add(vRow, K.min(K.add(j0, jc), last)), K.i(dv)));
        for (let t = 0; t < own; t++) {
          const c = K.add(col0, K.i(t * dvSpan));
          const cc = dvSpan * (t + 1) <= dv ? c : K.min(c, K.i(dv - 1));
          sums[t]!.push(K.mul(pj, kb.let("vx", kb.load(g.buf(v), K.add(vBase, cc)))));
        }
      }
      for (let t = 0; t < own; t++) kb.store(acc, K.i(t), sums[t]!.reduce((a, b) => K.add(a, b)));
    });
    m.set(mNew);
    // The block's arrays are rewritten by the next block.
    kb.barrier();
  }, K.i(NB));
  if (KQ > 1) {
    // The key groups' partial sums (own = 1 here: dv <= wg).
    const comb = kb.shared("o_part", "f32", KQ * dvSpan);
    kb.if(K.lt(kq, K.i(KQ)), () => kb.store(comb, kb.lid, kb.load(acc, K.i(0), "f32")));
    kb.barrier();
    kb.if(K.lt(kb.lid, K.i(dv)), () => {
      let o: K.Expr = kb.load(comb, kb.lid);
      for (let j = 1; j < KQ; j++) o = K.add(o, kb.load(comb, K.add(kb.lid, K.i(j * dvSpan))));
      finish(kb.lid, o, l.ref, m.ref);
    });
  } else {
    for (let t = 0; t < own; t++) {
      const c = kb.let("col", K.add(kb.lid, K.i(t * wg)));
      kb.if(K.lt(c, K.i(dv)), () => finish(c, kb.load(acc, K.i(t), "f32"), l.ref, m.ref));
    }
  }
}
