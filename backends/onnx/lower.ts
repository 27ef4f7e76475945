/**
 * One ONNX lowering per IR op (DESIGN principle 1: adding an op adds one entry here). Standard
 * ai.onnx ops only. Choices:
 * - rms_norm uses RMSNormalization (opset 23) for f32, where ONNX Runtime matches HF exactly; for
 *   narrower dtypes it is composed so the result is cast to the activation dtype before the weight
 *   multiply, as HF does (RMSNormalization multiplies in fp32 and casts last).
 * - rope has no lowering here: the pipeline decomposes it (the op table's decomposition into slice,
 *   mul, sub, add and concat, every step the HF arithmetic) before the emitter sees it.
 * - attention is composed (MatMul, Where-mask, fp32 Softmax, MatMul): the opset-23 Attention op aligns
 *   its causal mask to the top left, which is wrong for a decode step that appends to a KV cache
 *   (queries sit at the end of the key range); the composed mask is aligned to the end.
 * - FP8: scaled values are float8 data plus an f32 scale grid; see fp8.ts for what ONNX Runtime runs.
 * - MoE: routing is exact (TopK breaks ties toward the lower index, as torch does); the experts run
 *   in a Loop over only the experts that received tokens, each gathering its own weight slice, so
 *   the work depends on the routed tokens and not on the expert count.
 */
import type { Dim } from "../../ir/dim";
import type { DType } from "../../ir/dtype";
import type { Op } from "../../ir/module";
import type { TensorType } from "../../ir/types";
import { GraphBuilder, tensorProto, type NodeMeta } from "./graph";
import { valueInfo, type TensorProto } from "./proto";
import { Dim as DimClass } from "../../ir/dim";
import { Tensor } from "../../ir/tensor";
import { castNode } from "./cast";
import { scaleGridDims } from "../../ir/quant";
import { getOp } from "../../ir/ops";
import { fromScalarFormula } from "./scalar";
import { dequantizeLowering, quantizeLowering, realOperands } from "./fp8";

export interface LowerCtx {
  g: GraphBuilder;
  op: Op;
  ins: string[];
  inTypes: TensorType[];
  outTypes: TensorType[];
  out: string[];
  meta: NodeMeta;
  opset: number;
  /** Per-model memo (for example the active-expert list of a dispatch, shared by its grouped_linears). */
  memo: Map<string, string[]>;
  /** The scale grid of scaled fp8 data (fp8.ts), by the data's name. */
  scaleOf(name: string): string | undefined;
  setScale(name: string, scale: string): void;
  fail(msg: string): never;
}

export type Lowering = (c: LowerCtx) => void;

const INT64_MAX = Number.MAX_SAFE_INTEGER;

function direct(onnxOp: string): Lowering {
  return (c) => void c.g.node(onnxOp, c.ins, c.out, {}, c.meta);
}

/** Output 0 from `src`, computed in `dt`: cast to the result's dtype where that differs. */
function emitAs(c: LowerCtx, src: string, dt: DType): void {
  const out = c.outTypes[0]!.dtype;
  if (dt !== out) c.g.node("Cast", [src], [c.out[0]!], castAttrs(out), c.meta);
  else if (!c.g.renameOutput(src, c.out[0]!)) emitTo(c, 0, src);
}

/** Writes `src` to the required output name (an Identity unless it already is that name). */
function emitTo(c: LowerCtx, i: number, src: string): void {
  c.g.node("Identity", [src], [c.out[i]!], {}, c.meta);
}

function attrs(c: LowerCtx): Record<string, unknown> {
  return c.op.attrs as Record<string, unknown>;
}

/** The `value` attribute of ConstantOfShape: a one-element tensor of the fill value. */
function fill(dtype: DType, shape: number[], values: number[]): TensorProto {
  return tensorProto("value", Tensor.from(dtype, shape, values));
}

const castTo = (c: LowerCtx, x: string, from: DType, to: DType): string => (from === to ? x : c.g.one("Cast", [x], castAttrs(to), c.meta));
const castAttrs = castNode;

function reduce(onnxOp: string): Lowering {
  return (c) => {
    const a = attrs(c);
    c.g.node(onnxOp, [c.ins[0]!, c.g.i64(a["axes"] as number[])], c.out, { keepdims: a["keepdims"] ? 1 : 0 }, c.meta);
  };
}

