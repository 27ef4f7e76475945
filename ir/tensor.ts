/**
 * Concrete tensors for the interpreter and for checkpoint I/O. Float dtypes are held in a
 * Float32Array (values of narrower formats are already rounded to them); integer and bool dtypes
 * in a Float64Array, which holds every id and index exactly.
 */
import { isFloat, type DType } from "./dtype";
import { roundArrayInPlace } from "./numerics";
import type { Scaled } from "./quant";
import { scalesFollowRows } from "./types";

export type TensorData = Float32Array | Float64Array;

export function allocData(dtype: DType, n: number): TensorData {
  return isFloat(dtype) ? new Float32Array(n) : new Float64Array(n);
}

export class Tensor {
  constructor(
    readonly dtype: DType,
    readonly shape: readonly number[],
    readonly data: TensorData,
    /** An fp8 tensor with a scale layout: its scales (its real values are data x scale). */
    readonly scaled?: Scaled,
  ) {
    const n = numelOf(shape);
    if (data.length !== n) throw new Error(`tensor data has ${data.length} elements, shape [${shape}] needs ${n}`);
  }

  static zeros(dtype: DType, shape: readonly number[]): Tensor {
    return new Tensor(dtype, shape, allocData(dtype, numelOf(shape)));
  }

  /** Builds a tensor from plain numbers, rounding them to the dtype. */
  static from(dtype: DType, shape: readonly number[], values: ArrayLike<number>): Tensor {
    const data = allocData(dtype, values.length);
    for (let i = 0; i < values.length; i++) data[i] = values[i]!;
    if (data instanceof Float32Array) roundArrayInPlace(data, dtype);
    return new Tensor(dtype, shape, data);
  }

  get numel(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  reshaped(shape: readonly number[]): Tensor {
    if (!this.scaled) return new Tensor(this.dtype, shape, this.data);
    // Scales per row or per 1 x G group of the last axis stay with their elements while the leading
    // axes merge or split (the grid, row-major, is the same array); block scales over rows do not.
    const keeps = scalesFollowRows(this.scaled.layout.granularity) && shape[shape.length - 1] === this.shape[this.shape.length - 1];
    if (!keeps) throw new Error("a tensor with block scales over rows, or reshaped along its last axis, cannot keep its scales");
    return new Tensor(this.dtype, shape, this.data, this.scaled);
  }

  /** The `length` positions from `start` along `axis` (a copy). */
  narrowed(axis: number, start: number, length: number): Tensor {
    if (this.scaled) throw new Error("a tensor with block scales cannot be narrowed");
    const n = this.shape[axis]!;
    if (start < 0 || length < 0 || start + length > n) throw new Error(`narrowing positions ${start}..${start + length} of an axis of ${n}`);
    const inner = numelOf(this.shape.slice(axis + 1));
    const outer = numelOf(this.shape.slice(0, axis));
    const out = allocData(this.dtype, outer * length * inner);
    for (let o = 0; o < outer; o++) out.set(this.data.subarray((o * n + start) * inner, (o * n + start + length) * inner), o * length * inner);
    return new Tensor(this.dtype, this.shape.map((d, i) => (i === axis ? length : d)), out);
  }
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function shapeToString(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
