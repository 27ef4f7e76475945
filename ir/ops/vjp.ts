/**
 * Reverse-mode derivatives of ops (vector-Jacobian products), the first piece of the training graph
 * (issue 11). A VJP rule builds, with IR ops, the cotangent of each operand from the operands, the
 * results and the results' cotangents; an operand with no gradient (an integer index, a choice)
 * gets undefined.
 *
 * Elementwise ops need no rule of their own: their one scalar formula is evaluated on dual numbers
 * whose parts are IR values (the value and its tangent), with the result's cotangent as the tangent
 * of the operand being differentiated. An elementwise Jacobian is diagonal, so that forward-mode
 * product is the VJP; where the operand was broadcast, the cotangent is summed back over the
 * broadcast axes. The formula's derivative rules (below) are the only calculus written here.
 */
import { Dim } from "../dim";
import { isFloat, type DType } from "../dtype";
import { LingcError } from "../errors";
import type { Attrs, Value } from "../module";
import type { ScalarAlgebra } from "./algebra";
import { getOp, type OpBuilder, type OpDef } from "./registry";

/** Cotangents of an op's operands from its operands, results and the results' cotangents. */
export type VjpRule = (b: OpBuilder, ins: readonly Value[], outs: readonly Value[], cts: readonly Value[], attrs: Attrs) => (Value | undefined)[];

/** A value and its tangent (undefined: zero). */
interface Dual {
  v: Value;
  d?: Value;
}

function scalarConst(b: OpBuilder, v: number, dtype: DType): Value {
  return b.op1("constant", [], { values: [v], dtype });
}

/** The formula's arithmetic on duals: each operation's value and its derivative, as IR ops. */
function dualAlgebra(b: OpBuilder, dtype: DType): ScalarAlgebra<Dual> {
  const op = (name: string, ...xs: Value[]) => b.op1(name, xs);
  const c = (v: number) => scalarConst(b, v, dtype);
  const sum = (x?: Value, y?: Value) => (x && y ? op("add", x, y) : (x ?? y));
  return {
    lit: (v) => ({ v: c(v) }),
    add: (x, y) => ({ v: op("add", x.v, y.v), d: sum(x.d, y.d) }),
    sub: (x, y) => ({ v: op("sub", x.v, y.v), d: y.d ? (x.d ? op("sub", x.d, y.d) : op("neg", y.d)) : x.d }),
    mul: (x, y) => ({ v: op("mul", x.v, y.v), d: sum(x.d && op("mul", x.d, y.v), y.d && op("mul", x.v, y.d)) }),
    div(x, y) {
      const v = op("div", x.v, y.v);
      // d(x/y) = dx/y - (x/y) dy/y
      return { v, d: sum(x.d && op("div", x.d, y.v), y.d && op("neg", op("div", op("mul", v, y.d), y.v))) };
    },
    neg: (x) => ({ v: op("neg", x.v), d: x.d && op("neg", x.d) }),
    exp(x) {
      const v = op("exp", x.v);
      return { v, d: x.d && op("mul", x.d, v) };
    },
    log: (x) => ({ v: op("log", x.v), d: x.d && op("div", x.d, x.v) }),
    sqrt(x) {
      const v = op("sqrt", x.v);
      return { v, d: x.d && op("div", op("mul", x.d, c(0.5)), v) };
    },
    rsqrt(x) {
      // d x^(-1/2) = -1/2 x^(-1/2) / x dx
      const v = op("rsqrt", x.v);
      return { v, d: x.d && op("div", op("mul", op("mul", x.d, c(-0.5)), v), x.v) };
    },
    sin: (x) => ({ v: op("sin", x.v), d: x.d && op("mul", x.d, op("cos", x.v)) }),
    cos: (x) => ({ v: op("cos", x.v), d: x.d && op("neg", op("mul", x.d, op("sin", x.v))) }),
    cast: (x, _from, to) => ({ v: b.op1("cast", [x.v], { to }), d: x.d && (isFloat(to) ? b.op1("cast", [x.d], { to }) : undefined) }),
    abs: (x) => ({ v: op("abs", x.v), d: x.d && op("mul", x.d, signOf(b, x.v)) }),
    // max/min: the derivative goes to the larger (smaller) operand, half to each on a tie (torch's).
    max: (x, y) => pick(b, op("maximum", x.v, y.v), x, y, 1),
    min: (x, y) => pick(b, op("minimum", x.v, y.v), x, y, -1),
  };
}

