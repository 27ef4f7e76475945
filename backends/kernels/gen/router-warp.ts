/**
 * The router on CUDA, a warp per token (ROUTER_WARPS tokens a workgroup), decode and prefill alike.
 * The workgroup router (router.ts) keeps a token's rows in workgroup memory and pays a barrier after
 * each op and two for each of its k arg-max rounds; here a token's E expert scores sit in its warp's
 * registers, E / 32 consecutive experts a lane (a row of k <= 32 values: one a lane; a per-token
 * scalar: in every lane), and warps share nothing. The same ops as router.ts but the gate linear:
 * casts, constants, elementwise ops (their op-table formulas per register), group_topk (each group's
 * score by merging its lanes' best values over butterfly shuffles, the kept groups by each group's
 * rank among the others read by xor shuffles, then k rounds of a warp arg-max (a warp max and a
 * ballot a round), ties to the lower index as torch.topk), take_along (source-lane shuffles) and reduce_sum.
 */
import type { Op } from "../../../ir/module";
import { attrsOf, OPS } from "../../../ir/ops";
import { routerWarpTakes, rowWidth } from "../../../ir/target/kernel-forms";
import { LingcError } from "../../../ir/errors";
import * as K from "../kir";
import type { Expr } from "../kir";
import { opFormula } from "./algebra";
import { walkRouter } from "./router-walk";
import type { Gen, GeneratedKernel, GenLimits } from "./context";

export const ROUTER_WARPS = 4;
export const ROUTER_WARP_THREADS = ROUTER_WARPS * 32;

/** A token's row in its warp: n values, element lane x per + r in register r of lane `lane` (n = 1: the same value in every lane). */
interface WarpRow {
  n: number;
  per: number;
  regs: Expr[];
}

/** Whether the warp form computes these ops (ir/target/kernel-forms.ts: routerWarpTakes, which the CUDA dispatch reads too) on a target with 32-lane warps. */
export function coversRouterWarp(ops: readonly Op[], limits: GenLimits | undefined): boolean {
  return limits?.warpSize === 32 && routerWarpTakes(ops);
}

export function routerWarpKernel(g: Gen, ops: Op[]): GeneratedKernel {
  if (!coversRouterWarp(ops, g.limits)) throw new LingcError("router (warp form): the step is not a group_topk over a multiple of 32 scores with its elementwise ops");
  const kb = g.kb;
  const { i, add, mul, div, mod, lt, eq, sel } = K;
  const gt = ops.find((o) => o.opName === "group_topk")!;
  const tokensDim = gt.results[0]!.type.shape[0]!;
  const lane = kb.let("lane", mod(kb.lid, i(32)));
  const t = kb.let("t", add(mul(kb.wg, i(ROUTER_WARPS)), div(kb.lid, i(32))));
  const rowShape = (n: number) => ({ n, per: n <= 32 ? 1 : n / 32 });
  /** This lane's element of register r. */
  const elemOf = (row: { per: number }, r: number) => add(mul(lane, i(row.per)), i(r));
  /** A row's register r, or the scalar in every lane. */
  const at = (row: WarpRow, r: number) => (row.n === 1 ? row.regs[0]! : row.regs[r]!);
  /** The op's result row, register r by fn. */
  const map = (op: Op, fn: (r: number) => Expr): WarpRow => {
    const { n, per } = rowShape(rowWidth(op.results[0]!));
    const regs = Array.from({ length: n === 1 ? 1 : per }, (_, r) => kb.let("v", g.fit(fn(r), op.results[0]!.type.dtype)));
    return { n, per, regs };
  };

  kb.if(lt(t, g.size(tokensDim)), () =>
    walkRouter<WarpRow>(g, ops, tokensDim, "router (warp form)", {
      external(v) {
        // A per-token row [T, n] (or [T, 1]), or a vector shared by all tokens [n] (the bias).
        const { n, per } = rowShape(rowWidth(v));
        const perToken = v.type.rank === 2;
        const regs = Array.from({ length: n === 1 ? 1 : per }, (_, r) => {
          // Lanes past a short row read its last element (and never store it).
          const e = n === 1 ? i(0) : n < 32 ? K.min(elemOf({ per }, r), i(n - 1)) : elemOf({ per }, r);
          return kb.let("x", K.toF(kb.load(g.buf(v), perToken ? add(mul(t, i(n)), e) : e)));
        });
        return { n, per, regs };
      },
      scalar: (x) => ({ n: 1, per: 1, regs: [K.f(x)] }),
      cast: (op, a) => map(op, (r) => at(a, r)),
      elementwise: (op, args) => map(op, (r) => opFormula(op, args.map((a) => at(a, r)))),
      reduceSum(op, a) {
        if (rowWidth(op.results[0]!) !== 1) throw new LingcError("router (warp form): reduce_sum over a token's row only");
        // Lanes past a short row hold copies of its last element: they add nothing.
        const own = a.n === 1 ? a.regs[0]! : a.n < 32 ? sel(lt(lane, i(a.n)), a.regs[0]!, K.f(0)) : a.regs.reduce((x, y) => add(x, y));
        return { n: 1, per: 1, regs: [kb.let("sum", a.n === 1 ? own : kb.warpSum(own))] };
      },
      takeAlong(op, a, idx) {
        if (idx.per !== 1) throw new LingcError("router (warp form): take_along of more than 32 indices");
        return map(op, () => {
          const id = kb.let("id", K.min(K.max(K.toI(idx.regs[0]!), i(0)), i(a.n - 1)));
          if (a.n === 1) return a.regs[0]!;
          const src = a.per === 1 ? id : kb.let("src", div(id, i(a.per)));
          // Every lane shuffles every register (a shuffle runs in all lanes), then keeps its own.
          const got = a.regs.map((reg) => kb.let("got", K.shflIdx(reg, src)));
          return a.per === 1 ? got[0]! : got.reduce((acc, x, r) => sel(eq(mod(id, i(a.per)), i(r)), x, acc));
        });
      },
      groupTopk: (op, scores) => groupTopkWarp(g, op, scores, lane),
      store(v, row, value) {
        if (row.n === 1) kb.if(eq(lane, i(0)), () => kb.store(g.buf(v), t, value(row.regs[0]!)));
        else
          row.regs.forEach((reg, r) => {
            const e = elemOf(row, r);
            const store = () => kb.store(g.buf(v), add(mul(t, i(row.n)), e), value(reg));
            if (row.n < 32) kb.if(lt(lane, i(row.n)), store);
            else store();
          });
      },
    }),
  );
  return g.finish({ dim: g.entryDim(tokensDim), per: ROUTER_WARPS });
}

