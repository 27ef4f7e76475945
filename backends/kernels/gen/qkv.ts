/**
 * qk_norm_rope: one workgroup per (token, head) of the fused QKV projection, a thread per element
 * of the head (on a target with warps: a warp per head, several heads a workgroup, see qkvKernel).
 * The head's vector is read once (coalesced) into workgroup memory; whichever of Q, K or V it
 * belongs to (by the group's slices) gets that chain's per-head RMSNorm (a workgroup sum)
 * and partial rotate-half RoPE (each element reads its partner from workgroup memory), and is
 * written straight to its [B, heads, S, d] output. Replaces the split, three transposes, two norms
 * and two RoPEs of the unfused graph. A chain whose rows a KV cache append takes (decode) writes
 * them straight into the cache's buffer past its rows, as the append would have, and so saves the
 * append's own kernel. (A thread per head was the first version: its strided reads and serial loops
 * made it the slowest kernel of a decode step.)
 */
import { attrsOf, OPS } from "../../../ir/ops";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { product } from "../../../ir/dim";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { inverseRms, normedElement } from "./norm";

/** Heads (a warp each) a qk_norm_rope workgroup takes on a target with warps. */
export const QKV_WARP_HEADS = 4;

export interface QkvChain {
  start: number;
  end: number;
  ops: Op[]; // after the transpose: rms_norm / rope, in order
  out: Value;
}

/** The group's head reshape, its chains (one a head-axis slice) and the cache appends by chain output. */
export function qkvChains(ops: readonly Op[]): { reshape: Op; chains: QkvChain[]; appendOf: Map<Value, Op> } {
  const reshape = ops.find((o) => o.opName === "reshape");
  if (!reshape) throw new LingcError("qk_norm_rope kernel without its reshape");
  const byInput = new Map<Value, Op>();
  const appendOf = new Map<Value, Op>();
  for (const o of ops) {
    if (o.opName === "cache_append") appendOf.set(o.operands[1]!, o);
    else if (o !== reshape) byInput.set(o.operands[0]!, o);
  }
  const chains: QkvChain[] = ops
    .filter((o) => o.opName === "slice")
    .map((sl) => {
      const a = attrsOf(OPS.slice, sl);
      const t = byInput.get(sl.results[0]!)!;
      const rest: Op[] = [];
      let cur = byInput.get(t.results[0]!);
      let last = t.results[0]!;
      while (cur && (cur.opName === "rms_norm" || cur.opName === "rope")) {
        rest.push(cur);
        last = cur.results[0]!;
        cur = byInput.get(last);
      }
      return { start: a.start, end: a.end, ops: rest, out: last };
    });
  return { reshape, chains, appendOf };
}

/**
 * warpHeads > 0 (a target with warps): a warp per head and that many heads a workgroup, each warp on
 * its own part of workgroup memory, ordered by warp barriers and summed by shuffles. With a
 * workgroup per head (a warp or more), the H200 ran 196,608 small blocks at 1x8192 and was bound by
 * how many heads it had in flight, not by their instructions.
 */
