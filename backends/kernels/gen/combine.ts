/**
 * The MoE combine with its elementwise epilogue (the shared expert's output and the residual added)
 * on CUDA, 8 elements of a token's row a thread: each expert row's 8 values, each other operand's
 * and each result's are one 16-byte access (load16 / store16) instead of 8 two-byte ones. The sums
 * are the pointwise template's (for each of the k experts in order, acc + weight x value in f32,
 * rounded to the result dtype once), so the results are bitwise the same; only the accesses are
 * wider. Covers a group whose first op is the moe_combine and whose others are reshapes and scalar
 * ops on bf16 values of the combine's element count (no broadcasts), its rows whole 8-element pieces.
 * The same without the combine (pointwise16): scalar ops on bf16 values of one shape, 8 elements a
 * thread (a plain pointwise run reads each element by itself: the dense layer's residual add at 1x8192
 * ran at 0.6 TB/s on the H200).
 */
import { product, type Dim } from "../../../ir/dim";
import type { Op, Value } from "../../../ir/module";
import { getOp } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr } from "../kir";
import { opFormula } from "./algebra";
import { sameShape } from "./pointwise";
import type { Gen, GeneratedKernel, GenLimits } from "./context";

export const COMBINE_THREADS = 64;
/** Elements a thread: 16 bytes of bf16. */
const V = 8;


export function coversCombine(ops: readonly Op[], limits?: GenLimits): boolean {
  if (limits?.warpSize !== 32 || ops[0]?.opName !== "moe_combine" || ops.slice(1).some((o) => o.opName === "moe_combine")) return false;
  const comb = ops[0];
  const [y, , w] = comb.operands as [Value, Value, Value];
  const v = comb.results[0]!;
  const H = v.type.shape[1]?.value;
  if (H === undefined || H % V !== 0 || y.type.dtype !== "bf16" || y.type.quant || w.type.dtype !== "f32") return false;
  return elementwiseOn(ops, v.type.numel());
}

/**
 * A group of scalar ops (and reshapes) on bf16 values of one shape, no moe_combine: the same
 * kernel without the combine (pointwise16), where its elements are whole 8-element pieces.
 */
export function coversPointwise16(ops: readonly Op[], limits?: GenLimits): boolean {
  if (limits?.warpSize !== 32 || ops.length === 0 || ops.some((o) => o.opName === "moe_combine")) return false;
  const r = ops[0]!.results[0];
  if (!r) return false;
  // Whole pieces whatever the symbols: the static extents' product a multiple of 8.
  const fixed = r.type.shape.reduce((p, d) => p * (d.value ?? 1), 1);
  return fixed % V === 0 && ops.some((o) => o.opName !== "reshape") && elementwiseOn(ops, r.type.numel());
}

/** Every op one bf16 result of `numel` elements, a reshape or a scalar op whose outside operands are bf16 of its result's shape. */
function elementwiseOn(ops: readonly Op[], numel: Dim): boolean {
  const inside = new Set<Value>(ops.flatMap((o) => o.results));
  return ops.every((o) => {
    const r = o.results[0]!;
    if (o.results.length !== 1 || r.type.dtype !== "bf16" || !r.type.numel().equals(numel)) return false;
    if (o.opName === "moe_combine" || o.opName === "reshape") return true;
    return getOp(o.opName)?.scalar !== undefined && o.operands.every((x) => (inside.has(x) ? true : x.type.dtype === "bf16" && !x.type.quant && sameShape(x.type.shape, r.type.shape)));
  });
}

export function combineKernel(g: Gen, ops: Op[]): GeneratedKernel {
  const kb = g.kb;
  const { i, add, mul, div, mod, lt } = K;
  const comb = ops[0]!.opName === "moe_combine" ? ops[0]! : undefined;
  const first = ops[0]!.results[0]!;
  const n = g.size(first.type.numel());
  const q = kb.let("q", kb.gid);
  kb.if(lt(mul(q, i(V)), n), () => {
    const flat = kb.let("flat", mul(q, i(V)));
    // Each value's 8 elements: computed in the group, or 16 bytes of its buffer (read once).
    const vals = new Map<Value, Expr[]>();
    if (comb) {
      const [y, rowOf, weights] = comb.operands as [Value, Value, Value];
      const H = first.type.shape[1]!.value!;
      const Kd = g.dims(weights)[1]!;
      const t = kb.let("t", div(flat, i(H)));
      const h = kb.let("h", mod(flat, i(H)));
      const acc = kb.array("acc", "f32", V);
      for (let e = 0; e < V; e++) kb.store(acc, i(e), K.f(0));
      kb.for("j", i(0), Kd, (j) => {
        const pair = kb.let("pair", add(mul(t, Kd), j));
        const row = kb.let("row", kb.load(g.buf(rowOf), pair));
        const w = kb.let("w", kb.load(g.buf(weights), pair));
        const ys = g.load8(y, add(mul(row, i(H)), h));
        for (let e = 0; e < V; e++) kb.store(acc, i(e), add(kb.load(acc, i(e), "f32"), mul(w, ys[e]!)));
      });
      vals.set(first, Array.from({ length: V }, (_, e) => kb.let("v", g.fit(kb.load(acc, i(e), "f32"), first.type.dtype))));
    }
    const of = (x: Value): Expr[] => {
      let got = vals.get(x);
      if (!got) {
        got = g.load8(x, flat);
        vals.set(x, got);
      }
      return got;
    };
    for (const op of comb ? ops.slice(1) : ops) {
      const r = op.results[0]!;
      if (op.opName === "reshape") vals.set(r, of(op.operands[0]!));
      else vals.set(r, Array.from({ length: V }, (_, e) => kb.let("v", g.fit(opFormula(op, op.operands.map((x) => of(x)[e]!)), r.type.dtype))));
    }
    for (const o of ops.flatMap((x) => x.results).filter((r) => g.isOutput(r))) g.store8(o, flat, vals.get(o)!);
  });
  return g.finish({ dim: product(first.type.shape.map((d) => g.entryDim(d))), per: kb.kernel.wg * V });
}