/** Group-limited top-k of a token's E scores in its warp: the chosen indices (as floats), one a lane. */
function groupTopkWarp(g: Gen, op: Op, s: WarpRow, lane: Expr): WarpRow {
  const kb = g.kb;
  const { i, add, mul, eq, lt, gt, and, or, sel, max, min } = K;
  const a = attrsOf(OPS.group_topk, op);
  const E = s.n;
  const per = s.per;
  const lanes = E / a.groups / per;
  const ninf = K.f(-Infinity);
  /** (v2, i2) beats (v1, i1): greater, or equal at a lower index. */
  const beats = (v2: Expr, i2: Expr, v1: Expr, i1: Expr) => or(gt(v2, v1), and(eq(v2, v1), lt(i2, i1)));
  let masked = s.regs;
  if (a.groups > 1) {
    // The lane's best group_score_topk values, largest first (an insertion network), then merged with
    // the group's other lanes (butterfly), so every lane of a group holds the group's best.
    const insert = (best: Expr[], v: Expr) => {
      let carry = v;
      return best.map((b) => {
        const hi = kb.let("hi", max(b, carry));
        carry = kb.let("lo", min(b, carry));
        return hi;
      });
    };
    let best = Array.from({ length: a.group_score_topk }, () => ninf);
    for (const v of s.regs) best = insert(best, v);
    for (let m = 1; m < lanes; m *= 2) {
      const theirs = best.map((b) => kb.let("gb", { k: "shfl", t: "f32", a: b, mask: m }));
      for (const v of theirs) best = insert(best, v);
    }
    // Summed largest first, as the workgroup router picks them.
    const score = kb.let("gscore", best.reduce((acc, b) => add(acc, b), K.f(0) as Expr));
    // The group's rank among the others (group gi ^ j sits j x lanes lanes away); the best topk_groups are kept.
    const gi = kb.let("group", K.div(lane, i(lanes)));
    let rank: Expr = i(0);
    for (let j = 1; j < a.groups; j++) {
      const theirs = kb.let("go", { k: "shfl", t: "f32", a: score, mask: j * lanes });
      rank = add(rank, sel(beats(theirs, K.xor(gi, i(j)), score, gi), i(1), i(0)));
    }
    const keep = kb.let("keep", lt(kb.let("grank", rank), i(a.topk_groups)));
    masked = s.regs.map((v) => kb.let("m", sel(keep, v, ninf)));
  }
  const cur = masked.map((v) => kb.var("m", v));
  // The expert of each of the lane's registers (lane l holds experts l per .. l per + per - 1).
  const experts = cur.map((_, r) => kb.let("e", add(mul(lane, i(per)), i(r))));
  const idx = kb.var("idx", i(0));
  // k rounds of an arg-max over the warp, ties to the lower expert (torch.topk's order): the lane's
  // best in register order (a later register only when strictly greater), the warp's largest in one
  // reduction, the lowest lane holding it by a ballot (lower lanes hold lower experts), its expert by
  // one shuffle. (A butterfly of value and index shuffles took five dependent steps a round.)
  for (let j = 0; j < a.k; j++) {
    let bv: Expr = cur[0]!.ref;
    let bi: Expr = experts[0]!;
    cur.slice(1).forEach((c, r) => {
      const b = kb.let("b", gt(c.ref, bv));
      bv = kb.let("bv", sel(b, c.ref, bv));
      bi = kb.let("bi", sel(b, experts[r + 1]!, bi));
    });
    const top = kb.let("top", K.warpMax(bv));
    const owner = kb.let("owner", K.firstLane(eq(bv, top)));
    const won = kb.let("won", K.shflIdx(bi, owner));
    // Lane j keeps the winner; its owner masks it out.
    idx.set(sel(eq(lane, i(j)), won, idx.ref));
    cur.forEach((c, r) => c.set(sel(eq(experts[r]!, won), ninf, c.ref)));
  }
  return { n: a.k, per: 1, regs: [kb.let("topk", K.toF(idx.ref))] };
}