function rmsNorm(c: LowerCtx): void {
  const eps = attrs(c)["eps"] as number;
  const dt = c.inTypes[0]!.dtype;
  const [x, w] = c.ins as [string, string];
  if (dt === "f32" && c.opset >= 23) {
    c.g.node("RMSNormalization", [x, w], c.out, { axis: -1, epsilon: { float: eps }, stash_type: 1 }, c.meta);
    return;
  }
  const xf = castTo(c, x, dt, "f32");
  const ms = c.g.one("ReduceMean", [c.g.one("Mul", [xf, xf], {}, c.meta), c.g.i64([-1])], { keepdims: 1 }, c.meta);
  const inv = c.g.one("Reciprocal", [c.g.one("Sqrt", [c.g.one("Add", [ms, c.g.scalar(eps, "f32")], {}, c.meta)], {}, c.meta)], {}, c.meta);
  const y = castTo(c, c.g.one("Mul", [xf, inv], {}, c.meta), "f32", dt);
  c.g.node("Mul", [y, w], c.out, {}, c.meta);
}

function slice(c: LowerCtx, x: string, axis: number, start: number, end: number): string {
  return c.g.one("Slice", [x, c.g.i64([start]), c.g.i64([end]), c.g.i64([axis])], {}, c.meta);
}

function attention(c: LowerCtx): void {
  const a = attrs(c);
  const [q, k, v] = c.ins as [string, string, string];
  const [qt, kt, vt] = c.inTypes as [TensorType, TensorType, TensorType];
  const dt = qt.dtype;
  const [B, nh, S] = qt.shape as [Dim, Dim, Dim];
  const nkv = kt.shape[1]!;
  const T = kt.shape[2]!;
  const rep = nh.value! / nkv.value!;
  // GQA: repeat each KV head rep times (query head h reads KV head h / rep).
  const repeat = (t: string, tt: TensorType) => {
    if (rep === 1) return t;
    const d = tt.shape[3]!;
    const expanded = c.g.one("Expand", [c.g.one("Unsqueeze", [t, c.g.i64([2])], {}, c.meta), c.g.shape([B, nkv, DimClass.of(rep), T, d])], {}, c.meta);
    return c.g.one("Reshape", [expanded, c.g.shape([B, nh, T, d])], {}, c.meta);
  };
  const kr = repeat(k, kt);
  const vr = repeat(v, vt);
  let scores = c.g.one("MatMul", [q, c.g.one("Transpose", [kr], { perm: [0, 1, 3, 2] }, c.meta)], {}, c.meta);
  scores = c.g.one("Mul", [scores, c.g.scalar(a["scale"] as number, dt)], {}, c.meta);
  let s32 = castTo(c, scores, dt, "f32");
  if (a["causal"]) {
    // Query i sits at position T-S+i and sees keys 0..T-S+i.
    const one = c.g.constant(Tensor.from("i64", [], [1]));
    const Ts = c.g.dimScalar(T);
    const qpos = c.g.one("Unsqueeze", [c.g.one("Range", [c.g.one("Sub", [Ts, c.g.dimScalar(S)], {}, c.meta), Ts, one], {}, c.meta), c.g.i64([1])], {}, c.meta);
    const kpos = c.g.one("Range", [c.g.constant(Tensor.from("i64", [], [0])), Ts, one], {}, c.meta);
    const allowed = c.g.one("LessOrEqual", [kpos, qpos], {}, c.meta);
    s32 = c.g.one("Where", [allowed, s32, c.g.scalar(-Infinity, "f32")], {}, c.meta);
  }
  const probs = castTo(c, c.g.one("Softmax", [s32], { axis: -1 }, c.meta), "f32", dt);
  c.g.node("MatMul", [probs, vr], c.out, {}, c.meta);
}

