/**
 * The interpreter's side of the op table's rules: an op with a scalar formula or an index rule is
 * interpreted by evaluating that rule with plain numbers (doubles), element by element. So the
 * reference semantics of an elementwise or view op is exactly the rule every backend derives from.
 */
import { Dim } from "../dim";
import { isFloat, type DType } from "../dtype";
import { OpError } from "../errors";
import { Tensor, allocData, numelOf, stridesOf } from "../tensor";
import type { Attrs } from "../module";
import { broadcastIndex } from "./broadcast";
import type { IndexAlgebra, ScalarAlgebra } from "./algebra";
import type { InterpCtx, OpDef } from "./registry";

/** Converts one value to an integer dtype the way a C cast does: truncation, then wrap for i32/u8. */
export function toInt(x: number, to: DType): number {
  if (to === "bool") return x !== 0 ? 1 : 0;
  if (Number.isNaN(x)) return 0;
  const t = Math.trunc(x);
  if (to === "i32") return t | 0;
  if (to === "u8") return t & 0xff;
  return t;
}

const nanMax = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b));
const nanMin = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b));

/** Scalars as doubles; the interpreter rounds each result to its dtype afterwards. */
export const NUMBER_SCALARS: ScalarAlgebra<number> = {
  lit: (v) => v,
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  max: nanMax,
  min: nanMin,
  neg: (a) => -a,
  abs: Math.abs,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (a) => 1 / Math.sqrt(a),
  sin: Math.sin,
  cos: Math.cos,
  cast: (a, _from, to) => (isFloat(to) ? a : toInt(a, to)),
};

function interpretScalar(def: OpDef, ins: readonly Tensor[], attrs: Attrs, ctx: InterpCtx): Tensor[] {
  const shape = ctx.resultShapes[0]!;
  const outType = ctx.resultDtypes[0]!;
  const n = numelOf(shape);
  const maps = ins.map((t) => broadcastIndex(t.shape, shape));
  const out = allocData(outType, n);
  const sctx = { inTypes: ins.map((t) => t.dtype), outType, attrs };
  const args = new Array<number>(ins.length);
  const rule = def.scalar!;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < ins.length; j++) {
      const m = maps[j];
      args[j] = ins[j]!.data[m ? m[i]! : i]!;
    }
    out[i] = rule(NUMBER_SCALARS, args, sctx);
  }
  return [new Tensor(outType, shape, out)];
}

function interpretIndex(def: OpDef, ins: readonly Tensor[], attrs: Attrs, ctx: InterpCtx): Tensor[] {
  const shape = ctx.resultShapes[0]!;
  const outType = ctx.resultDtypes[0]!;
  const strides = ins.map((t) => stridesOf(t.shape));
  const A: IndexAlgebra<number> = {
    int: (n) => n,
    value: (v) => v,
    table: (values, flat) => values[flat]!,
    size: (d) => ctx.dim(d),
    add: (a, b) => a + b,
    sub: (a, b) => a - b,
    mul: (a, b) => a * b,
    div: (a, b) => Math.floor(a / b),
    mod: (a, b) => a % b,
    min: Math.min,
    max: Math.max,
    lt: (a, b) => (a < b ? 1 : 0),
    ge: (a, b) => (a >= b ? 1 : 0),
    and: (a, b) => (a && b ? 1 : 0),
    choose: (c, then, otherwise) => (c ? then() : otherwise()),
    read(j, coords) {
      const t = ins[j]!;
      let off = 0;
      coords.forEach((c, a) => {
        if (!(Number.isInteger(c) && c >= 0 && c < t.shape[a]!)) {
          throw new OpError(`${def.name}: index ${c} is outside 0..${t.shape[a]! - 1} on axis ${a} of its ${def.operands[Math.min(j, def.operands.length - 1)]} operand [${t.shape.join(", ")}]`);
        }
        off += c * strides[j]![a]!;
      });
      return t.data[off]!;
    },
    readFlat(j, flat) {
      return ins[j]!.data[flat]!;
    },
    flatten(coords, dims) {
      let f = 0;
      coords.forEach((c, a) => (f = f * ctx.dim(dims[a]!) + c));
      return f;
    },
    unflatten(flat, dims) {
      const out = new Array<number>(dims.length);
      for (let a = dims.length - 1; a >= 0; a--) {
        const d = ctx.dim(dims[a]!);
        out[a] = a === 0 ? flat : flat % d;
        flat = a === 0 ? flat : Math.floor(flat / d);
      }
      return out;
    },
    toIndex: (v) => v,
    fromIndex: (i) => i,
  };
  const ictx = {
    inShapes: ins.map((t) => t.shape.map((d) => Dim.of(d))),
    outShape: shape.map((d) => Dim.of(d)),
    outType,
    attrs,
  };
  const n = numelOf(shape);
  const out = allocData(outType, n);
  const rank = shape.length;
  const coords = new Array<number>(rank).fill(0);
  const rule = def.index!;
  for (let i = 0; i < n; i++) {
    out[i] = rule(A, coords, ictx);
    for (let a = rank - 1; a >= 0; a--) {
      if (++coords[a]! < shape[a]!) break;
      coords[a] = 0;
    }
  }
  return [new Tensor(outType, shape, out)];
}

/** Runs an op's reference semantics: its own `interpret`, else its scalar formula or index rule. */
export function interpretOp(def: OpDef, ins: readonly Tensor[], attrs: Attrs, ctx: InterpCtx): Tensor[] {
  if (def.interpret) return def.interpret(ins, attrs, ctx);
  if (def.scalar) return interpretScalar(def, ins, attrs, ctx);
  return interpretIndex(def, ins, attrs, ctx);
}
