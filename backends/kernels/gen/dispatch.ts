/**
 * moe_dispatch: a counting sort of the (token, slot) pairs by expert, in one thread: counts, their
 * prefix sums (the offsets), then a stable placement that also records each pair's row. It is
 * O(pairs) and tiny next to the expert matmuls it feeds.
 */
import { attrsOf, OPS } from "../../../ir/ops";
import type { Op, Value } from "../../../ir/module";
import * as K from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { Dim } from "../../../ir/dim";

export function dispatchKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const op = ops[0]!;
  const idx = op.operands[0]!;
  const [order, offsets, rowOf] = op.results as [Value, Value, Value];
  const E = attrsOf(OPS.moe_dispatch, op).num_experts;
  const kb = g.kb;
  const n = g.size(order.type.shape[0]!);
  kb.if(K.eq(kb.gid, K.i(0)), () => {
    const off = g.buf(offsets);
    kb.for("e", K.i(0), K.i(E + 1), (e) => kb.store(off, e, K.i(0)));
    kb.for("p", K.i(0), n, (p) => {
      const e1 = kb.let("e1", K.add(kb.load(g.buf(idx), p), K.i(1)));
      kb.store(off, e1, K.add(kb.load(off, e1), K.i(1)));
    });
    kb.for("e", K.i(0), K.i(E), (e) => kb.store(off, K.add(e, K.i(1)), K.add(kb.load(off, K.add(e, K.i(1))), kb.load(off, e))));
    const fill = kb.array("fill", "i32", E);
    kb.for("e", K.i(0), K.i(E), (e) => kb.store(fill, e, kb.load(off, e)));
    kb.for("p", K.i(0), n, (p) => {
      const e = kb.let("e", kb.load(g.buf(idx), p));
      const r = kb.let("r", kb.load(fill, e, "i32"));
      kb.store(fill, e, K.add(r, K.i(1)));
      kb.store(g.buf(order), r, p);
      kb.store(g.buf(rowOf), p, r);
    });
  });
  return g.finish({ dim: Dim.of(1), per: 1 });
}
