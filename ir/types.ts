/**
 * Tensor types: element type, shape (numbers and symbols) and, for FP8 tensors, the scale layout.
 * Quantization lives in the type (DESIGN principle 7): an FP8 weight with 128x128 block scales is
 * `f8e4m3fn[4096, 8192] scale(f32, block(128, 128))`, and passes and backends read the layout
 * from here, never from a side table.
 */
import { Dim, product, type DimLike, dim } from "./dim";
import { byteSize, isFp8, type DType } from "./dtype";

export type Granularity =
  | { kind: "tensor" } // one scale for the whole tensor
  | { kind: "row" } // one scale per row (all but the last axis)
  | { kind: "block"; rows: number; cols: number }; // one scale per rows x cols tile of the last two axes (1x128, 128x128)

/**
 * Whether each row has scales of its own (per row, or 1 x G groups of the last axis): they move with
 * their row in a gather, and stay with their elements while the leading axes merge or split.
 */
export function scalesFollowRows(g: Granularity): boolean {
  return g.kind === "row" || (g.kind === "block" && g.rows === 1);
}

export interface QuantLayout {
  scaleDtype: DType;
  granularity: Granularity;
}

export function granularityToString(g: Granularity): string {
  return g.kind === "block" ? `block(${g.rows}, ${g.cols})` : g.kind;
}

/** The text form of a scale layout: `scale(f32, block(128, 128))`; "" for none. */
export function quantToString(q: QuantLayout | undefined): string {
  return q ? `scale(${q.scaleDtype}, ${granularityToString(q.granularity)})` : "";
}

export class TensorType {
  constructor(
    readonly dtype: DType,
    readonly shape: readonly Dim[],
    readonly quant?: QuantLayout,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  numel(): Dim {
    return product(this.shape);
  }

  /** The same element type and scale layout over another shape. */
  withShape(shape: readonly Dim[]): TensorType {
    return new TensorType(this.dtype, shape, this.quant);
  }

  /**
   * Another element type over the same shape. The scale layout stays while the new dtype is an FP8
   * format (e4m3 <-> e5m2 keeps its scales); a wider dtype holds real values and carries none.
   */
  withDtype(dtype: DType): TensorType {
    return new TensorType(dtype, this.shape, isFp8(dtype) ? this.quant : undefined);
  }

  /** The same tensor with another scale layout (undefined: unscaled). */
  withQuant(quant: QuantLayout | undefined): TensorType {
    return new TensorType(this.dtype, this.shape, quant);
  }

  equals(o: TensorType): boolean {
    return this.toString() === o.toString();
  }

  /** Whether both carry the same scale layout (or both none). */
  sameQuant(o: TensorType): boolean {
    return quantToString(this.quant) === quantToString(o.quant);
  }

  /** Bytes of the elements (scales excluded) for concrete symbol values. */
  bytes(bindings: ReadonlyMap<string, number>): number {
    return this.numel().eval(bindings) * byteSize(this.dtype);
  }

  toString(): string {
    const s = `${this.dtype}[${this.shape.map((d) => d.toString()).join(", ")}]`;
    return this.quant ? `${s} ${quantToString(this.quant)}` : s;
  }
}

/** Convenience constructor: `tensor("f32", ["B", "S", 64])`. */
export function tensor(dtype: DType, shape: readonly DimLike[], quant?: QuantLayout): TensorType {
  return new TensorType(dtype, shape.map(dim), quant);
}

/** Why a type is malformed, or undefined when it is fine. */
export function typeProblem(t: TensorType): string | undefined {
  if (!t.quant) return undefined;
  if (!isFp8(t.dtype)) return `only fp8 tensors carry a scale layout, not ${t.dtype}`;
  const g = t.quant.granularity;
  if (t.quant.scaleDtype !== "f32" && t.quant.scaleDtype !== "bf16" && t.quant.scaleDtype !== "u8") {
    return `scale dtype must be f32, bf16 or u8 (UE8M0), not ${t.quant.scaleDtype}`;
  }
  if (g.kind === "block") {
    if (t.rank < 2) return `block scales need a tensor of rank >= 2, got rank ${t.rank}`;
    if (!(g.rows > 0 && g.cols > 0)) return `block size must be positive, got ${g.rows}x${g.cols}`;
  }
  if (g.kind === "row" && t.rank < 1) return "row scales need a tensor of rank >= 1";
  return undefined;
}
