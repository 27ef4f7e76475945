/**
 * The op table (DESIGN principle 1): every op is declared once, as data, with its operands, its
 * attributes and their kinds, its traits, its shape and dtype rule, its meaning and its cost.
 * Verifier, printer, parser, DSL, interpreter, passes, cost reports and backends all read this
 * table. Meaning is given once, in the form that fits the op:
 *   - elementwise ops: one scalar formula (`scalar`, see algebra.ts); the interpreter, the GPU
 *     kernel generators and the ONNX emitter all derive from it;
 *   - view ops: one index rule (`index`): which operand element each result element is;
 *   - every other op: a reference implementation (`interpret`), plus one lowering per backend, or a
 *     decomposition into other ops that backends without a lowering use.
 */
import { Dim } from "../dim";
import { byteSize, isDType, type DType } from "../dtype";
import { OpError } from "../errors";
import type { AttrValue, Attrs, Value } from "../module";
import type { Tensor } from "../tensor";
import type { TensorType } from "../types";
import type { IndexRule, ScalarRule } from "./algebra";

export type AttrKind = "int" | "float" | "bool" | "string" | "dtype" | "dim" | "ints" | "dims" | "floats";

export interface AttrSpec {
  kind: AttrKind;
  doc: string;
  /** Attributes that may be left out; the op's rules then use the default they document. */
  optional?: boolean;
}

/** A tensor type with every symbol resolved, used by cost rules. */
export interface ShapedType {
  dtype: DType;
  shape: readonly number[];
}

export interface Cost {
  flops: number;
  bytesRead: number;
  bytesWritten: number;
}

export interface InterpCtx {
  /** The concrete shapes of the op's results (its declared types with the symbols bound). */
  resultShapes: readonly (readonly number[])[];
  /** The dtypes of the op's results. */
  resultDtypes: readonly DType[];
  /** The value of a dim under the current symbol bindings. */
  dim(d: Dim): number;
}

/**
 * What passes and backends may rely on about an op, instead of lists of op names:
 * - elementwise: result element i is `scalar` of the operands' elements at i (numpy broadcasting);
 * - view: result elements are operand elements at other indices, or made from the index (`index`);
 * - free: needs no kernel and moves no bytes (a reshape shares its operand's storage; a constant is data);
 * - contraction: sums products over a contraction axis (a matmul-like op; an epilogue can follow it);
 * - gemm: a dense matrix product of two operands that a GEMM library can run;
 * - reduction: reduces its operand over some axes;
 * - in_place: its result is its first operand's storage, updated (a backend writes only what the op
 *   adds); it is never fused, and its first operand has no other writer;
 * - scaled: takes fp8 operands with their scale layouts (reads the real values q x s, or passes the
 *   layout on). Every other op refuses a scaled operand (verify's inferOp), whose scales it would
 *   drop: a reshape or gather of the codes alone would give the codes as values.
 */
export const TRAITS = ["elementwise", "view", "free", "contraction", "gemm", "reduction", "in_place", "scaled"] as const;
export type Trait = (typeof TRAITS)[number];

export type AttrSpecs = Readonly<Record<string, AttrSpec>>;

interface KindTypes {
  int: number;
  float: number;
  bool: boolean;
  string: string;
  dtype: DType;
  dim: Dim;
  ints: readonly number[];
  floats: readonly number[];
  dims: readonly Dim[];
}

/** The attribute values of an op, typed from its declaration (optional attributes may be undefined). */
export type AttrValues<A extends AttrSpecs> = {
  readonly [K in keyof A]: A[K] extends { optional: true } ? KindTypes[A[K]["kind"]] | undefined : KindTypes[A[K]["kind"]];
};

