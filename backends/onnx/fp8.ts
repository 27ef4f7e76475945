/**
 * FP8 in ONNX, standard ops only. A scaled IR value is two ONNX tensors: its FLOAT8E4M3FN (or E5M2)
 * data and its f32 scale grid (LowerCtx.scaleOf). What ONNX Runtime 1.30's CPU provider runs, found
 * by trying: Cast between float and float8 (round to nearest even, saturating), Transpose,
 * Identity, blocked DequantizeLinear and QuantizeLinear (opset 21+, one blocked axis); it refuses
 * Concat, Gather and Slice on float8 tensors (and Reshape below opset 21). So:
 *   - dequantization is DequantizeLinear blocked along the last axis; a 128x128 block grid first
 *     repeats each scale row over its 128 rows (Expand, Reshape), since ONNX blocks one axis only;
 *   - quantization reshapes the float input into blocks, takes each block's amax (ReduceMax of Abs),
 *     computes the recipe's scale in f32 exactly as ir/quant.ts does, divides (or multiplies) and
 *     Casts to float8: bit for bit the interpreter's result;
 *   - stacked expert weights are dequantized per expert before they are concatenated (the expert
 *     Loop gathers from the stack, and Gather takes no float8).
 */
import type { DType } from "../../ir/dtype";
import { fp8Max } from "../../ir/quant";
import type { QuantLayout, TensorType } from "../../ir/types";
import { castNode } from "./cast";
import type { LowerCtx } from "./lower";
import type { GraphBuilder, NodeMeta } from "./graph";

/** The blocked-quantization opset: DequantizeLinear's block_size. */
export const FP8_MIN_OPSET = 21;

function blockOf(layout: QuantLayout): { rows: number; cols: number } {
  const g = layout.granularity;
  if (g.kind !== "block") throw new Error(`ONNX FP8: only block scale layouts are lowered (got ${g.kind})`);
  return { rows: g.rows, cols: g.cols };
}

/**
 * The real values of scaled data `q` (type `t`, scales `s`) as `to`: DequantizeLinear along the
 * last axis, its scales repeated over each block's rows when blocks span several rows.
 */
export function dequantizeTo(g: GraphBuilder, q: string, s: string, t: TensorType, to: DType, meta: NodeMeta): string {
  const { rows, cols } = blockOf(t.quant!);
  const rank = t.rank;
  let scales = s;
  if (rows > 1) {
    const R = t.shape[rank - 2]!.value;
    if (R === undefined) throw new Error(`ONNX FP8: a ${rows}-row block grid needs a numeric row count (${t})`);
    const grid = Math.ceil(R / rows);
    const lead = t.shape.slice(0, rank - 2).map((d) => d.value!);
    const cg = Math.ceil(t.shape[rank - 1]!.value! / cols);
    const expanded = g.one("Expand", [g.one("Unsqueeze", [s, g.i64([rank - 1])], {}, meta), g.i64([...lead, grid, rows, cg])], {}, meta);
    scales = g.one("Reshape", [expanded, g.i64([...lead, grid * rows, cg])], {}, meta);
    if (grid * rows !== R) scales = g.one("Slice", [scales, g.i64([0]), g.i64([R]), g.i64([rank - 2])], {}, meta);
  }
  const real = g.one("DequantizeLinear", [q, scales], { axis: rank - 1, block_size: cols }, meta);
  return to === "f32" ? real : g.one("Cast", [real], castNode(to), meta);
}

/**
 * The shape that splits the last two axes of a tensor into blocks, [..., R/rows, rows, C/cols, cols],
 * as ONNX Reshape takes it: 0 copies an input dimension (the leading, possibly symbolic, ones). R and
 * C are the (padded) row and column counts, whole blocks.
 */
function blocked(rank: number, R: number | undefined, C: number, rows: number, cols: number): number[] {
  const lead = Array.from({ length: rank - 2 }, () => 0);
  // rows == 1 keeps the row axis as it is (0: copy); a block of several rows needs the row count.
  return rows === 1 ? [...lead, 0, 1, C / cols, cols] : [...lead, R! / rows, rows, C / cols, cols];
}

/**
 * quantize: blocks of x by the op's recipe into float8 data and f32 scales (bit-exact with ir/quant.ts).
 * A last block that is partial (a width or, for blocks of several rows, a row count that is not whole
 * blocks) is padded with zeros, which change no block's amax, and the codes sliced back after: the
 * interpreter's blocks, whose amax is over the elements present.
 */
