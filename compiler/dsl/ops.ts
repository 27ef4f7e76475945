/**
 * The DSL's op functions: one typed wrapper per op-table entry, so model code reads like the math
 * (`rmsNorm(x, w, eps)`, `linear(x, w)`). Each call appends an op to the function being traced;
 * shape errors surface at the model line that made them.
 */
import { dim, type DimLike } from "../../ir/dim";
import type { DType } from "../../ir/dtype";
import { emit, emit1, type Tensor } from "./trace";

const unary = (name: string) => (x: Tensor) => emit1(name, [x]);
const binary = (name: string) => (a: Tensor, b: Tensor) => emit1(name, [a, b]);

export const neg = unary("neg");
export const exp = unary("exp");
export const log = unary("log");
/** x, with no derivative flowing through it (the autodiff pass treats it as a constant). */
export const stopGradient = unary("stop_gradient");
export const sqrt = unary("sqrt");
export const rsqrt = unary("rsqrt");
export const sigmoid = unary("sigmoid");
export const silu = unary("silu");
export const gelu = unary("gelu");
export const cos = unary("cos");
export const sin = unary("sin");

export const add = binary("add");
export const sub = binary("sub");
export const mul = binary("mul");
export const div = binary("div");
export const maximum = binary("maximum");
export const minimum = binary("minimum");

/** A cast, or `x` itself when it already has the dtype (so f32 models carry no no-op casts). */
export function cast(x: Tensor, to: DType): Tensor {
  return x.dtype === to ? x : emit1("cast", [x], { to });
}

export const reduceSum = (x: Tensor, axes: number[], keepdims = false) => emit1("reduce_sum", [x], { axes, keepdims });
export const reduceMean = (x: Tensor, axes: number[], keepdims = false) => emit1("reduce_mean", [x], { axes, keepdims });
export const reduceMax = (x: Tensor, axes: number[], keepdims = false) => emit1("reduce_max", [x], { axes, keepdims });

export const reshape = (x: Tensor, shape: readonly DimLike[]) => emit1("reshape", [x], { shape: shape.map(dim) });
export const transpose = (x: Tensor, perm: number[]) => emit1("transpose", [x], { perm });
export const slice = (x: Tensor, axis: number, start: number, end: number) => emit1("slice", [x], { axis, start, end });
/** The last `count` positions along `axis` (its length may be a symbol). */
export const takeLast = (x: Tensor, axis: number, count: number) => emit1("take_last", [x], { axis, count });
export const concat = (xs: Tensor[], axis: number) => emit1("concat", xs, { axis });
/** A KV cache grown by `x` along `axis` (concat's value; backends grow the cache's buffer in place). */
export const cacheAppend = (cache: Tensor, x: Tensor, axis: number) => emit1("cache_append", [cache, x], { axis });
export const shift = (x: Tensor, axis: number, offset: number, fill: number) => emit1("shift", [x], { axis, offset, fill });
export const broadcastTo = (x: Tensor, shape: readonly DimLike[]) => emit1("broadcast_to", [x], { shape: shape.map(dim) });
export const iota = (start: DimLike, length: DimLike, dtype: DType) => emit1("iota", [], { start: dim(start), length: dim(length), dtype });

/** A constant: a scalar, or a vector/tensor of values (given row-major). */
export function constant(values: number | readonly number[], dtype: DType, shape?: readonly number[]): Tensor {
  const vs = typeof values === "number" ? [values] : [...values];
  return emit1("constant", [], shape ? { values: vs, dtype, shape: [...shape] } : { values: vs, dtype });
}

export const embedding = (table: Tensor, ids: Tensor) => emit1("embedding", [table, ids]);
export const linear = (x: Tensor, w: Tensor) => emit1("linear", [x, w]);
export const matmul = binary("matmul");
export const rmsNorm = (x: Tensor, w: Tensor, eps: number) => emit1("rms_norm", [x, w], { eps });
export const rope = (x: Tensor, cosT: Tensor, sinT: Tensor) => emit1("rope", [x, cosT, sinT]);
export const attention = (q: Tensor, k: Tensor, v: Tensor, opts: { scale: number; causal: boolean }) => emit1("attention", [q, k, v], opts);

export function groupTopk(scores: Tensor, o: { k: number; groups: number; topkGroups: number; groupScoreTopk: number }): Tensor {
  return emit1("group_topk", [scores], { k: o.k, groups: o.groups, topk_groups: o.topkGroups, group_score_topk: o.groupScoreTopk });
}
export const takeAlong = (x: Tensor, idx: Tensor) => emit1("take_along", [x, idx]);
export function moeDispatch(idx: Tensor, numExperts: number): { order: Tensor; offsets: Tensor; rowOf: Tensor } {
  const [order, offsets, rowOf] = emit("moe_dispatch", [idx], { num_experts: numExperts });
  return { order: order!, offsets: offsets!, rowOf: rowOf! };
}
export const moePermute = (x: Tensor, order: Tensor, k: number) => emit1("moe_permute", [x, order], { k });
export const groupedLinear = (x: Tensor, w: Tensor, offsets: Tensor) => emit1("grouped_linear", [x, w, offsets]);
export const moeCombine = (y: Tensor, rowOf: Tensor, weights: Tensor) => emit1("moe_combine", [y, rowOf, weights]);
