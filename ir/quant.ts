/**
 * FP8 with scales, as the interpreter computes it and as checkpoints store it: the scale grid of a
 * layout, quantization by the recipes lingc knows (each bit-exact with the code it follows), and
 * dequantization. A scaled value's real elements are q * s, s being the scale of the element's
 * block: the layout's scale is always the factor that dequantizes (HF's `weight_scale_inv`).
 *
 * Recipes (scales per block of the last two axes; amax = the block's largest |x|; fmax = 448 for
 * e4m3, 57344 for e5m2; every step in f32 as the reference code computes it):
 *   - "dynamic" (activations, transformers' and DeepSeek's per-token 1x128 groups):
 *       s = max(amax, 1e-12) / fmax;  q = fp8(x / s)
 *   - "transformers" (weights, transformers' Fp8Quantize):
 *       scale = fmax / amax (1 where amax is 0);  q = fp8(clamp(x * scale, -fmax, fmax));  s = 1 / scale
 *     where torch computes fmax / amax as (1 / amax) * fmax, both steps rounded to f32
 *   - "ling" (weights, Ling's converter, LING2.md 2.8): s = max(amax, 1e-4) / fmax;  q = fp8(x / s)
 *   - "ling-ue8m0": the same with s rounded up to a power of two (a UE8M0 scale; Ling's converter does
 *     this for attention.dense and the experts' gate and up projections)
 * fp8() rounds to nearest even; e4m3 saturates at 448.
 *
 * Scale dtypes (what a checkpoint stores; the value is always the dequantizing factor): f32, bf16,
 * and u8 read as UE8M0 (OCP MX: an 8-bit biased exponent, the scale 2^(e - 127); 255 is NaN).
 */
import { Dim } from "./dim";
import type { DType } from "./dtype";
import { LingcError } from "./errors";
import { roundTo } from "./numerics";
import type { Op } from "./module";
import type { Granularity, QuantLayout, TensorType } from "./types";

export const QUANT_RECIPES = ["dynamic", "transformers", "ling", "ling-ue8m0"] as const;
export type QuantRecipe = (typeof QUANT_RECIPES)[number];

/** The largest finite value of an fp8 format. */
export function fp8Max(dtype: DType): number {
  if (dtype === "f8e4m3fn") return 448;
  if (dtype === "f8e5m2") return 57344;
  throw new LingcError(`${dtype} is not an fp8 format`);
}

/** Scale values as stored in `dtype` (u8: UE8M0 exponents) to the factors they stand for, in f32. */
export function scaleFactors(stored: ArrayLike<number>, dtype: DType): Float32Array {
  if (dtype !== "u8") return Float32Array.from(stored);
  return Float32Array.from(stored, (e) => (e === 255 ? NaN : 2 ** (e - 127)));
}

/** The scale grid's dims of a tensor of `shape` (symbolic dims allowed where a block spans one row or the whole axis). */
export function scaleGridDims(shape: readonly Dim[], g: Granularity): Dim[] {
  if (g.kind === "tensor") return [];
  if (g.kind === "row") return shape.slice(0, -1);
  const r = shape.length;
  const R = shape[r - 2]!;
  const C = shape[r - 1]!;
  const blocks = (d: Dim, n: number) => {
    if (n === 1) return d;
    if (!d.isConst()) throw new LingcError(`a ${n}-wide scale block over the symbolic axis ${d} (the grid's size would not be a dimension)`);
    return Dim.of(Math.ceil(d.value! / n));
  };
  return [...shape.slice(0, r - 2), blocks(R, g.rows), blocks(C, g.cols)];
}

/** The shape of the scale grid of a tensor of `shape` under `g`. */
export function scaleGridShape(shape: readonly number[], g: Granularity): number[] {
  return scaleGridDims(shape.map((d) => Dim.of(d)), g).map((d) => d.value!);
}

