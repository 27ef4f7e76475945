/** Finding a row's expert in kernels over rows grouped by expert (grouped_linear's `offsets`). */
import * as K from "../kir";
import type { Expr, KernelBuilder } from "../kir";

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