export function quantizeLowering(c: LowerCtx): void {
  const g = c.g;
  const m = c.meta;
  const xt = c.inTypes[0]!;
  const out = c.outTypes[0]!;
  const { rows, cols } = blockOf(out.quant!);
  const rank = xt.rank;
  const R = xt.shape[rank - 2]!.value;
  const C = xt.shape[rank - 1]!.value;
  if (C === undefined || (rows > 1 && R === undefined)) {
    c.fail(`ONNX quantizes ${rows}x${cols} blocks of a numeric ${rows > 1 ? "row and column count" : "column count"}, not ${xt}`);
  }
  const recipe = String(c.op.attrs["recipe"]);
  const fmax = fp8Max(out.dtype);
  const f32 = (v: number) => g.scalar(v, "f32");
  let x = xt.dtype === "f32" ? c.ins[0]! : g.one("Cast", [c.ins[0]!], castNode("f32"), m);
  const Cp = Math.ceil(C / cols) * cols;
  const Rp = rows > 1 ? Math.ceil(R! / rows) * rows : R;
  const padded = Cp !== C || Rp !== R;
  if (padded) {
    const ends = Array.from({ length: rank }, (_, a) => (a === rank - 1 ? Cp - C : a === rank - 2 && rows > 1 ? Rp! - R! : 0));
    x = g.one("Pad", [x, g.i64([...Array.from({ length: rank }, () => 0), ...ends]), f32(0)], { mode: "constant" }, m);
  }
  const xb = g.one("Reshape", [x, g.i64(blocked(rank, Rp, Cp, rows, cols))], {}, m);
  const axes = g.i64([rank - 1, rank + 1]);
  const amax = g.one("ReduceMax", [g.one("Abs", [xb], {}, m), axes], { keepdims: 1 }, m);
  let scaled: string;
  let s: string;
  if (recipe === "transformers") {
    // torch: scale = reciprocal(amax) * fmax, 1 where amax is 0; q = clamp(x * scale); s = 1 / scale.
    const positive = g.one("Greater", [amax, f32(0)], {}, m);
    const scale = g.one("Where", [positive, g.one("Mul", [g.one("Reciprocal", [amax], {}, m), f32(fmax)], {}, m), f32(1)], {}, m);
    scaled = g.one("Clip", [g.one("Mul", [xb, scale], {}, m), f32(-fmax), f32(fmax)], {}, m);
    s = g.one("Reciprocal", [scale], {}, m);
  } else if (recipe === "dynamic" || recipe === "ling") {
    s = g.one("Div", [g.one("Max", [amax, f32(recipe === "dynamic" ? 1e-12 : 1e-4)], {}, m), f32(fmax)], {}, m);
    scaled = g.one("Div", [xb, s], {}, m);
  } else {
    c.fail(`the ${recipe} recipe is not lowered to ONNX (dynamic, transformers and ling are)`);
  }
  let real: string;
  if (padded) {
    // Back to the padded shape (leading axes, and a one-row block's row axis, copied), then the padding sliced off.
    const lead = Array.from({ length: rank - 2 }, () => 0);
    const flat = g.one("Reshape", [scaled, g.i64([...lead, rows > 1 ? Rp! : 0, Cp])], {}, m);
    real = rows > 1 ? g.one("Slice", [flat, g.i64([0, 0]), g.i64([R!, C]), g.i64([rank - 2, rank - 1])], {}, m) : g.one("Slice", [flat, g.i64([0]), g.i64([C]), g.i64([rank - 1])], {}, m);
  } else {
    real = g.one("Reshape", [scaled, g.shape(xt.shape)], {}, m);
  }
  g.node("Cast", [real], [c.out[0]!], castNode(out.dtype), m);
  const scales = g.one("Squeeze", [s, axes], {}, m);
  c.setScale(c.out[0]!, scales);
}

/** dequantize: the real values, in the op's dtype. */
export function dequantizeLowering(c: LowerCtx): void {
  const s = c.scaleOf(c.ins[0]!);
  const real = s ? dequantizeTo(c.g, c.ins[0]!, s, c.inTypes[0]!, c.outTypes[0]!.dtype, c.meta) : c.ins[0]!;
  c.g.node("Identity", [real], [c.out[0]!], {}, c.meta);
}

/**
 * The operands of a (grouped) linear as it computes, and the dtype it computes in. With a scaled
 * operand: in f32, its real values (fp8 data times scales, no bf16 values in general) dequantized to
 * f32 and the other float operands widened, the result rounded once to its dtype after (as the
 * interpreter computes it); without one: as they are, in the result's dtype.
 */
export function realOperands(c: LowerCtx): { ins: string[]; dt: DType } {
  const out = c.outTypes[0]!.dtype;
  if (!c.inTypes.some((t) => t.quant)) return { ins: c.ins, dt: out };
  const ins = c.ins.map((name, i) => {
    const t = c.inTypes[i]!;
    const s = t.quant ? c.scaleOf(name) : undefined;
    // A scaled operand without a scale name is already real values in f32 (a stacked expert weight,
    // dequantized per expert as it is loaded).
    if (s) return dequantizeTo(c.g, name, s, t, "f32", c.meta);
    return t.dtype === "bf16" || t.dtype === "f16" ? c.g.one("Cast", [name], castNode("f32"), c.meta) : name;
  });
  return { ins, dt: "f32" };
}
