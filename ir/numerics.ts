/**
 * Bit-exact narrow float formats: rounding a value to bf16, f16, f8e4m3fn or f8e5m2 the way
 * hardware casts do (round to nearest, ties to even), and the bit encodings used by checkpoints.
 * f8e4m3fn has no infinity: casts saturate at ±448 (the SATFINITE behaviour of CUDA's converters
 * and of DeepSeek/Ling FP8 recipes). The other formats overflow to infinity as IEEE casts do.
 */
import type { DType } from "./dtype";

interface Format {
  mant: number; // stored mantissa bits
  expBits: number;
  bias: number;
  maxFinite: number;
  saturate: boolean; // true: overflow clamps to ±maxFinite; false: overflows to ±Infinity
  maxExp: number; // floor(log2(maxFinite)): the largest binade's exponent
}

const format = (f: Omit<Format, "maxExp">): Format => ({ ...f, maxExp: Math.floor(Math.log2(f.maxFinite)) });

const FORMATS: Partial<Record<DType, Format>> = {
  bf16: format({ mant: 7, expBits: 8, bias: 127, maxFinite: 3.3895313892515355e38, saturate: false }),
  f16: format({ mant: 10, expBits: 5, bias: 15, maxFinite: 65504, saturate: false }),
  f8e4m3fn: format({ mant: 3, expBits: 4, bias: 7, maxFinite: 448, saturate: true }),
  f8e5m2: format({ mant: 2, expBits: 5, bias: 15, maxFinite: 57344, saturate: false }),
};

/** 2^52: adding and subtracting it rounds a non-negative double below 2^52 to an integer, ties to even. */
const RNE = 4503599627370496;

/** 2^k for the exponents narrow formats need (k in [-POW2_BIAS, POW2_BIAS]): a lookup, not Math.pow. */
const POW2_BIAS = 160;
const POW2 = Float64Array.from({ length: 2 * POW2_BIAS + 1 }, (_, i) => 2 ** (i - POW2_BIAS));
const pow2 = (k: number): number => POW2[k + POW2_BIAS]!;

