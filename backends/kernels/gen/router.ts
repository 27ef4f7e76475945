/**
 * The router kernel: one workgroup per token, one thread per expert. The token's values live in
 * workgroup memory, one element per thread: fp32 logits against the gate weight (when the group has
 * the linear), sigmoid, the selection-only bias, then group-limited top-k (group score = sum of the
 * group's best group_score_topk, best groups kept, best k experts among them, ties to the lower
 * index as in torch.topk: k rounds of a workgroup arg-max by warp shuffles where the target has
 * them, else each expert placed by its rank), then the gathered weights, normalized and
 * scaled. It serves the fused router group and a lone group_topk alike: it runs whichever of those
 * ops the step holds, with a barrier after each. Elementwise ops (sigmoid, the bias add, the
 * normalization) run their op-table formula per element; linear, reduce_sum, take_along, constant
 * and group_topk are lowered here for a row held in workgroup memory.
 */
import type { DType } from "../../../ir/dtype";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { attrsOf, OPS } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr } from "../kir";
import { opFormula } from "./algebra";
import type { Gen, GeneratedKernel } from "./context";
import { walkRouter } from "./router-walk";

/** A per-token vector in workgroup memory (n elements), or a scalar expression. */
interface RowValue {
  sh?: string;
  n: number;
  scalar?: Expr;
}

/** Threads per workgroup for a router over E experts: a power of two, one thread per expert when possible. */
export function routerWorkgroup(E: number, maxThreads: number): number {
  let w = 32;
  while (w < E && w * 2 <= maxThreads) w *= 2;
  return w;
}

export function routerKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const kb = g.kb;
  const wg = kb.kernel.wg;
  const gt = ops.find((o) => o.opName === "group_topk");
  if (!gt) throw new LingcError("router kernel without group_topk");
  const tokensDim = gt.results[0]!.type.shape[0]!;
  const t = kb.let("t", kb.wg);
  const lid = kb.lid;
  const width = (v: Value) => v.type.shape[v.type.rank - 1]?.value ?? 1;
  /** for (e = lid; e < n; e += wg) */
  const each = (n: number, body: (e: Expr) => void) => kb.for("e", lid, K.i(n), body, K.i(wg));
  const shared = (base: string, n: number, t2: K.KType = "f32") => kb.shared(kb.fresh(base), t2, Math.max(n, 1));
  const elem = (r: RowValue, e: Expr): Expr => r.scalar ?? kb.load(r.sh!, r.n === 1 ? K.i(0) : e, "f32");
  /** The op's result row, element e by fn, then a barrier. */
  const map = (op: Op, fn: (e: Expr) => Expr): RowValue => {
    const n = width(op.results[0]!);
    const sh = shared("v", n);
    each(n, (e) => kb.store(sh, e, g.fit(fn(e), op.results[0]!.type.dtype)));
    kb.barrier();
    return { sh, n };
  };

  kb.if(K.lt(t, g.size(tokensDim)), () =>
    walkRouter<RowValue>(g, ops, tokensDim, "router kernel", {
      external(v) {
        const n = width(v);
        const perToken = v.type.rank === 2;
        const sh = shared("ext", n);
        each(n, (e) => kb.store(sh, e, K.toF(kb.load(g.buf(v), perToken ? K.add(K.mul(t, K.i(n)), e) : e))));
        kb.barrier();
        return { sh, n };
      },
      scalar: (x) => ({ n: 1, scalar: K.f(x) }),
      cast: (op, a) => map(op, (e) => elem(a, e)),
      elementwise: (op, args) => map(op, (e) => opFormula(op, args.map((a) => elem(a, e)))),
      reduceSum(_op, a) {
        const sh = shared("sum", 1);
        kb.if(K.eq(lid, K.i(0)), () => {
          const acc = kb.var("sum", K.f(0));
          kb.for("e", K.i(0), K.i(a.n), (e) => acc.set(K.add(acc.ref, elem(a, e))));
          kb.store(sh, K.i(0), acc.ref);
        });
        kb.barrier();
        return { sh, n: 1 };
      },
      takeAlong: (op, a, idx) => map(op, (j) => kb.load(a.sh!, K.toI(elem(idx, j)), "f32")),
      groupTopk: (op, scores) => groupTopk(g, op, scores, each, shared),
      linear: (op, x, w) => ({ sh: routerLinear(g, x, w, t, shared("v", width(op.results[0]!)), op.results[0]!.type.dtype), n: width(op.results[0]!) }),
      store: (v, r, value) => each(r.n, (e) => kb.store(g.buf(v), K.add(K.mul(t, K.i(r.n)), e), value(elem(r, e)))),
    }),
  );
  return g.finish({ dim: g.entryDim(tokensDim), per: 1 });
}

/** Threads that share one expert's dot product (reading neighbouring columns), and the loads a thread keeps in flight. */
const LINEAR_LANES = 8;
const LINEAR_LOADS = 64;

