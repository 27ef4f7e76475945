/**
 * Attention, one workgroup per query row (batch, head, position): grouped KV heads, a causal mask
 * aligned to the end of the key range (query i sits at position T-S+i), and an online softmax over
 * blocks of as many keys as the workgroup has threads (the flash-attention recurrence), so the score
 * row is never stored whole. Per block, each thread scores one key against the query row (held in
 * workgroup memory), the workgroup reduces the block's maximum and sum, and each thread updates the
 * output columns it owns (c = lid, lid + wg, ...) from the block's probabilities. A decode step's
 * few rows thus use a workgroup each instead of a thread each (on the H200 through WebGPU, one
 * thread per row took 65 ms per layer for one query over 2048 keys). With the output transpose
 * fused, the result is written as [B, S, heads, d] directly. Keys and values are read with their
 * buffers' row counts, so a KV cache grown in place (rows past T not yet written) is read where it
 * lies.
 */
import { attrsOf, OPS } from "../../../ir/ops";
import type { Dim } from "../../../ir/dim";
import type { Op, Value } from "../../../ir/module";
import { product } from "../../../ir/dim";
import { LingcError } from "../../../ir/errors";
import * as K from "../kir";
import type { Gen, GeneratedKernel } from "./context";

export function attentionKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const att = ops.find((o) => o.opName === "attention")!;
  const transposed = ops.some((o) => o.opName === "transpose");
  const outValue = ops[ops.length - 1]!.results[0]!;
  const [q, k, v] = att.operands as [Value, Value, Value];
  const { scale, causal } = attrsOf(OPS.attention, att);
  const dt = q.type.dtype;
  const [Bd, nhD, Sd] = q.type.shape as [Dim, Dim, Dim];
  const nh = nhD.value!;
  const nkv = k.type.shape[1]!.value!;
  const d = q.type.shape[3]!.value;
  const dv = v.type.shape[3]!.value;
  // Each thread keeps a row of the output in registers: the head widths must be numbers (an
  // attention whose values are [.., T, T], as its derivative builds, is not one of these).
  if (d === undefined || dv === undefined) throw new LingcError(`attention kernel: head widths ${q.type.shape[3]} and ${v.type.shape[3]} must be numbers (this kernel keeps an output row in registers)`);
  const rep = nh / nkv;
  const kb = g.kb;
  const wg = kb.kernel.wg;
  const S = g.size(Sd);
  const T = g.size(k.type.shape[2]!);
  const rowsDim = product([Bd, nhD, Sd]);
  const row = kb.let("row", kb.wg);
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
    // The query row, read once into workgroup memory.
    const qs = kb.shared("q_row", "f32", d);
    kb.for("c", kb.lid, K.i(d), (c) => kb.store(qs, c, kb.load(g.buf(q), K.add(qBase, c))), K.i(wg));
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
        s.set(g.fit(K.mul(g.fit(dot.ref, dt), K.f(scale)), dt));
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
    // [B, nh, S, dv], or [B, S, nh, dv] when the transpose is fused.
    const outBase = transposed ? K.mul(K.add(K.mul(K.add(K.mul(b, S), i), K.i(nh)), h), K.i(dv)) : K.mul(row, K.i(dv));
    const ob = kb.let("obase", outBase);
    for (let t = 0; t < own; t++) {
      const c = kb.let("col", K.add(kb.lid, K.i(t * wg)));
      kb.if(K.lt(c, K.i(dv)), () => kb.store(g.buf(outValue), K.add(ob, c), g.fit(K.div(kb.load(acc, K.i(t), "f32"), l.ref), dt)));
    }
  });
  return g.finish({ dim: g.entryDim(rowsDim), per: 1 });
}