function groupTopk(c: LowerCtx): void {
  const a = attrs(c);
  const k = a["k"] as number;
  const G = a["groups"] as number;
  const tg = a["topk_groups"] as number;
  const gs = a["group_score_topk"] as number;
  const s = c.ins[0]!;
  const E = c.inTypes[0]!.shape[1]!.value!;
  let masked = s;
  if (G > 1) {
    const grouped = c.g.one("Reshape", [s, c.g.i64([-1, G, E / G])], {}, c.meta);
    const [best] = c.g.node("TopK", [grouped, c.g.i64([gs])], 2, { axis: -1, largest: 1, sorted: 1 }, c.meta);
    const groupScore = c.g.one("ReduceSum", [best!, c.g.i64([-1])], { keepdims: 0 }, c.meta);
    const [, keepIdx] = c.g.node("TopK", [groupScore, c.g.i64([tg])], 2, { axis: -1, largest: 1, sorted: 1 }, c.meta);
    const zeros = c.g.one("ConstantOfShape", [c.g.one("Shape", [groupScore], {}, c.meta)], { value: fill("f32", [1], [0]) }, c.meta);
    const ones = c.g.one("ConstantOfShape", [c.g.one("Shape", [keepIdx!], {}, c.meta)], { value: fill("f32", [1], [1]) }, c.meta);
    const groupMask = c.g.one("ScatterElements", [zeros, keepIdx!, ones], { axis: 1 }, c.meta);
    const expertMask = c.g.one(
      "Reshape",
      [c.g.one("Expand", [c.g.one("Unsqueeze", [groupMask, c.g.i64([-1])], {}, c.meta), c.g.one("Shape", [grouped], {}, c.meta)], {}, c.meta), c.g.one("Shape", [s], {}, c.meta)],
      {},
      c.meta,
    );
    const keep = c.g.one("Greater", [expertMask, c.g.scalar(0.5, "f32")], {}, c.meta);
    masked = c.g.one("Where", [keep, s, c.g.scalar(-Infinity, c.inTypes[0]!.dtype)], {}, c.meta);
  }
  const [, idx] = c.g.node("TopK", [masked, c.g.i64([k])], 2, { axis: -1, largest: 1, sorted: 1 }, c.meta);
  c.g.node("Cast", [idx!], c.out, { to: 6 }, c.meta);
}

function moeDispatch(c: LowerCtx): void {
  const E = attrs(c)["num_experts"] as number;
  const flat = c.g.one("Cast", [c.g.one("Reshape", [c.ins[0]!, c.g.i64([-1])], {}, c.meta)], { to: 7 }, c.meta);
  // A stable sort by expert: TopK of the negated ids keeps equal ids in index order.
  const neg = c.g.one("Neg", [c.g.one("Cast", [flat], { to: 1 }, c.meta)], {}, c.meta);
  const n = c.g.one("Shape", [flat], {}, c.meta);
  const [, order] = c.g.node("TopK", [neg, n], 2, { axis: 0, largest: 1, sorted: 1 }, c.meta);
  c.g.node("Cast", [order!], [c.out[0]!], { to: 6 }, c.meta);
  // row_of[pair] = the row that pair landed in (the inverse permutation).
  const positions = c.g.one("Range", [c.g.constant(Tensor.from("i64", [], [0])), c.g.one("Squeeze", [n, c.g.i64([0])], {}, c.meta), c.g.constant(Tensor.from("i64", [], [1]))], {}, c.meta);
  const rowOf = c.g.one("ScatterElements", [c.g.one("ConstantOfShape", [n], { value: fill("i64", [1], [0]) }, c.meta), order!, positions], { axis: 0 }, c.meta);
  c.g.node("Cast", [rowOf], [c.out[2]!], { to: 6 }, c.meta);
  const ones = c.g.one("ConstantOfShape", [n], { value: fill("i64", [1], [1]) }, c.meta);
  const counts = c.g.one("ScatterElements", [c.g.constant(Tensor.zeros("i64", [E])), flat, ones], { axis: 0, reduction: "add" }, c.meta);
  const ends = c.g.one("CumSum", [counts, c.g.constant(Tensor.from("i64", [], [0]))], {}, c.meta);
  c.g.node("Cast", [c.g.one("Concat", [c.g.i64([0]), ends], { axis: 0 }, c.meta)], [c.out[1]!], { to: 6 }, c.meta);
}

function moePermute(c: LowerCtx): void {
  const k = attrs(c)["k"] as number;
  const rows = c.g.one("Div", [c.g.one("Cast", [c.ins[1]!], { to: 7 }, c.meta), c.g.i64([k], [])], {}, c.meta);
  const t = c.inTypes[0]!;
  if (!t.quant) return void c.g.node("Gather", [c.ins[0]!, rows], c.out, { axis: 0 }, c.meta);
  // Scaled codes (ONNX Runtime gathers no float8): through f32, where every code is exact, and
  // their scale rows with them (per-row or 1 x G layouts: a grid row per row).
  const codes = c.g.one("Gather", [c.g.one("Cast", [c.ins[0]!], { to: 1 }, c.meta), rows], { axis: 0 }, c.meta);
  c.g.node("Cast", [codes], c.out, castNode(t.dtype), c.meta);
  const scales = c.scaleOf(c.ins[0]!) ?? c.fail(`moe_permute: no scale grid for ${c.ins[0]}`);
  c.setScale(c.out[0]!, c.g.one("Gather", [scales, rows], { axis: 0 }, c.meta));
}