/**
 * The token's logits against the gate weight [E, H] into shared array `out` (a barrier follows).
 * A thread per expert summing its H products in a loop is a chain of H loads, each waiting on the
 * last (1.6 ms per decode step's layer on the H200 through Dawn). Instead LINEAR_LANES neighbouring
 * threads share an expert (columns lane, lane + LINEAR_LANES, ...), each thread takes M experts
 * (e = group + G m) and every loop step loads LINEAR_LOADS weights that do not depend on each other
 * (unrolled here: WGSL compilers do not unroll); the lanes' partial sums add up through workgroup
 * memory. (On a CPU rasterizer this is as good: the same loads, fewer loop trips.)
 */
function routerLinear(g: Gen, x: Value, w: Value, t: Expr, out: string, dt: DType): string {
  const kb = g.kb;
  const wg = kb.kernel.wg;
  const [E, H] = [w.type.shape[0]!.value!, w.type.shape[1]!.value!];
  const L = Math.min(LINEAR_LANES, wg);
  const G = wg / L;
  const M = Math.ceil(E / G);
  const U = Math.max(1, Math.floor(LINEAR_LOADS / M));
  const steps = Math.ceil(H / L);
  const lane = kb.let("lane", K.mod(kb.lid, K.i(L)));
  const grp = kb.let("grp", K.div(kb.lid, K.i(L)));
  // Rows past E (when G does not divide it) are read at the last row and never written.
  const rows = Array.from({ length: M }, (_, m) => kb.let("wrow", K.mul(K.min(K.add(grp, K.i(G * m)), K.i(E - 1)), K.i(H))));
  const accs = Array.from({ length: M }, () => kb.var("acc", K.f(0)));
  const xBase = kb.let("xbase", K.mul(t, K.i(H)));
  kb.for("j0", K.i(0), K.i(steps), (j0) => {
    for (let u = 0; u < U; u++) {
      const c = kb.let("c", K.add(lane, K.mul(K.add(j0, K.i(u)), K.i(L))));
      // Every step reads columns below H when L x U divides H; else the tail is masked.
      const exact = H % (L * U) === 0;
      const cc = exact ? c : kb.let("cc", K.min(c, K.i(H - 1)));
      const xv = kb.let("xv", exact ? kb.load(g.buf(x), K.add(xBase, cc)) : K.sel(K.lt(c, K.i(H)), kb.load(g.buf(x), K.add(xBase, cc)), K.f(0)));
      const ws = rows.map((r) => kb.let("wv", kb.load(g.buf(w), K.add(r, cc))));
      accs.forEach((a, m) => a.set(K.add(a.ref, K.mul(xv, ws[m]!))));
    }
  }, K.i(U));
  // Each expert's L partial sums, one slot m at a time (workgroup memory of one value per thread):
  // expert grp + G m is the sum over threads grp L .. grp L + L - 1.
  const part = kb.shared(kb.fresh("lin_part"), "f32", wg);
  accs.forEach((a, m) => {
    kb.store(part, kb.lid, a.ref);
    kb.barrier();
    const e = K.add(kb.lid, K.i(G * m));
    kb.if(K.and(K.lt(kb.lid, K.i(G)), K.lt(e, K.i(E))), () => {
      let sum: Expr = kb.load(part, K.mul(kb.lid, K.i(L)));
      for (let l = 1; l < L; l++) sum = K.add(sum, kb.load(part, K.add(K.mul(kb.lid, K.i(L)), K.i(l))));
      kb.store(out, e, g.fit(sum, dt));
    });
    kb.barrier();
  });
  return out;
}

