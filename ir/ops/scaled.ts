/**
 * What the matmul-like ops (linear, grouped_linear) do with FP8 operands: an fp8 weight carries its
 * scale layout in its type (`f8e4m3fn[O, I] scale(f32, block(128, 128))`), and the input is either
 * a wider float (weight-only, W8A16) or itself fp8 with scales (W8A8, 1x128 groups). The product is
 * of the dequantized values (q x s, per the layouts), accumulated in high precision; its dtype is
 * the input's, or the `out` attribute's (required when the input is fp8).
 */
import { isFloat, isFp8, type DType } from "../dtype";
import { OpError } from "../errors";
import { dequantizeValues } from "../quant";
import type { Tensor } from "../tensor";
import type { TensorType } from "../types";
import type { Attrs } from "../module";
import type { AttrSpec } from "./registry";

/** The optional result dtype attribute of the matmul-like ops. */
export const OUT_DTYPE_ATTR: AttrSpec = { kind: "dtype", doc: "the result dtype (default: the input's; required for an fp8 input)", optional: true };

/** The result dtype of x times w, checking their dtypes and scale layouts. */
export function productDtype(opName: string, x: TensorType, w: TensorType, attrs: Attrs): DType {
  const out = attrs["out"] as DType | undefined;
  if (out !== undefined && (!isFloat(out) || isFp8(out))) throw new OpError(`${opName}: out must be a float dtype wider than fp8, got ${out}`);
  if (!w.quant && !x.quant) {
    // Plain tensors (fp8 ones included: their values are the elements themselves).
    if (x.dtype !== w.dtype) throw new OpError(`${opName} input and weight must have the same dtype: ${x} vs ${w} (insert a cast)`);
    if (!isFloat(x.dtype)) throw new OpError(`${opName} needs float tensors, got ${x}`);
    return out ?? x.dtype;
  }
  if (!w.quant) throw new OpError(`${opName}: the scaled fp8 input ${x} needs a scaled fp8 weight, got ${w}`);
  if (isFp8(x.dtype)) {
    if (!x.quant) throw new OpError(`${opName}: the fp8 input ${x} has no scale layout`);
    if (out === undefined) throw new OpError(`${opName}: with an fp8 input, the result dtype must be given (out = f32 or bf16)`);
    return out;
  }
  if (!isFloat(x.dtype)) throw new OpError(`${opName} needs float tensors, got ${x}`);
  return out ?? x.dtype;
}

const dequantized = new WeakMap<Tensor, Float64Array>();

/** A tensor's real values: fp8 data times its scales (computed once per tensor), or the data itself. */
export function realValues(t: Tensor): ArrayLike<number> {
  if (!t.scaled) return t.data;
  let v = dequantized.get(t);
  if (!v) dequantized.set(t, (v = dequantizeValues(t.data, t.shape, t.scaled)));
  return v;
}