/** The experts that received rows (int64 [A]) and the offsets as int64, shared by a dispatch's grouped_linears. */
function activeExperts(c: LowerCtx, offsets: string): [string, string] {
  const hit = c.memo.get(`active:${offsets}`);
  if (hit) return hit as [string, string];
  const off = c.g.one("Cast", [offsets], { to: 7 }, c.meta);
  const counts = c.g.one("Sub", [slice(c, off, 0, 1, INT64_MAX), slice(c, off, 0, 0, -1)], {}, c.meta);
  const active = c.g.one("Reshape", [c.g.one("NonZero", [counts], {}, c.meta), c.g.i64([-1])], {}, c.meta);
  const r: [string, string] = [active, off];
  c.memo.set(`active:${offsets}`, r);
  return r;
}

function groupedLinear(c: LowerCtx): void {
  const { ins, dt } = realOperands(c);
  const [x, w, offsets] = ins as [string, string, string];
  const [active, off] = activeExperts(c, offsets);
  const O = c.inTypes[1]!.shape[1]!.value!;
  const N = c.outTypes[0]!.shape[0]!;
  const trips = c.g.one("Squeeze", [c.g.one("Shape", [active], {}, c.meta), c.g.i64([0])], {}, c.meta);
  const y0 = c.g.one("ConstantOfShape", [c.g.shape([N, c.inTypes[1]!.shape[1]!])], { value: fill(dt, [1], [0]) }, c.meta);

  // Loop body: expert e = active[i]; its rows lo..hi of x times w[e]^T, written into rows lo..hi of Y.
  const body = new GraphBuilder(c.g.names, c.g);
  const meta = { ...c.meta, scope: `${c.meta.scope ?? ""}/expert` };
  const i = body.names.fresh("expert_iter");
  const cond = body.names.fresh("cond");
  const yIn = body.names.fresh("Y");
  body.inputs.push(valueInfo(i, "i64", []), valueInfo(cond, "bool", []), valueInfo(yIn, dt, undefined));
  const e = body.one("Gather", [active, i], { axis: 0 }, meta);
  const lo = body.one("Gather", [off, e], { axis: 0 }, meta);
  const hi = body.one("Gather", [off, body.one("Add", [e, body.constant(Tensor.from("i64", [], [1]))], {}, meta)], { axis: 0 }, meta);
  const u = (s: string) => body.one("Unsqueeze", [s, body.i64([0])], {}, meta);
  const rows = body.one("Slice", [x, u(lo), u(hi), body.i64([0])], {}, meta);
  const we = body.one("Gather", [w, e], { axis: 0 }, meta);
  const y = body.one("MatMul", [rows, body.one("Transpose", [we], { perm: [1, 0] }, meta)], {}, meta);
  const idx = body.one("Unsqueeze", [body.one("Range", [lo, hi, body.constant(Tensor.from("i64", [], [1]))], {}, meta), body.i64([-1])], {}, meta);
  const condOut = body.one("Identity", [cond], {}, meta);
  const yOut = body.one("ScatterND", [yIn, idx, y], {}, meta);
  body.outputs.push(valueInfo(condOut, "bool", []), valueInfo(yOut, dt, [typeof N.value === "number" ? N.value : N.toString(), O]));
  const t = c.g.constant(Tensor.from("bool", [], [1]), "true");
  emitAs(c, c.g.one("Loop", [trips, t, y0], { body: body.graph(`${c.meta.scope ?? "moe"}/experts_loop`) }, c.meta), dt);
}