/** Group-limited top-k over a token's scores in workgroup memory; the chosen indices (as floats) go to a new shared array. */
function groupTopk(
  g: Gen,
  op: Op,
  s: RowValue,
  each: (n: number, body: (e: Expr) => void) => void,
  shared: (base: string, n: number, t?: K.KType) => string,
): RowValue {
  const kb = g.kb;
  const wg = kb.kernel.wg;
  const lid = kb.lid;
  const a = attrsOf(OPS.group_topk, op);
  const E = s.n;
  const G = a.groups;
  const per = E / G;
  const k = a.k;
  const masked = shared("masked", E);
  if (G > 1) {
    // Each group's score: the sum of its best group_score_topk values (one thread per group).
    const gscore = shared("gscore", G);
    each(G, (gr) => {
      const taken = kb.array("taken", "i32", per);
      kb.for("q", K.i(0), K.i(per), (q) => kb.store(taken, q, K.i(0)));
      const sum = kb.var("gsum", K.f(0));
      for (let j = 0; j < a.group_score_topk; j++) {
        const bi = kb.var("bi", K.i(-1));
        const bv = kb.var("bv", K.f(-Infinity));
        kb.for("q", K.i(0), K.i(per), (q) => {
          const val = kb.load(s.sh!, K.add(K.mul(gr, K.i(per)), q), "f32");
          kb.if(K.and(K.eq(kb.load(taken, q, "i32"), K.i(0)), K.or(K.eq(bi.ref, K.i(-1)), K.gt(val, bv.ref))), () => {
            bi.set(q);
            bv.set(val);
          });
        });
        kb.store(taken, bi.ref, K.i(1));
        sum.set(K.add(sum.ref, bv.ref));
      }
      kb.store(gscore, gr, sum.ref);
    });
    kb.barrier();
    // The best topk_groups groups (one thread; there are few groups).
    const keep = shared("keep", G, "i32");
    kb.if(K.eq(lid, K.i(0)), () => {
      kb.for("gr", K.i(0), K.i(G), (gr) => kb.store(keep, gr, K.i(0)));
      for (let j = 0; j < a.topk_groups; j++) {
        const bi = kb.var("bi", K.i(-1));
        const bv = kb.var("bv", K.f(-Infinity));
        kb.for("gr", K.i(0), K.i(G), (gr) => {
          const val = kb.load(gscore, gr, "f32");
          kb.if(K.and(K.eq(kb.load(keep, gr, "i32"), K.i(0)), K.or(K.eq(bi.ref, K.i(-1)), K.gt(val, bv.ref))), () => {
            bi.set(gr);
            bv.set(val);
          });
        });
        kb.store(keep, bi.ref, K.i(1));
      }
    });
    kb.barrier();
    each(E, (e) => kb.store(masked, e, K.sel(K.eq(kb.load(keep, K.div(e, K.i(per)), "i32"), K.i(1)), kb.load(s.sh!, e, "f32"), K.f(-Infinity))));
  } else {
    each(E, (e) => kb.store(masked, e, kb.load(s.sh!, e, "f32")));
  }
  kb.barrier();
  const idx = shared("topk", k);
  /** (v2, i2) beats (v1, i1): greater, or equal at a lower index. */
  const beats = (v2: Expr, i2: Expr, v1: Expr, i1: Expr) => K.or(K.gt(v2, v1), K.and(K.eq(v2, v1), K.lt(i2, i1)));
  const warps = g.limits.warpSize === 32 && wg % 32 === 0 ? wg / 32 : 0;
  if (!warps) {
    // Without warp shuffles: each expert's rank, the number of experts that beat it (a pass over the
    // row in workgroup memory, no barrier), puts the best k at their places. k rounds of a
    // workgroup arg-max cost k x log2(threads) barriers, most of a decode step's router on the
    // H200 through Dawn.
    each(E, (e) => {
      const v = kb.let("v", kb.load(masked, e, "f32"));
      const rank = kb.var("rank", K.i(0));
      kb.for("o", K.i(0), K.i(E), (o) => rank.set(K.add(rank.ref, K.sel(beats(kb.load(masked, o, "f32"), o, v, e), K.i(1), K.i(0)))));
      kb.if(K.lt(rank.ref, K.i(k)), () => kb.store(idx, rank.ref, K.toF(e)));
    });
    kb.barrier();
    return { sh: idx, n: k };
  }
  // k rounds of a workgroup arg-max (ties to the lower index); each pick is then masked out.
  const rv = shared("redv", warps);
  const ri = shared("redi", warps, "i32");
  for (let j = 0; j < k; j++) {
    const bv = kb.var("bv", K.f(-Infinity));
    const bi = kb.var("bi", K.i(E));
    each(E, (e) => {
      const val = kb.load(masked, e, "f32");
      kb.if(beats(val, e, bv.ref, bi.ref), () => {
        bv.set(val);
        bi.set(e);
      });
    });
    // Within each warp by shuffles, then every thread reads the warps' winners: two barriers a
    // round instead of one per halving (a decode step's router is a chain of these rounds).
    for (let m = 16; m >= 1; m /= 2) {
      const v2 = kb.let("v2", { k: "shfl", t: "f32", a: bv.ref, mask: m });
      const i2 = kb.let("i2", { k: "shfl", t: "i32", a: bi.ref, mask: m });
      kb.if(beats(v2, i2, bv.ref, bi.ref), () => {
        bv.set(v2);
        bi.set(i2);
      });
    }
    kb.if(K.eq(K.mod(lid, K.i(32)), K.i(0)), () => {
      kb.store(rv, K.div(lid, K.i(32)), bv.ref);
      kb.store(ri, K.div(lid, K.i(32)), bi.ref);
    });
    kb.barrier();
    kb.for("w", K.i(0), K.i(warps), (w) => {
      const v2 = kb.let("v2", kb.load(rv, w, "f32"));
      const i2 = kb.let("i2", kb.load(ri, w, "i32"));
      kb.if(beats(v2, i2, bv.ref, bi.ref), () => {
        bv.set(v2);
        bi.set(i2);
      });
    });
    kb.if(K.eq(lid, K.i(0)), () => {
      kb.store(idx, K.i(j), K.toF(bi.ref));
      kb.store(masked, bi.ref, K.f(-Infinity));
    });
    kb.barrier();
  }
  return { sh: idx, n: k };
}