/**
 * sign(x) (0 at 0) without a comparison op: x / max(|x|, the dtype's smallest normal), exactly +-1
 * for every normal x (a subnormal x gives less than 1 in magnitude).
 */
export function signOf(b: OpBuilder, x: Value): Value {
  const tiny = x.type.dtype === "f16" ? 6.103515625e-5 : 1.1754943508222875e-38;
  return b.op1("div", [x, b.op1("maximum", [b.op1("abs", [x]), scalarConst(b, tiny, x.type.dtype)])]);
}

/** The dual of max (dir 1) or min (dir -1) of x and y: weight (1 + dir sign(x - y)) / 2 on x's tangent, the rest on y's. */
function pick(b: OpBuilder, v: Value, x: Dual, y: Dual, dir: 1 | -1): Dual {
  if (!x.d && !y.d) return { v };
  const dt = v.type.dtype;
  const s = signOf(b, b.op1("sub", [x.v, y.v]));
  const wx = b.op1("mul", [b.op1(dir === 1 ? "add" : "sub", [scalarConst(b, 1, dt), s]), scalarConst(b, 0.5, dt)]);
  const wy = b.op1("sub", [scalarConst(b, 1, dt), wx]);
  const dx = x.d && b.op1("mul", [x.d, wx]);
  const dy = y.d && b.op1("mul", [y.d, wy]);
  return { v, d: dx && dy ? b.op1("add", [dx, dy]) : (dx ?? dy) };
}

/** A cotangent of a broadcast result summed back to the operand's shape (leading axes added, size-1 axes stretched). */
export function unbroadcast(b: OpBuilder, ct: Value, to: Value): Value {
  const from = ct.type.shape;
  const want = to.type.shape;
  const lead = from.length - want.length;
  const axes: number[] = [];
  from.forEach((d, i) => {
    if (i < lead || (want[i - lead]!.equals(Dim.of(1)) && !d.equals(Dim.of(1)))) axes.push(i);
  });
  let out = ct;
  if (axes.length) out = b.op1("reduce_sum", [out], { axes, keepdims: false });
  if (out.type.rank !== want.length || !out.type.shape.every((d, i) => d.equals(want[i]!))) out = b.op1("reshape", [out], { shape: [...want] });
  if (out.type.dtype !== to.type.dtype) out = b.op1("cast", [out], { to: to.type.dtype });
  return out;
}

/** The transpose of the last two axes (a permutation of every axis). */
export function swapLast(b: OpBuilder, x: Value): Value {
  const r = x.type.rank;
  const perm = Array.from({ length: r }, (_, i) => i);
  [perm[r - 2], perm[r - 1]] = [perm[r - 1]!, perm[r - 2]!];
  return b.op1("transpose", [x], { perm });
}

/** Refuses an operand with a scale layout: the training graph differentiates plain float tensors. */
export function plainFloat(opName: string, vs: readonly Value[]): void {
  const q = vs.find((v) => v.type.quant);
  if (q) throw new LingcError(`${opName}: no derivative through the scaled fp8 operand ${q.type} (training graphs differentiate float tensors)`);
}

/** The VJP of an elementwise op, from its scalar formula. */
function elementwiseVjp(def: OpDef): VjpRule {
  return (b, ins, outs, cts, attrs) => {
    const y = outs[0]!;
    const ct = cts[0]!;
    const S = dualAlgebra(b, y.type.dtype);
    return ins.map((x, j) => {
      if (!isFloat(x.type.dtype)) return undefined;
      const duals = ins.map((v, k) => ({ v, d: k === j ? ct : undefined }));
      const out = def.scalar!(S, duals, { inTypes: ins.map((v) => v.type.dtype), outType: y.type.dtype, attrs });
      return out.d ? unbroadcast(b, out.d, x) : undefined;
    });
  };
}

/** The VJP rule of an op: its own, or the one derived from its scalar formula (undefined: none yet). */
export function vjpRule(opName: string): VjpRule | undefined {
  const def = getOp(opName);
  if (!def) return undefined;
  if (def.vjp) return def.vjp;
  if (def.traits?.includes("elementwise") && def.scalar) return elementwiseVjp(def);
  return undefined;
}
