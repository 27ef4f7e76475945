/**
 * The router kernel, one thread per token, holding the token's expert scores in registers: fp32
 * logits against the gate weight, sigmoid, the selection-only bias, group-limited top-k (group score
 * = sum of the best group_score_topk, best groups kept, best k experts among them; ties go to the
 * lower index as in torch.topk), then the gathered weights, normalized and scaled. It serves the fused
 * router group and a lone group_topk alike: it runs whichever of those ops the step holds.
 */
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel } from "./context";

/** A per-token vector: a private array of n values, or a scalar expression. */
interface RowValue {
  arr?: string;
  n: number;
  scalar?: Expr;
}

export function routerKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const kb = g.kb;
  const gt = ops.find((o) => o.opName === "group_topk");
  if (!gt) throw new LingcError("router kernel without group_topk");
  const tokensDim = gt.results[0]!.type.shape[0]!;
  const t = kb.let("t", kb.gid);
  const vals = new Map<Value, RowValue>();
  const inGroup = new Set(ops.flatMap((o) => o.results));
  // Casts of inputs read the input itself: on the GPU every float is held as f32 already.
  const aliases = new Map<Value, Value>();
  const ext = (v: Value) => aliases.get(v) ?? v;

  const get = (w: Value): RowValue => {
    const v = ext(w);
    const hit = vals.get(v);
    if (hit) return hit;
    if (inGroup.has(v)) throw new LingcError(`router kernel: ${v.name ?? "a value"} is used before it is computed`);
    // External: a per-token row [T, n], a vector shared by all tokens [n] (bias), or [T, 1].
    const n = v.type.shape[v.type.rank - 1]!.value!;
    const perToken = v.type.rank === 2;
    const arr = kb.array("ext", "f32", n);
    kb.for("e", K.i(0), K.i(n), (e) => kb.store(arr, e, K.toF(kb.load(g.buf(v), perToken ? K.add(K.mul(t, K.i(n)), e) : e))));
    const r = { arr, n };
    vals.set(v, r);
    return r;
  };
  const elem = (r: RowValue, e: Expr): Expr => (r.scalar ?? kb.load(r.arr!, r.n === 1 ? K.i(0) : e, "f32"));
  const map = (op: Op, fn: (e: Expr) => Expr, n: number) => {
    const arr = kb.array("v", "f32", n);
    kb.for("e", K.i(0), K.i(n), (e) => kb.store(arr, e, g.fit(fn(e), op.results[0]!.type.dtype)));
    vals.set(op.results[0]!, { arr, n });
  };

  kb.if(K.lt(t, g.size(tokensDim)), () => {
    for (const op of ops) {
      const res = op.results[0]!;
      const n = res.type.shape[res.type.rank - 1]?.value ?? 1;
      switch (op.opName) {
        case "cast": {
          const src = op.operands[0]!;
          if (!inGroup.has(src)) aliases.set(res, ext(src));
          else map(op, (e) => elem(get(src), e), n);
          break;
        }
        case "linear": {
          const x = ext(op.operands[0]!);
          const w = ext(op.operands[1]!);
          const H = w.type.shape[1]!.value!;
          const arr = kb.array("logits", "f32", n);
          kb.for("e", K.i(0), K.i(n), (e) => {
            const acc = kb.var("acc", K.f(0));
            kb.for("c", K.i(0), K.i(H), (c) => acc.set(K.add(acc.ref, K.mul(kb.load(g.buf(x), K.add(K.mul(t, K.i(H)), c)), kb.load(g.buf(w), K.add(K.mul(e, K.i(H)), c))))));
            kb.store(arr, e, acc.ref);
          });
          vals.set(res, { arr, n });
          break;
        }
        case "sigmoid":
          map(op, (e) => K.div(K.f(1), K.add(K.f(1), K.exp(K.neg(elem(get(op.operands[0]!), e))))), n);
          break;
        case "add":
        case "mul":
        case "div": {
          const [a, b] = op.operands.map(get) as [RowValue, RowValue];
          const fn = op.opName === "add" ? K.add : op.opName === "mul" ? K.mul : K.div;
          map(op, (e) => fn(elem(a, e), elem(b, e)), n);
          break;
        }
        case "constant": {
          const values = (op.attrs as Record<string, number[]>)["values"]!;
          if (values.length !== 1) throw new LingcError("router kernel: only scalar constants");
          vals.set(res, { n: 1, scalar: K.f(values[0]!) });
          break;
        }
        case "reduce_sum": {
          const a = get(op.operands[0]!);
          const acc = kb.var("sum", K.f(0));
          kb.for("e", K.i(0), K.i(a.n), (e) => acc.set(K.add(acc.ref, elem(a, e))));
          vals.set(res, { n: 1, scalar: acc.ref });
          break;
        }
        case "take_along": {
          const a = get(op.operands[0]!);
          const idx = get(op.operands[1]!);
          map(op, (j) => kb.load(a.arr!, K.toI(elem(idx, j)), "f32"), n);
          break;
        }
        case "group_topk":
          groupTopk(g, op, get(op.operands[0]!), vals);
          break;
        default:
          throw new LingcError(`router kernel: unexpected op ${op.opName}`);
      }
    }
    for (const [v, r] of vals) {
      if (!g.isOutput(v)) continue;
      const isInt = v.type.dtype !== "f32" && v.type.dtype !== "bf16" && v.type.dtype !== "f16";
      kb.for("e", K.i(0), K.i(r.n), (e) => kb.store(g.buf(v), K.add(K.mul(t, K.i(r.n)), e), isInt ? K.toI(elem(r, e)) : elem(r, e)));
    }
  });
  return g.finish({ dim: g.entryDim(tokensDim), per: kb.kernel.wg });
}

