/**
 * The two small languages op meanings are written in, so that one declaration serves every target
 * (DESIGN principle 1). Each is an interface over an abstract value type T; the interpreter
 * implements it with numbers, the GPU kernel generators with kernel-language expressions, and the
 * ONNX emitter (scalars only) with graph nodes.
 *
 * - ScalarAlgebra: what an elementwise op computes from one element of each operand (`silu` is
 *   x / (1 + exp(-x))). Broadcasting, loops and rounding to the result dtype are the caller's.
 * - IndexAlgebra: what a view op's result element is, given its coordinates: a read of an operand at
 *   other coordinates (transpose, slice, concat, gathers such as embedding), or a value made from the
 *   coordinates (iota). Branches are lazy (`choose`), so a rule only reads coordinates that are in
 *   range on the branch taken; integer elements read from operands may serve as coordinates.
 */
import type { Dim } from "../dim";
import type { DType } from "../dtype";

export interface ScalarAlgebra<T> {
  /** A constant of the formula's element type. */
  lit(v: number): T;
  add(a: T, b: T): T;
  sub(a: T, b: T): T;
  mul(a: T, b: T): T;
  div(a: T, b: T): T;
  /** max/min propagate NaN. */
  max(a: T, b: T): T;
  min(a: T, b: T): T;
  neg(a: T): T;
  abs(a: T): T;
  exp(a: T): T;
  log(a: T): T;
  sqrt(a: T): T;
  rsqrt(a: T): T;
  sin(a: T): T;
  cos(a: T): T;
  /** A dtype conversion: floats round to nearest even, to integers truncates (bool: nonzero). */
  cast(a: T, from: DType, to: DType): T;
}

/** One formula: the result element from the operands' elements. */
export type ScalarRule = <T>(S: ScalarAlgebra<T>, ins: readonly T[], ctx: ScalarCtx) => T;

export interface ScalarCtx {
  inTypes: readonly DType[];
  outType: DType;
  attrs: Readonly<Record<string, unknown>>;
}

export interface IndexAlgebra<E> {
  /** An integer literal (a coordinate, a count). */
  int(n: number): E;
  /** A literal of the result's element type (a fill value). */
  value(v: number): E;
  /** values[flat]: a table given in the IR (a constant's data). */
  table(values: readonly number[], flat: E): E;
  /** A size: numbers become literals; symbols their run-time values. */
  size(d: Dim): E;
  add(a: E, b: E): E;
  sub(a: E, b: E): E;
  mul(a: E, b: E): E;
  /** Integer division of non-negative values. */
  div(a: E, b: E): E;
  mod(a: E, b: E): E;
  min(a: E, b: E): E;
  max(a: E, b: E): E;
  lt(a: E, b: E): E;
  ge(a: E, b: E): E;
  and(a: E, b: E): E;
  /** `then()` where c holds, else `otherwise()`; only the branch taken is evaluated. */
  choose(c: E, then: () => E, otherwise: () => E): E;
  /** Element of operand j at coordinates (each in range). */
  read(j: number, coords: readonly E[]): E;
  /** Element of operand j at a row-major flat index. */
  readFlat(j: number, flat: E): E;
  /** The row-major flat index of coords in a tensor of the given shape. */
  flatten(coords: readonly E[], shape: readonly Dim[]): E;
  /** The coordinates of a row-major flat index in a tensor of the given shape. */
  unflatten(flat: E, shape: readonly Dim[]): E[];
  /** An element read from an integer operand, used as a coordinate. */
  toIndex(v: E): E;
  /** A coordinate (an integer) as an element of the result's dtype. */
  fromIndex(i: E): E;
}

export interface IndexCtx {
  inShapes: readonly (readonly Dim[])[];
  outShape: readonly Dim[];
  outType: DType;
  attrs: Readonly<Record<string, unknown>>;
}

/** One rule: the result element at `coords` (coordinates in the result's shape). */
export type IndexRule = <E>(A: IndexAlgebra<E>, coords: readonly E[], ctx: IndexCtx) => E;
