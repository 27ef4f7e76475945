/**
 * Attention, one thread per query row (batch, head, position): grouped KV heads, a causal mask
 * aligned to the end of the key range (query i sits at position T-S+i), and an online softmax that
 * keeps the running max, sum and output row in registers (the flash-attention recurrence), so the
 * score row is never stored. With the output transpose fused, the result is written as
 * [B, S, heads, d] directly. Keys and values are read with their buffers' row counts, so a KV cache
 * grown in place (rows past T not yet written) is read where it lies.
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
  const S = g.size(Sd);
  const T = g.size(k.type.shape[2]!);
  const rowsDim = product([Bd, nhD, Sd]);
  const row = kb.let("row", kb.gid);
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
    const acc = kb.array("acc", "f32", dv);
    kb.for("c", K.i(0), K.i(dv), (c) => kb.store(acc, c, K.f(0)));
    const m = kb.var("m", K.f(-Infinity));
    const l = kb.var("l", K.f(0));
    kb.for("j", K.i(0), visible, (j) => {
      const dot = kb.var("dot", K.f(0));
      const kBase = kb.let("kbase", K.mul(K.add(kRow, j), K.i(d)));
      kb.for("c", K.i(0), K.i(d), (c) => dot.set(K.add(dot.ref, K.mul(kb.load(g.buf(q), K.add(qBase, c)), kb.load(g.buf(k), K.add(kBase, c))))));
      const s = kb.let("s", g.fit(K.mul(g.fit(dot.ref, dt), K.f(scale)), dt));
      const mNew = kb.let("mnew", K.max(m.ref, s));
      const corr = kb.let("corr", K.exp(K.sub(m.ref, mNew)));
      const p = kb.let("p", K.exp(K.sub(s, mNew)));
      l.set(K.add(K.mul(l.ref, corr), p));
      const vBase = kb.let("vbase", K.mul(K.add(vRow, j), K.i(dv)));
      kb.for("c", K.i(0), K.i(dv), (c) => kb.store(acc, c, K.add(K.mul(kb.load(acc, c, "f32"), corr), K.mul(p, kb.load(g.buf(v), K.add(vBase, c))))));
      m.set(mNew);
    });
    // [B, nh, S, dv], or [B, S, nh, dv] when the transpose is fused.
    const outBase = transposed ? K.mul(K.add(K.mul(K.add(K.mul(b, S), i), K.i(nh)), h), K.i(dv)) : K.mul(row, K.i(dv));
    const ob = kb.let("obase", outBase);
    kb.for("c", K.i(0), K.i(dv), (c) => kb.store(g.buf(outValue), K.add(ob, c), g.fit(K.div(kb.load(acc, c, "f32"), l.ref), dt)));
  });
  return g.finish({ dim: g.entryDim(rowsDim), per: g.kb.kernel.wg });
}