/** grouped_outer: a Loop over the experts whose scan output is a[lo:hi]^T b[lo:hi] per expert ([E, A, B]). */
function groupedOuter(c: LowerCtx): void {
  const [a, b, offsets] = c.ins as [string, string, string];
  const dt = c.outTypes[0]!.dtype;
  const [E, A, B] = c.outTypes[0]!.shape.map((d) => d.value!) as [number, number, number];
  const off = c.g.one("Cast", [offsets], { to: 7 }, c.meta);
  const body = new GraphBuilder(c.g.names, c.g);
  const meta = { ...c.meta, scope: `${c.meta.scope ?? ""}/expert` };
  const i = body.names.fresh("expert_iter");
  const cond = body.names.fresh("cond");
  body.inputs.push(valueInfo(i, "i64", []), valueInfo(cond, "bool", []));
  const lo = body.one("Gather", [off, i], { axis: 0 }, meta);
  const hi = body.one("Gather", [off, body.one("Add", [i, body.constant(Tensor.from("i64", [], [1]))], {}, meta)], { axis: 0 }, meta);
  const u = (x: string) => body.one("Unsqueeze", [x, body.i64([0])], {}, meta);
  const rows = (x: string) => body.one("Slice", [x, u(lo), u(hi), body.i64([0])], {}, meta);
  const outer = body.one("MatMul", [body.one("Transpose", [rows(a)], { perm: [1, 0] }, meta), rows(b)], {}, meta);
  const condOut = body.one("Identity", [cond], {}, meta);
  body.outputs.push(valueInfo(condOut, "bool", []), valueInfo(outer, dt, [A, B]));
  const t = c.g.constant(Tensor.from("bool", [], [1]), "true");
  c.g.node("Loop", [c.g.constant(Tensor.from("i64", [], [E])), t], c.out, { body: body.graph(`${c.meta.scope ?? "moe"}/outer_loop`) }, c.meta);
}

function moeCombine(c: LowerCtx): void {
  const [y, rowOf, weights] = c.ins as [string, string, string];
  const dt = c.outTypes[0]!.dtype;
  const K = c.inTypes[2]!.shape[1]!.value!;
  const H = c.inTypes[0]!.shape[1]!.value!;
  const pairs = c.g.one("Reshape", [c.g.one("Gather", [y, rowOf], { axis: 0 }, c.meta), c.g.i64([-1, K, H])], {}, c.meta);
  const weighted = c.g.one("Mul", [castTo(c, pairs, dt, "f32"), c.g.one("Unsqueeze", [weights, c.g.i64([-1])], {}, c.meta)], {}, c.meta);
  const summed = c.g.one("ReduceSum", [weighted, c.g.i64([1])], { keepdims: 0 }, c.meta);
  emitAs(c, summed, "f32");
}

/**
 * Lowerings by op name. Elementwise ops are not listed unless ONNX has a native op that is better
 * than their formula (Sigmoid); the others lower from the op table's scalar formula (scalar.ts).
 */