const expScratch = new Float64Array(1);
const expWords = new Uint32Array(expScratch.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // the high word's index (little-endian: 1)

/** floor(log2(a)) for a finite a > 0, exact: the exponent field of the double (Math.log2 can be off by one, and is slow). */
function exponentOf(a: number): number {
  expScratch[0] = a;
  const e = ((expWords[HI]! >>> 20) & 0x7ff) - 1023;
  if (e > -1023) return e;
  // A subnormal double: far below every narrow format's range, so any close answer rounds the same.
  return Math.floor(Math.log2(a));
}

function roundToFormat(x: number, f: Format): number {
  if (Number.isNaN(x)) return NaN;
  if (!Number.isFinite(x)) return f.saturate ? Math.sign(x) * f.maxFinite : x;
  if (x === 0) return x;
  const a = Math.abs(x);
  const ea = exponentOf(a);
  // At or past twice the largest binade nothing rounds back into range.
  const overflow = (x < 0 ? -1 : 1) * (f.saturate ? f.maxFinite : Infinity);
  if (ea > f.maxExp) return overflow;
  // The spacing of the format's values at a's exponent (at least the subnormals'): a power of two,
  // so scaling by it is exact, and a / step < 2^(mant+1) rounds to an integer through RNE.
  const e = Math.max(ea, 1 - f.bias) - f.mant;
  const y = (a * pow2(-e) + RNE - RNE) * pow2(e);
  if (y > f.maxFinite) return overflow;
  return x < 0 ? -y : y;
}

/**
 * The spacing of `dtype`'s values at magnitude |x| (a unit in the last place; the subnormals' spacing
 * below the smallest normal); undefined for a dtype that is not a narrow float.
 */
export function ulpOf(x: number, dtype: DType): number | undefined {
  const f = FORMATS[dtype];
  if (!f) return undefined;
  const a = Math.abs(x);
  return pow2(Math.max(a > 0 && Number.isFinite(a) ? exponentOf(a) : 1 - f.bias, 1 - f.bias) - f.mant);
}

/** Rounds one value to `dtype`; f32 rounds through Math.fround; other dtypes are returned unchanged. */
export function roundTo(x: number, dtype: DType): number {
  if (dtype === "f32") return Math.fround(x);
  if (dtype === "bf16") {
    // A value that is an f32 (a product of two bf16 values is; a sum in doubles often is not) rounds by its bits.
    f32Scratch[0] = x;
    if (f32Scratch[0] === x) {
      const b = u32Scratch[0]!;
      u32Scratch[0] = (b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000;
      return f32Scratch[0]!;
    }
  }
  const f = FORMATS[dtype];
  return f ? roundToFormat(x, f) : x;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Rounds every element of an f32 array to `dtype` in place (a no-op for f32). */
export function roundArrayInPlace(a: Float32Array, dtype: DType): void {
  if (dtype === "f32") return;
  if (dtype === "bf16") {
    const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
    for (let i = 0; i < u.length; i++) {
      const bits = u[i]!;
      if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) continue; // NaN
      u[i] = ((bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000) >>> 0;
    }
    return;
  }
  const f = FORMATS[dtype];
  if (!f) return;
  for (let i = 0; i < a.length; i++) a[i] = roundToFormat(a[i]!, f);
}

/** A narrow format's value for each of its codes (f16: 65,536, fp8: 256), built on first use. */
const decodeTables: Partial<Record<DType, Float64Array>> = {};

function decodeTable(dtype: DType, f: Format): Float64Array {
  const hit = decodeTables[dtype];
  if (hit) return hit;
  const total = 1 + f.expBits + f.mant;
  const expMax = (1 << f.expBits) - 1;
  const table = new Float64Array(1 << total);
  for (let bits = 0; bits < table.length; bits++) {
    const sign = (bits >> (total - 1)) & 1 ? -1 : 1;
    const exp = (bits >> f.mant) & expMax;
    const man = bits & ((1 << f.mant) - 1);
    // e4m3fn has no infinity, and one NaN code a sign (all ones); the IEEE-like formats' top exponent
    // is infinity (mantissa 0) or NaN.
    const top = exp === expMax && (dtype !== "f8e4m3fn" || man === (1 << f.mant) - 1);
    if (top) table[bits] = dtype !== "f8e4m3fn" && man === 0 ? sign * Infinity : NaN;
    else if (exp === 0) table[bits] = sign * man * pow2(1 - f.bias - f.mant);
    else table[bits] = sign * (1 + man / (1 << f.mant)) * pow2(exp - f.bias);
  }
  decodeTables[dtype] = table;
  return table;
}

/** Decodes the bit pattern of a narrow float (bf16, f16, f8e4m3fn, f8e5m2) to its value. */
export function decodeBits(bits: number, dtype: DType): number {
  if (dtype === "bf16") {
    u32Scratch[0] = bits << 16;
    return f32Scratch[0]!;
  }
  const f = FORMATS[dtype];
  if (!f) throw new Error(`decodeBits: ${dtype} is not a narrow float`);
  return decodeTable(dtype, f)[bits & ((1 << (1 + f.expBits + f.mant)) - 1)]!;
}

/** Encodes a value (rounded first) as the bit pattern of a narrow float. */
export function encodeBits(x: number, dtype: DType): number {
  if (dtype === "bf16") {
    f32Scratch[0] = roundTo(x, "bf16");
    return u32Scratch[0]! >>> 16;
  }
  const f = FORMATS[dtype];
  if (!f) throw new Error(`encodeBits: ${dtype} is not a narrow float`);
  const total = 1 + f.expBits + f.mant;
  const y = roundToFormat(x, f);
  const expMax = (1 << f.expBits) - 1;
  if (Number.isNaN(y)) {
    return dtype === "f8e4m3fn" ? 0x7f : (expMax << f.mant) | (1 << (f.mant - 1));
  }
  const signBit = y < 0 || Object.is(y, -0) ? 1 << (total - 1) : 0;
  const a = Math.abs(y);
  if (a === Infinity) return signBit | (expMax << f.mant);
  if (a === 0) return signBit;
  const e = exponentOf(a);
  const emin = 1 - f.bias;
  if (e < emin) return signBit | Math.round(a * pow2(f.mant - emin));
  const man = Math.round((a * pow2(-e) - 1) * (1 << f.mant));
  return signBit | ((e + f.bias) << f.mant) | man;
}
