import type { Op, Value } from "../module";
import { attrsOf, getOp, hasTrait, OPS } from "../ops";

/**
 * Geometry of generated kernel forms that both a target's dispatch (ir/target) and the kernel
 * generators (backends/kernels/gen) need: written once here, where both may import it.
 */

/** Attention's split form (few query rows, a decode step): workgroups a query row, each over its share of the keys. */
export const ATTENTION_SPLITS = 16;
/** The most query rows the split form takes (its scratch holds this many; more rows fill the GPU as they are). */
export const ATTENTION_SPLIT_MAX_ROWS = 64;

/**
 * The GQA decode forms on CUDA (bf16): workgroups a (batch, KV head, query position), each over its
 * share of the keys for all of the KV head's query heads; the fewer the rows, the more splits (the
 * grid's size is the rows' work items times the splits, fixed when the kernel is generated). Each
 * takes up to `maxRows` query rows (batch x heads x positions): its scratch, [rows, splits, d + 2]
 * f32, holds this many. Measured on the H200 (bench/results/decattn-2026-12-01-h200.md): with 32
 * splits, faster than the runtime's attn_decode at Ling-mini's batch 1 (16 rows; 29 -> 20 us a
 * layer), slower at batch 32 (512 rows: 4,096 workgroups of 64 keys each); with 4 splits at batch 32,
 * faster (attention 3.73 -> 3.06 ms over 2 steps, 8.76 -> 8.40 ms a step).
 */
export const DECODE_ATTENTION_FORMS = [
  { name: "decode_attention", splits: 32, maxRows: 64 },
  { name: "decode_attention_wide", splits: 4, maxRows: 512 },
] as const;
/** The most query heads a KV head may have in them (each lane keeps 8 output columns of each in registers). */
export const DECODE_ATTENTION_MAX_GROUP = 8;

/**
 * Whether the GQA decode forms take an attention of these operands ([B, heads, rows, d]): bf16 q, k
 * and v of one head width, 64, 128 or 256 (d / 8 lanes a key), a whole group of at most
 * DECODE_ATTENTION_MAX_GROUP query heads a KV head.
 */
export function decodeAttentionTakes(q: Value, k: Value, v: Value): boolean {
  if (![q, k, v].every((x) => x.type.dtype === "bf16" && !x.type.quant)) return false;
  const d = q.type.shape[3]!.value;
  const [nh, nkv] = [q.type.shape[1]!.value, k.type.shape[1]!.value];
  return d !== undefined && v.type.shape[3]!.value === d && [64, 128, 256].includes(d) && nh !== undefined && nkv !== undefined && nh % nkv === 0 && nh / nkv <= DECODE_ATTENTION_MAX_GROUP;
}

/**
 * The element type of a dense GEMV's operands (the generated one-row form's: backends/kernels/gen/
 * grouped-gemv.ts) where they are all bf16 or all f32 without a quantized layout, else undefined.
 */
export function denseGemvElem(vs: readonly Value[]): "bf16" | "f32" | undefined {
  const dt = vs[0]?.type.dtype;
  if ((dt !== "bf16" && dt !== "f32") || vs.some((v) => v.type.dtype !== dt || v.type.quant)) return undefined;
  return dt;
}

/** A value's row width: its last dim (1 for a scalar or a [T, 1] column; 0 where not a number). */
export const rowWidth = (v: Value) => (v.type.rank ? (v.type.shape[v.type.rank - 1]!.value ?? 0) : 1);

/** Ops the warp router computes besides elementwise ones with a scalar formula. */
const ROUTER_WARP_OPS = ["cast", "constant", "reduce_sum", "take_along", "group_topk"];

/**
 * Whether the router a warp per token (CUDA, backends/kernels/gen/router-warp.ts) takes a step: one
 * group_topk over E scores, E a multiple of 32 (E / 32 consecutive experts a lane) with whole lanes
 * a group (a power of two of them), k <= 32 (one kept expert a lane), every value a row of E, k or 1
 * values a token, the ops elementwise with a scalar formula or one of ROUTER_WARP_OPS.
 */
export function routerWarpTakes(ops: readonly Op[]): boolean {
  const gts = ops.filter((o) => o.opName === "group_topk");
  if (gts.length !== 1) return false;
  const a = attrsOf(OPS.group_topk, gts[0]!);
  const E = gts[0]!.operands[0]!.type.shape[1]?.value;
  if (E === undefined || E % 32 !== 0 || a.k > 32 || E % a.groups !== 0) return false;
  const lanes = E / a.groups / (E / 32);
  if (!Number.isInteger(lanes) || lanes < 1 || (lanes & (lanes - 1)) !== 0) return false;
  if (!ops.every((o) => ROUTER_WARP_OPS.includes(o.opName) || (hasTrait(o.opName, "elementwise") && getOp(o.opName)?.scalar))) return false;
  const fits = (v: Value) => [E, a.k, 1].includes(rowWidth(v));
  return ops.every((o) => o.results.every(fits) && o.operands.every(fits));
}