/** For each element (row-major), the index of its scale in the grid. */
export function scaleIndexOf(shape: readonly number[], g: Granularity): (flat: number) => number {
  if (g.kind === "tensor") return () => 0;
  const C = shape[shape.length - 1] ?? 1;
  if (g.kind === "row") return (flat) => Math.floor(flat / C);
  const R = shape[shape.length - 2]!;
  const gr = Math.ceil(R / g.rows);
  const gc = Math.ceil(C / g.cols);
  return (flat) => {
    const c = flat % C;
    const rest = Math.floor(flat / C);
    const row = rest % R;
    const lead = Math.floor(rest / R);
    return (lead * gr + Math.floor(row / g.rows)) * gc + Math.floor(c / g.cols);
  };
}

/** Scaled fp8 data: the elements (already fp8 values), the layout, and the scale grid (f32 values). */
export interface Scaled {
  layout: QuantLayout;
  scales: Float32Array;
}

/** The real values q * s of scaled data, in double precision. */
export function dequantizeValues(q: ArrayLike<number>, shape: readonly number[], sc: Scaled): Float64Array {
  const at = scaleIndexOf(shape, sc.layout.granularity);
  const out = new Float64Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = q[i]! * sc.scales[at(i)]!;
  return out;
}

/** Quantizes `x` (row-major, `shape`) to `to` by `recipe` with scales per `g`; returns the fp8 values and the scales. */
export function quantizeValues(x: ArrayLike<number>, shape: readonly number[], to: DType, g: Granularity, recipe: QuantRecipe): { q: Float32Array; scales: Float32Array } {
  const fmax = fp8Max(to);
  const at = scaleIndexOf(shape, g);
  const n = scaleGridShape(shape, g).reduce((a, b) => a * b, 1);
  const amax = new Float32Array(n);
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]!);
    const k = at(i);
    if (a > amax[k]! || Number.isNaN(a)) amax[k] = a;
  }
  const f = Math.fround;
  const scales = new Float32Array(n);
  // What multiplies (transformers) or divides (the others) each element on its way to fp8.
  const factor = new Float32Array(n);
  for (let k = 0; k < n; k++) {
    const a = amax[k]!;
    if (recipe === "transformers") {
      // torch evaluates `fmax / amax` (a number over a tensor) as reciprocal(amax) * fmax.
      const scale = a > 0 ? f(f(1 / a) * fmax) : 1;
      factor[k] = scale;
      scales[k] = f(1 / scale);
    } else {
      let s = f(Math.max(a, f(recipe === "dynamic" ? 1e-12 : 1e-4)) / fmax);
      if (recipe === "ling-ue8m0") s = pow2AtLeast(s);
      factor[k] = s;
      scales[k] = s;
    }
  }
  const q = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const k = at(i);
    const v = recipe === "transformers" ? Math.min(fmax, Math.max(-fmax, f(x[i]! * factor[k]!))) : f(x[i]! / factor[k]!);
    q[i] = roundTo(v, to);
  }
  return { q, scales };
}

/** The smallest power of two >= s (s > 0), exact (Math.log2 may be off by one near powers of two). */
function pow2AtLeast(s: number): number {
  let e = Math.ceil(Math.log2(s));
  if (2 ** (e - 1) >= s) e--;
  else if (2 ** e < s) e++;
  return 2 ** e;
}

/** Whether a type is e4m3 with f32 scales in blocks of rows x cols (1 x 128 activation groups, 128 x 128 weight blocks). */
export function isE4m3Blocks(t: TensorType, rows: number, cols: number): boolean {
  const q = t.quant;
  return t.dtype === "f8e4m3fn" && q?.scaleDtype === "f32" && q.granularity.kind === "block" && q.granularity.rows === rows && q.granularity.cols === cols;
}

/** Whether an op is a token gather (moe_permute) of scaled fp8 codes, moving their scale rows with them (the fp8 pass's gather=before). */
export function gathersScaledCodes(op: Op): boolean {
  return op.opName === "moe_permute" && op.operands[0]!.type.quant !== undefined;
}
