/** Loads every op declaration into the table; import this before using getOp(). */
import { CACHE_APPEND } from "./cache";
import { CAST, STOP_GRADIENT } from "./elementwise";
import { DEQUANTIZE, QUANTIZE } from "./fp8";
import { REDUCE_MAX, REDUCE_MEAN, REDUCE_SUM } from "./reduce";
import { BROADCAST_TO, CONCAT, CONSTANT, IOTA, RESHAPE, SHIFT, SLICE, TAKE_LAST, TRANSPOSE } from "./shape";
import { ATTENTION, EMBEDDING, LINEAR, MATMUL, RMS_NORM, ROPE } from "./nn";
import { SCATTER_ADD } from "./scatter";
import { TRANSFER } from "./transfer";
import { GROUPED_LINEAR, GROUPED_OUTER, GROUP_TOPK, MOE_COMBINE, MOE_DISPATCH, MOE_PERMUTE, TAKE_ALONG } from "./moe";

/**
 * The declarations of the ops that have attributes, for typed attribute reads outside the op
 * table: `attrsOf(OPS.rms_norm, op).eps` is a number, checked against the declaration.
 */
export const OPS = {
  cast: CAST,
  reduce_sum: REDUCE_SUM,
  reduce_mean: REDUCE_MEAN,
  reduce_max: REDUCE_MAX,
  reshape: RESHAPE,
  transpose: TRANSPOSE,
  slice: SLICE,
  take_last: TAKE_LAST,
  concat: CONCAT,
  cache_append: CACHE_APPEND,
  quantize: QUANTIZE,
  dequantize: DEQUANTIZE,
  shift: SHIFT,
  iota: IOTA,
  constant: CONSTANT,
  embedding: EMBEDDING,
  linear: LINEAR,
  matmul: MATMUL,
  rms_norm: RMS_NORM,
  rope: ROPE,
  attention: ATTENTION,
  group_topk: GROUP_TOPK,
  take_along: TAKE_ALONG,
  moe_dispatch: MOE_DISPATCH,
  moe_permute: MOE_PERMUTE,
  grouped_linear: GROUPED_LINEAR,
  moe_combine: MOE_COMBINE,
  broadcast_to: BROADCAST_TO,
  scatter_add: SCATTER_ADD,
  grouped_outer: GROUPED_OUTER,
  stop_gradient: STOP_GRADIENT,
  transfer: TRANSFER,
} as const;

export {
  getOp,
  allOps,
  attrsOf,
  hasTrait,
  attrsProblem,
  normAxis,
  TRAITS,
  type OpDef,
  type AttrKind,
  type AttrSpec,
  type Cost,
  type ShapedType,
  type Trait,
} from "./registry";
export type { ScalarAlgebra, IndexAlgebra, ScalarRule, IndexRule } from "./algebra";
export { vjpRule, unbroadcast, type VjpRule } from "./vjp";