export interface OpDef<A extends AttrSpecs = AttrSpecs> {
  name: string;
  summary: string;
  /** Operand names, in order. When `variadic`, the last one repeats (at least once). */
  operands: readonly string[];
  variadic?: boolean;
  attrs: A;
  traits?: readonly Trait[];
  /** The shape and dtype rule: result types from operand types; throws OpError on bad input. */
  infer(ins: readonly TensorType[], attrs: Attrs): TensorType[];
  /** Elementwise ops: the formula of one element (see algebra.ts). */
  scalar?: ScalarRule;
  /** View ops: the result element at given coordinates (see algebra.ts). */
  index?: IndexRule;
  /**
   * The reference semantics. Results are rounded to their dtype by the interpreter afterwards.
   * Ops with a `scalar` formula or an `index` rule get theirs derived from it (interpret-rules.ts).
   */
  interpret?(ins: readonly Tensor[], attrs: Attrs, ctx: InterpCtx): Tensor[];
  /**
   * The op in terms of other ops, for a backend with no lowering of its own (the `decompose` pass
   * applies it). Must compute exactly what `interpret` does, rounding included.
   */
  decompose?(b: OpBuilder, ins: readonly Value[], attrs: Attrs): Value[];
  /**
   * The reverse-mode derivative (ir/ops/vjp.ts): the cotangent of each operand (undefined: no
   * gradient) built from the operands, results and results' cotangents. Elementwise ops derive
   * theirs from `scalar`.
   */
  vjp?(b: OpBuilder, ins: readonly Value[], outs: readonly Value[], cts: readonly Value[], attrs: Attrs): (Value | undefined)[];
  /** FLOPs and bytes moved; when left out, one FLOP per output element and every operand read once. */
  cost?(ins: readonly ShapedType[], outs: readonly ShapedType[], attrs: Attrs): Cost;
}

/** What a decomposition builds with (ir/rewrite.ts's Builder): ops whose result types the table infers. */
export interface OpBuilder {
  op1(opName: string, operands: readonly Value[], attrs?: Attrs): Value;
}

const TABLE = new Map<string, OpDef>();

export function defineOp<const A extends AttrSpecs>(def: OpDef<A>): OpDef<A> {
  if (TABLE.has(def.name)) throw new Error(`op '${def.name}' is declared twice`);
  if (def.traits?.includes("elementwise") && !def.scalar) throw new Error(`elementwise op '${def.name}' needs a scalar formula`);
  if (def.traits?.includes("view") && !def.index) throw new Error(`view op '${def.name}' needs an index rule`);
  if (!def.interpret && !def.scalar && !def.index) throw new Error(`op '${def.name}' has no meaning: give interpret, scalar or index`);
  TABLE.set(def.name, def as unknown as OpDef);
  return def;
}

/** Whether the op named `name` has trait t (false for calls and unknown ops). */
export function hasTrait(name: string, t: Trait): boolean {
  return TABLE.get(name)?.traits?.includes(t) ?? false;
}

/** The attributes of `op`, typed by the declaration `def` (whose op it must be). */
export function attrsOf<A extends AttrSpecs>(def: OpDef<A>, op: { opName: string; attrs: Attrs }): AttrValues<A> {
  if (op.opName !== def.name) throw new Error(`attrsOf: op is '${op.opName}', not '${def.name}'`);
  return op.attrs as unknown as AttrValues<A>;
}

export function getOp(name: string): OpDef | undefined {
  return TABLE.get(name);
}

export function allOps(): OpDef[] {
  return [...TABLE.values()];
}

/** Why `v` does not fit `kind`, or undefined when it does. */
export function attrKindProblem(kind: AttrKind, v: AttrValue): string | undefined {
  const isInt = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x);
  switch (kind) {
    case "int":
      return isInt(v) ? undefined : "an integer";
    case "float":
      return typeof v === "number" ? undefined : "a number";
    case "bool":
      return typeof v === "boolean" ? undefined : "true or false";
    case "string":
      return typeof v === "string" ? undefined : "a string";
    case "dtype":
      return typeof v === "string" && isDType(v) ? undefined : "a dtype (f32, bf16, i64, ...)";
    case "dim":
      return v instanceof Dim ? undefined : "a dimension (a number, a symbol or an expression like B*S)";
    case "ints":
      return Array.isArray(v) && v.every(isInt) ? undefined : "a list of integers";
    case "dims":
      return Array.isArray(v) && v.every((x) => x instanceof Dim) ? undefined : "a list of dimensions";
    case "floats":
      return Array.isArray(v) && v.every((x) => typeof x === "number") ? undefined : "a list of numbers";
  }
}