/** Repeated arg-max with exclusion: the `count` best of arr[lo..hi) in order, ties to the lower index. */
function best(g: Gen, arr: string, lo: Expr, hi: Expr, count: number, taken: string, out: (j: number, idx: Expr, val: Expr) => void): void {
  const kb = g.kb;
  for (let j = 0; j < count; j++) {
    const bi = kb.var("bi", K.i(-1));
    const bv = kb.var("bv", K.f(-Infinity));
    kb.for("e", lo, hi, (e) => {
      const val = kb.load(arr, e, "f32");
      kb.if(K.and(K.eq(kb.load(taken, e, "i32"), K.i(0)), K.or(K.eq(bi.ref, K.i(-1)), K.gt(val, bv.ref))), () => {
        bi.set(e);
        bv.set(val);
      });
    });
    kb.if(K.ge(bi.ref, K.i(0)), () => kb.store(taken, bi.ref, K.i(1)));
    out(j, bi.ref, bv.ref);
  }
}

function groupTopk(g: Gen, op: Op, s: RowValue, vals: Map<Value, RowValue>): void {
  const kb = g.kb;
  const a = op.attrs as Record<string, number>;
  const E = s.n;
  const G = a["groups"]!;
  const per = E / G;
  const taken = kb.array("taken", "i32", E);
  kb.for("e", K.i(0), K.i(E), (e) => kb.store(taken, e, K.i(0)));
  const masked = kb.array("masked", "f32", E);
  kb.for("e", K.i(0), K.i(E), (e) => kb.store(masked, e, kb.load(s.arr!, e, "f32")));
  if (G > 1) {
    const gscore = kb.array("gscore", "f32", G);
    kb.for("gr", K.i(0), K.i(G), (gr) => {
      const sum = kb.var("gsum", K.f(0));
      const lo = kb.let("lo", K.mul(gr, K.i(per)));
      best(g, s.arr!, lo, K.add(lo, K.i(per)), a["group_score_topk"]!, taken, (_j, _idx, val) => sum.set(K.add(sum.ref, val)));
      kb.store(gscore, gr, sum.ref);
    });
    kb.for("e", K.i(0), K.i(E), (e) => kb.store(taken, e, K.i(0)));
    const gtaken = kb.array("gtaken", "i32", G);
    kb.for("gr", K.i(0), K.i(G), (gr) => kb.store(gtaken, gr, K.i(0)));
    best(g, gscore, K.i(0), K.i(G), a["topk_groups"]!, gtaken, () => undefined);
    kb.for("e", K.i(0), K.i(E), (e) => kb.if(K.eq(kb.load(gtaken, K.div(e, K.i(per)), "i32"), K.i(0)), () => kb.store(masked, e, K.f(-Infinity))));
  }
  const k = a["k"]!;
  const idx = kb.array("topk", "f32", k);
  best(g, masked, K.i(0), K.i(E), k, taken, (j, bi) => kb.store(idx, K.i(j), K.toF(bi)));
  vals.set(op.results[0]!, { arr: idx, n: k });
}
