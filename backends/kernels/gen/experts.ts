/** Finding a row's expert in kernels over rows grouped by expert (grouped_linear's `offsets`), and a routed row's token row. */
import type { Op, Value } from "../../../ir/module";
import { attrsOf, OPS } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr, KernelBuilder } from "../kir";
import type { Gen } from "./context";

/**
 * The row of the token gather's source that routed row r is (moe_permute: out[r] = x[order[r] / k];
 * a whole row, so a row's elements stay consecutive), or r where no gather is fused.
 */
export function gatheredRow(g: Gen, permute: Op | undefined, r: Expr): Expr {
  if (!permute) return r;
  const order = permute.operands[1] as Value;
  return K.div(K.toI(g.load(order, r)), K.i(attrsOf(OPS.moe_permute, permute).k));
}

/**
 * The expert whose row range holds row r: the smallest e with offsets[e + 1] > r (so experts with
 * no rows are passed over), by a binary search of `experts` steps' worth over the E + 1 offsets.
 */
export function expertOfRow(kb: KernelBuilder, offsetAt: (e: Expr) => Expr, r: Expr, E: Expr, experts: number | undefined): Expr {
  const lo = kb.var("lo", K.i(0));
  const hi = kb.var("hi", E);
  const steps = Math.ceil(Math.log2((experts ?? 2) + 1)) + 1;
  kb.for("s", K.i(0), K.i(steps), () => {
    const mid = kb.let("mid", K.div(K.add(lo.ref, hi.ref), K.i(2)));
    kb.if(K.lt(lo.ref, hi.ref), () => {
      kb.if(
        K.le(offsetAt(K.add(mid, K.i(1))), r),
        () => lo.set(K.add(mid, K.i(1))),
        () => hi.set(mid),
      );
    });
  });
  return lo.ref;
}

/**
 * The same search by a whole warp (all 32 lanes reach it with the same r: a warp-synchronous
 * target): each level the lanes test 32 evenly spaced offsets of the remaining range at once and
 * count the ones at or below r (a warp sum), which narrows the range 32-fold: two dependent loads
 * for 256 experts where the binary search takes nine. At batch-1 decode those loads are most of
 * a GEMV's start (each an L2 round trip after the previous kernel's results are visible).
 */
export function expertOfRowByWarp(kb: KernelBuilder, offsetAt: (e: Expr) => Expr, r: Expr, E: number, lane: Expr): Expr {
  let lo: Expr = K.i(0);
  // Invariant: the expert is in [lo, lo + span); offsets[lo + span] > r, so lanes past the span test false.
  for (let span = E; span > 1; ) {
    const stride = Math.ceil(span / 32);
    const at = K.min(K.add(lo, K.mul(K.add(lane, K.i(1)), K.i(stride))), K.i(E));
    const below = kb.let("below", K.sel(K.le(offsetAt(at), r), K.i(1), K.i(0)));
    lo = kb.let("lo", K.add(lo, K.mul(kb.warpSum(below), K.i(stride))));
    span = stride;
  }
  return lo;
}