/** Checks an op's attributes against its declaration; returns the first problem. */
export function attrsProblem(def: OpDef, attrs: Attrs): string | undefined {
  for (const key of Object.keys(attrs)) {
    if (!Object.prototype.hasOwnProperty.call(def.attrs, key)) {
      const known = Object.keys(def.attrs);
      return `op '${def.name}' has no attribute '${key}'${known.length ? ` (it has: ${known.join(", ")})` : ""}`;
    }
  }
  for (const [key, spec] of Object.entries(def.attrs)) {
    const v = attrs[key];
    if (v === undefined) {
      if (!spec.optional) return `op '${def.name}' needs attribute '${key}' (${spec.doc})`;
      continue;
    }
    const want = attrKindProblem(spec.kind, v);
    if (want) return `attribute '${key}' of '${def.name}' must be ${want}`;
  }
  return undefined;
}

// Typed attribute readers for rules that run after attrsProblem() has accepted the attributes.
export const attr = {
  int(a: Attrs, k: string, dflt?: number): number {
    const v = a[k];
    return v === undefined ? dflt! : (v as number);
  },
  float(a: Attrs, k: string, dflt?: number): number {
    const v = a[k];
    return v === undefined ? dflt! : (v as number);
  },
  bool(a: Attrs, k: string, dflt?: boolean): boolean {
    const v = a[k];
    return v === undefined ? dflt! : (v as boolean);
  },
  dtype(a: Attrs, k: string): DType {
    return a[k] as DType;
  },
  str(a: Attrs, k: string): string {
    return a[k] as string;
  },
  dim(a: Attrs, k: string): Dim {
    return a[k] as Dim;
  },
  ints(a: Attrs, k: string): readonly number[] {
    return a[k] as readonly number[];
  },
  dims(a: Attrs, k: string): readonly Dim[] {
    return a[k] as readonly Dim[];
  },
  floats(a: Attrs, k: string): readonly number[] {
    return a[k] as readonly number[];
  },
};

/** Normalizes a possibly negative axis against a rank; throws OpError when out of range. */
export function normAxis(axis: number, rank: number, what = "axis"): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!(a >= 0 && a < rank)) throw new OpError(`${what} ${axis} is out of range for rank ${rank}`);
  return a;
}

export function expectRank(t: TensorType, rank: number, what: string): void {
  if (t.rank !== rank) throw new OpError(`${what} must have rank ${rank}, got ${t}`);
}

export function expectMinRank(t: TensorType, rank: number, what: string): void {
  if (t.rank < rank) throw new OpError(`${what} must have rank >= ${rank}, got ${t}`);
}

export function expectDims(a: Dim, b: Dim, what: string): void {
  if (!a.equals(b)) throw new OpError(`${what}: ${a} vs ${b}`);
}

export function expectDtype(t: TensorType, ok: (d: DType) => boolean, what: string): void {
  if (!ok(t.dtype)) throw new OpError(`${what}, got ${t}`);
}

export function expectSameDtype(a: TensorType, b: TensorType, what: string): void {
  if (a.dtype !== b.dtype) throw new OpError(`${what} must have the same dtype: ${a} vs ${b} (insert a cast)`);
}

export function bytesOf(t: ShapedType): number {
  let n = 1;
  for (const d of t.shape) n *= d;
  return n * byteSize(t.dtype);
}

export function numelOfShaped(t: ShapedType): number {
  let n = 1;
  for (const d of t.shape) n *= d;
  return n;
}

export function defaultCost(ins: readonly ShapedType[], outs: readonly ShapedType[]): Cost {
  return {
    flops: outs.reduce((s, o) => s + numelOfShaped(o), 0),
    bytesRead: ins.reduce((s, i) => s + bytesOf(i), 0),
    bytesWritten: outs.reduce((s, o) => s + bytesOf(o), 0),
  };
}