export const LOWERINGS: Record<string, Lowering> = {
  sigmoid: direct("Sigmoid"),
  stop_gradient: direct("Identity"),
  transfer: direct("Identity"),
  // x * sigmoid(x), rounded once (in f32 for a bf16 or f16 result), as the interpreter rounds it.
  silu: (c) => {
    const dt = c.outTypes[0]!.dtype;
    const x = castTo(c, c.ins[0]!, dt, "f32");
    emitAs(c, c.g.one("Mul", [x, c.g.one("Sigmoid", [x], {}, c.meta)], {}, c.meta), "f32");
  },
  reduce_sum: reduce("ReduceSum"),
  reduce_mean: reduce("ReduceMean"),
  reduce_max: reduce("ReduceMax"),
  reshape: (c) => {
    c.g.node("Reshape", [c.ins[0]!, c.g.shape(c.outTypes[0]!.shape)], c.out, {}, c.meta);
    // Scaled codes: their grid (per-row or 1 x G, the last axis kept) takes the leading axes' new shape.
    const q = c.outTypes[0]!.quant;
    if (!q) return;
    const scales = c.scaleOf(c.ins[0]!) ?? c.fail(`reshape: no scale grid for ${c.ins[0]}`);
    c.setScale(c.out[0]!, c.g.one("Reshape", [scales, c.g.shape(scaleGridDims(c.outTypes[0]!.shape, q.granularity))], {}, c.meta));
  },
  broadcast_to: (c) => void c.g.node("Expand", [c.ins[0]!, c.g.shape(c.outTypes[0]!.shape)], c.out, {}, c.meta),
  transpose: (c) => void c.g.node("Transpose", c.ins, c.out, { perm: [...(attrs(c)["perm"] as number[])] }, c.meta),
  slice: (c) => {
    const a = attrs(c);
    emitTo(c, 0, slice(c, c.ins[0]!, a["axis"] as number, a["start"] as number, a["end"] as number));
  },
  take_last: (c) => {
    const a = attrs(c);
    emitTo(c, 0, slice(c, c.ins[0]!, a["axis"] as number, -(a["count"] as number), INT64_MAX));
  },
  concat: (c) => void c.g.node("Concat", c.ins, c.out, { axis: attrs(c)["axis"] as number }, c.meta),
  // ONNX keeps a graph's inputs and outputs apart, so the decode graph cannot grow past.* in place:
  // present.* is a new tensor, and Concat copies the whole cache into it each step (docs/ARCHITECTURE.md).
  cache_append: (c) => void c.g.node("Concat", c.ins, c.out, { axis: attrs(c)["axis"] as number }, c.meta),
  shift: (c) => {
    const a = attrs(c);
    const axis = a["axis"] as number;
    const offset = a["offset"] as number;
    const x = c.ins[0]!;
    if (offset === 0) return emitTo(c, 0, x);
    const k = Math.abs(offset);
    const dt = c.inTypes[0]!.dtype;
    const filler = (part: string) => c.g.one("ConstantOfShape", [c.g.one("Shape", [part], {}, c.meta)], { value: fill(dt, [1], [a["fill"] as number]) }, c.meta);
    if (offset < 0) c.g.node("Concat", [slice(c, x, axis, k, INT64_MAX), filler(slice(c, x, axis, 0, k))], c.out, { axis }, c.meta);
    else c.g.node("Concat", [filler(slice(c, x, axis, -k, INT64_MAX)), slice(c, x, axis, 0, -k)], c.out, { axis }, c.meta);
  },
  iota: (c) => {
    const a = attrs(c);
    const start = a["start"] as Dim;
    const len = c.outTypes[0]!.shape[0]!;
    const r = c.g.one("Range", [c.g.dimScalar(start), c.g.dimScalar(start.add(len)), c.g.constant(Tensor.from("i64", [], [1]))], {}, c.meta);
    const dt = a["dtype"] as DType;
    if (dt === "i64") emitTo(c, 0, r);
    else c.g.node("Cast", [r], c.out, castAttrs(dt), c.meta);
  },
  constant: (c) => {
    const a = attrs(c);
    const t = c.outTypes[0]!;
    const shape = t.shape.map((d) => d.value!);
    const values = a["values"] as number[];
    const n = shape.reduce((x, y) => x * y, 1);
    emitTo(c, 0, c.g.constant(Tensor.from(t.dtype, shape, values.length === 1 ? new Array(n).fill(values[0]) : values)));
  },
  embedding: (c) => void c.g.node("Gather", c.ins, c.out, { axis: 0 }, c.meta),
  linear: (c) => {
    const { ins, dt } = realOperands(c);
    const y = c.g.one("MatMul", [ins[0]!, c.g.one("Transpose", [ins[1]!], { perm: [1, 0] }, c.meta)], {}, c.meta);
    emitAs(c, y, dt);
  },
  quantize: quantizeLowering,
  dequantize: dequantizeLowering,
  matmul: direct("MatMul"),
  rms_norm: rmsNorm,
  attention,
  group_topk: groupTopk,
  take_along: (c) => void c.g.node("GatherElements", c.ins, c.out, { axis: 1 }, c.meta),
  // Zeros of the result's shape, then ScatterElements with reduction "add" (opset 16+).
  scatter_add(c) {
    const t = c.outTypes[0]!;
    const zeros = c.g.one("ConstantOfShape", [c.g.shape(t.shape)], { value: fill(t.dtype, [1], [0]) }, c.meta);
    c.g.node("ScatterElements", [zeros, c.ins[1]!, c.ins[0]!], c.out, { axis: attrs(c)["axis"] as number, reduction: "add" }, c.meta);
  },
  moe_dispatch: moeDispatch,
  moe_permute: moePermute,
  grouped_linear: groupedLinear,
  grouped_outer: groupedOuter,
  moe_combine: moeCombine,
};

/** The ops whose lowering above multiplies matrices (MatMul), which ONNX does not define on fp8 operands. */
export const LOWERED_THROUGH_MATMUL: ReadonlySet<string> = new Set(["linear", "matmul", "grouped_linear", "attention"]);

/** How an op lowers to ONNX: its entry in LOWERINGS, else its scalar formula; undefined when neither. */
export function onnxLowering(opName: string): Lowering | undefined {
  const direct = LOWERINGS[opName];
  if (direct) return direct;
  const scalar = getOp(opName)?.scalar;
  return scalar ? fromScalarFormula(scalar) : undefined;
}
