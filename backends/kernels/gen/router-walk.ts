/**
 * The router step's ops walked once for both of its forms (router.ts: a token's rows in workgroup
 * memory; router-warp.ts: in a warp's registers): each form says how it holds a row and computes
 * each kind of op on it, and the walk keeps what is common: the ops in order, casts of the step's
 * inputs read as the inputs themselves (every float is held as f32 on the GPU), scalar constants,
 * elementwise ops by their op-table formulas, the check that a value is computed before it is used,
 * and that every result the step writes is one row per token.
 */
import type { Dim } from "../../../ir/dim";
import { LingcError } from "../../../ir/errors";
import type { Op, Value } from "../../../ir/module";
import { attrsOf, getOp, OPS } from "../../../ir/ops";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen } from "./context";

/** How a router form holds a token's rows (R) and computes the step's ops on them. */
export interface RouterRows<R> {
  /** A value from outside the step: a per-token row [T, n], a vector all tokens share [n] (the bias), or [T, 1]. */
  external(v: Value): R;
  /** A scalar constant. */
  scalar(x: number): R;
  /** A cast of a value computed in the step (to the result's dtype). */
  cast(op: Op, a: R): R;
  /** An elementwise op (one with an op-table scalar formula) of values held as R. */
  elementwise(op: Op, args: R[]): R;
  reduceSum(op: Op, a: R): R;
  takeAlong(op: Op, a: R, idx: R): R;
  groupTopk(op: Op, scores: R): R;
  /** The gate linear of the token's input row (only forms that compute it). */
  linear?(op: Op, x: Value, w: Value): R;
  /** Writes result v, a row per token, as `value` (an int result converted). */
  store(v: Value, r: R, value: (x: Expr) => Expr): void;
}

/** Computes a router step's ops with `rows` (in the form's kernel, inside its token guard) and stores its results. */
export function walkRouter<R>(g: Gen, ops: readonly Op[], tokensDim: Dim, form: string, rows: RouterRows<R>): void {
  const vals = new Map<Value, R>();
  const inGroup = new Set(ops.flatMap((o) => o.results));
  const aliases = new Map<Value, Value>();
  const ext = (v: Value) => aliases.get(v) ?? v;
  const get = (w: Value): R => {
    const v = ext(w);
    const hit = vals.get(v);
    if (hit !== undefined) return hit;
    if (inGroup.has(v)) throw new LingcError(`${form}: ${v.name ?? "a value"} is used before it is computed`);
    const r = rows.external(v);
    vals.set(v, r);
    return r;
  };
  for (const op of ops) {
    const res = op.results[0]!;
    switch (op.opName) {
      case "cast": {
        const src = op.operands[0]!;
        if (!inGroup.has(src)) aliases.set(res, ext(src));
        else vals.set(res, rows.cast(op, get(src)));
        break;
      }
      case "linear":
        if (!rows.linear) throw new LingcError(`${form}: the gate linear runs before this kernel`);
        vals.set(res, rows.linear(op, ext(op.operands[0]!), ext(op.operands[1]!)));
        break;
      case "constant": {
        const values = attrsOf(OPS.constant, op).values;
        if (values.length !== 1) throw new LingcError(`${form}: only scalar constants`);
        vals.set(res, rows.scalar(values[0]!));
        break;
      }
      case "reduce_sum":
        vals.set(res, rows.reduceSum(op, get(op.operands[0]!)));
        break;
      case "take_along":
        vals.set(res, rows.takeAlong(op, get(op.operands[0]!), get(op.operands[1]!)));
        break;
      case "group_topk":
        vals.set(res, rows.groupTopk(op, get(op.operands[0]!)));
        break;
      default:
        // Any elementwise op (sigmoid, the bias add, the normalization): its scalar formula per element.
        if (!getOp(op.opName)?.scalar) throw new LingcError(`${form}: unexpected op ${op.opName}`);
        vals.set(res, rows.elementwise(op, op.operands.map(get)));
    }
  }
  for (const [v, r] of vals) {
    if (!g.isOutput(v)) continue;
    // Each token's row is written by its own workgroup or warp: a result must be per token ([T, n]).
    if (v.type.rank !== 2 || !v.type.shape[0]!.equals(tokensDim)) throw new LingcError(`${form}: result ${v.name ?? ""} of type ${v.type} is not one row per token`);
    const isInt = v.type.dtype !== "f32" && v.type.dtype !== "bf16" && v.type.dtype !== "f16";
    rows.store(v, r, (x) => (isInt ? K.toI(x) : x));
  }
}