export function qkvKernel(g: Gen, ops: Op[], warpHeads = 0): GeneratedKernel {
  const { reshape, chains, appendOf } = qkvChains(ops);
  const heads = reshape.results[0]!;
  const [Bd, Sd, NHd, Dd] = heads.type.shape;
  const NH = NHd!.value!;
  const d = Dd!.value!;
  const src = reshape.operands[0]!;
  const dt = heads.type.dtype;
  const kb = g.kb;
  const wg = kb.kernel.wg;
  const S = g.size(Sd!);
  const tokensDim = product([Bd!, Sd!]);
  const W = g.limits.warpSize;
  if (warpHeads > 0 && (!W || wg !== W * warpHeads)) throw new LingcError(`qk_norm_rope: ${warpHeads} heads a workgroup need ${warpHeads} warps, not ${wg} threads`);
  const H = warpHeads > 0 ? warpHeads : 1;
  // This thread's lane among its head's threads, and its head's place in workgroup memory.
  const lane = warpHeads > 0 ? kb.let("lane", K.mod(kb.lid, K.i(W!))) : kb.lid;
  const lanes = warpHeads > 0 ? W! : wg;
  const item = warpHeads > 0 ? kb.let("item", K.add(K.mul(kb.wg, K.i(H)), K.div(kb.lid, K.i(W!)))) : kb.let("item", kb.wg);
  const part = H > 1 ? kb.let("part", K.mul(K.div(kb.lid, K.i(W!)), K.i(d))) : K.i(0);
  const at = (c: Expr) => K.addI(part, c);
  const sync = () => (warpHeads > 0 ? kb.warpBarrier() : kb.barrier());
  const sum = (v: Expr) => (warpHeads > 0 ? kb.warpSum(v) : kb.workgroupSum(v));
  /** for (c = lane; c < n; c += lanes) */
  const each = (n: number, body: (c: Expr) => void) => kb.for("c", lane, K.i(n), body, K.i(lanes));
  kb.if(K.lt(item, K.mul(g.size(tokensDim), K.i(NH))), () => {
    const tok = kb.let("tok", K.div(item, K.i(NH)));
    const j = kb.let("j", K.mod(item, K.i(NH)));
    const b = kb.let("b", K.div(tok, S));
    const s = kb.let("s", K.mod(tok, S));
    const x = kb.shared("xh", "f32", H * d);
    // The rotation's scratch row, when some chain rotates (a backward function may recompute only
    // the value heads, which neither norm nor rotate).
    const y = chains.some((ch) => ch.ops.some((o) => o.opName === "rope")) ? kb.shared("yh", "f32", H * d) : "";
    each(d, (c) => kb.store(x, at(c), kb.load(g.buf(src), K.add(K.mul(item, K.i(d)), c))));
    sync();
    const run = (ch: QkvChain) => {
      // The head's current values: in x, or in y after a rotation (which reads other threads'
      // elements of one buffer and writes the other). A thread reads and writes only its own
      // elements otherwise, so no barrier follows the chain's last op.
      let cur = x;
      ch.ops.forEach((op, n) => {
        const last = n === ch.ops.length - 1;
        if (op.opName === "rms_norm") {
          const w = op.operands[1]!;
          const eps = attrsOf(OPS.rms_norm, op).eps;
          const ss = kb.var("ss", K.f(0));
          const xs = cur;
          each(d, (c) => ss.set(K.add(ss.ref, K.mul(kb.load(xs, at(c), "f32"), kb.load(xs, at(c), "f32")))));
          const inv = kb.let("inv", inverseRms(sum(ss.ref), d, eps));
          each(d, (c) => kb.store(xs, at(c), normedElement(g, kb.load(g.buf(w), c), kb.load(xs, at(c), "f32"), inv, dt)));
          if (!last) sync();
        } else {
          const [from, to] = cur === x ? [x, y] : [y, x];
          const [cosT, sinT] = [op.operands[1]!, op.operands[2]!];
          const half = cosT.type.shape[1]!.value!;
          const r = (e: Expr) => g.fit(e, dt);
          each(d, (c) => {
            // c < half: x[c] cos - x[c + half] sin; half <= c < 2 half: x[c] cos + x[c - half] sin
            // (cos and sin of pair c mod half); the rest of the head passes through.
            const lo = K.lt(c, K.i(half));
            const p = kb.let("p", K.sel(lo, c, K.sub(c, K.i(half))));
            const rotated = K.lt(c, K.i(2 * half));
            const pc = K.min(p, K.i(half - 1)); // in range for every c, so the loads below are safe
            const cs = kb.let("cs", kb.load(g.buf(cosT), K.add(K.mul(s, K.i(half)), pc)));
            const sn = kb.let("sn", kb.load(g.buf(sinT), K.add(K.mul(s, K.i(half)), pc)));
            const a1 = kb.let("a1", kb.load(from, at(pc), "f32"));
            const a2 = kb.let("a2", kb.load(from, at(K.add(pc, K.i(half))), "f32"));
            const first = r(K.add(r(K.mul(a1, cs)), r(K.neg(K.mul(a2, sn)))));
            const second = r(K.add(r(K.mul(a2, cs)), r(K.mul(a1, sn))));
            kb.store(to, at(c), K.sel(rotated, K.sel(lo, first, second), kb.load(from, at(c), "f32")));
          });
          if (!last) sync();
          cur = to;
        }
      });
      const head = cur;
      const n = ch.end - ch.start;
      // Row (b, head, s) of a [B, n, rows, d] buffer, at `past` rows into its sequence axis.
      const write = (out: Value, rows: Expr, past: Expr) => {
        const base = kb.let("obase", K.mul(K.add(K.mul(K.add(K.mul(b, K.i(n)), K.sub(j, K.i(ch.start))), rows), K.add(past, s)), K.i(d)));
        each(d, (c) => kb.store(g.buf(out), K.add(base, c), kb.load(head, at(c), "f32")));
      };
      const append = appendOf.get(ch.out);
      if (append) {
        // Into the cache's buffer past its rows (its capacity's row stride), in place.
        const grown = append.results[0]!;
        write(grown, g.storageRows(grown, 2), g.size(append.operands[0]!.type.shape[2]!));
      }
      if (!append || g.isOutput(ch.out)) write(ch.out, S, K.i(0));
    };
    const branch = (k: number): void => {
      const ch = chains[k]!;
      kb.if(K.and(K.ge(j, K.i(ch.start)), K.lt(j, K.i(ch.end))), () => run(ch), k + 1 < chains.length ? () => branch(k + 1) : undefined);
    };
    branch(0);
  });
  return g.finish({ dim: g.entryDim(product([Bd!, Sd!, NHd!])), per: H });
}
