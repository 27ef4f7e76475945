/**
 * The op table's scalar formulas and index rules (ir/ops/algebra.ts) over kir expressions: what
 * lets every generator compute an elementwise op or a view op from its one declaration. Floats are
 * f32 expressions (narrow dtypes are rounded where the IR rounds: at each op's result), integers i32.
 */
import type { Dim } from "../../../ir/dim";
import { isFloat, type DType } from "../../../ir/dtype";
import { LingcError } from "../../../ir/errors";
import type { IndexAlgebra, ScalarAlgebra } from "../../../ir/ops/algebra";
import * as K from "../kir";
import type { Expr, KernelBuilder } from "../kir";
import type { Op } from "../../../ir/module";
import { getOp } from "../../../ir/ops";

/** Rounds a value to a narrow float dtype the way the interpreter does (f32 and ints pass through). */
export function fitTo(e: Expr, dt: DType): Expr {
  if (dt === "bf16" || dt === "f16") return K.round(dt, e);
  return e;
}

/**
 * An elementwise op's op-table scalar formula on kir inputs (one per operand), in its result's
 * dtype (unrounded: the caller fits it where it is stored or passed on).
 */
export function opFormula(op: Op, ins: Expr[]): Expr {
  const scalar = getOp(op.opName)?.scalar;
  if (!scalar) throw new LingcError(`${op.opName} has no scalar formula (not an elementwise op)`);
  const dt = op.results[0]!.type.dtype;
  return scalar(kirScalars(dt), ins, { inTypes: op.operands.map((o) => o.type.dtype), outType: dt, attrs: op.attrs });
}

/** Scalar formulas evaluated on kir expressions whose element type is `dt`. */
export function kirScalars(dt: DType): ScalarAlgebra<Expr> {
  const float = isFloat(dt);
  return {
    lit: (v) => (float ? K.f(v) : K.i(v)),
    add: K.add,
    sub: K.sub,
    mul: K.mul,
    div: K.div,
    // max/min propagate NaN, as the interpreter's do (WGSL's and CUDA's max/min may not).
    max: (a, b) => (float ? K.sel(K.or(K.ne(a, a), K.ne(b, b)), K.add(a, b), K.max(a, b)) : K.max(a, b)),
    min: (a, b) => (float ? K.sel(K.or(K.ne(a, a), K.ne(b, b)), K.add(a, b), K.min(a, b)) : K.min(a, b)),
    neg: K.neg,
    abs: K.abs,
    exp: K.exp,
    log: K.log,
    sqrt: K.sqrt,
    rsqrt: K.rsqrt,
    sin: K.sin,
    cos: K.cos,
    cast(a, _from, to) {
      if (isFloat(to)) return fitTo(K.toF(a), to);
      if (to === "bool") return K.sel(K.ne(a, a.t === "f32" ? K.f(0) : K.i(0)), K.i(1), K.i(0));
      return K.toI(a);
    },
  };
}

/** Where a coordinate came from: axis `axis` of the row-major unflattening of `flat` over `dims`. */
interface Origin {
  flat: Expr;
  dims: readonly Expr[];
  axis: number;
}

export interface KirIndexHooks {
  kb: KernelBuilder;
  /** A size as an expression (a literal, or a uniform for a symbolic dim). */
  size(d: Dim): Expr;
  /** Element `flat` of operand j (row-major). */
  readFlat(j: number, flat: Expr): Expr;
  /** The operands' shapes. */
  inShapes: readonly (readonly Dim[])[];
  /** The result's dtype. */
  outType: DType;
}

/**
 * Index rules over kir: coordinates are expressions; `choose` becomes an if/else writing a variable,
 * so the branch not taken reads nothing. Coordinates remember where they came from, so flattening
 * the coordinates of a flat index (a reshape, an identity transpose) gives that index back, and a
 * prefix of them gives its quotient, instead of div/mod arithmetic.
 */
export function kirIndex(h: KirIndexHooks): IndexAlgebra<Expr> {
  const origin = new Map<Expr, Origin>();
  const float = isFloat(h.outType);
  const dimsOf = (shape: readonly Dim[]) => shape.map((d) => h.size(d));
  const sameDims = (a: readonly Expr[], b: readonly Expr[]) => a.length === b.length && a.every((x, i) => K.same(x, b[i]!));
  const A: IndexAlgebra<Expr> = {
    int: (n) => K.i(n),
    value: (v) => (float ? K.f(v) : K.i(v)),
    table() {
      throw new LingcError("a constant with several values cannot be inlined into a kernel (it is read from its own buffer)");
    },
    size: h.size,
    add: K.addI,
    sub: (a, b) => (b.k === "lit" && b.v === 0 ? a : K.sub(a, b)),
    mul: K.mulI,
    div: K.divI,
    mod: K.modI,
    min: K.min,
    max: K.max,
    lt: K.lt,
    ge: K.ge,
    and: K.and,
    choose(c, then, otherwise) {
      const out = h.kb.var("pick", float ? K.f(0) : K.i(0));
      h.kb.if(c, () => out.set(then()), () => out.set(otherwise()));
      return out.ref;
    },
    read: (j, coords) => h.readFlat(j, A.flatten(coords, h.inShapes[j]!)),
    readFlat: (j, flat) => h.readFlat(j, flat),
    flatten(coords, shape) {
      const dims = dimsOf(shape);
      // coords = axes 0..k-1 of unflatten(flat, D) with D[0..k) = dims: flat / prod(D[k..]).
      const o = coords.length ? origin.get(coords[0]!) : undefined;
      if (o && coords.every((c, a) => origin.get(c)?.flat === o.flat && origin.get(c)?.axis === a && origin.get(c)?.dims === o.dims)) {
        if (sameDims(o.dims.slice(0, coords.length), dims)) {
          let q = o.flat;
          for (const d of o.dims.slice(coords.length)) q = K.divI(q, d);
          return q;
        }
      }
      let acc: Expr = K.i(0);
      coords.forEach((c, a) => (acc = K.addI(K.mulI(acc, dims[a]!), c)));
      return acc;
    },
    unflatten(flat, shape) {
      const dims = dimsOf(shape);
      const coords: Expr[] = new Array(dims.length);
      let rest = flat;
      for (let a = dims.length - 1; a >= 0; a--) {
        coords[a] = a === 0 ? rest : K.modI(rest, dims[a]!);
        if (a > 0) rest = K.divI(rest, dims[a]!);
      }
      // Each coordinate is its own node, so that the same expression reached another way is not mistaken for it.
      const marked = coords.map((c) => K.wrap(c));
      marked.forEach((c, axis) => origin.set(c, { flat, dims, axis }));
      return marked;
    },
    toIndex: (v) => K.toI(v),
    fromIndex: (i) => (float ? K.toF(i) : i),
  };
  return A;
}
