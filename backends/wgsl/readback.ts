/**
 * A run's read-backs: what the host reads (outputs not kept, their scale grids, observed values,
 * the pass's timestamps, the next token ids) is copied into one staging buffer by the run's own
 * submission and mapped once; then each value is cut out of it. A grown cache is copied with its
 * buffer's rows and packed; an output read at its last position only is copied as B ranges.
 */
import type { ArtifactSlot } from "./artifact";
import type { GpuTensor, HostTensor } from "./host";

interface Read {
  t: GpuTensor;
  /** Byte offset in the staging buffer. */
  offset: number;
  count: number;
  /** The element ranges of the buffer copied, in order. */
  ranges: [number, number][];
  /** Only the last position of each of the B rows was copied. */
  last: boolean;
  /** The slot of its scale grid (read with it). */
  scales?: number;
}

/** Outer and inner extents of a shape around one axis (a row-major [outer, shape[axis], inner] view). */
export function around(shape: readonly number[], axis: number): { outer: number; inner: number } {
  return { outer: shape.slice(0, axis).reduce((a, b) => a * b, 1), inner: shape.slice(axis + 1).reduce((a, b) => a * b, 1) };
}

export class Readback {
  private readonly reads = new Map<number, Read>();
  private readonly raws: { buffer: GPUBuffer; offset: number; bytes: number }[] = [];
  /** Bytes staged so far. */
  bytes = 0;

  constructor(
    /** Slot id's value on the GPU (its storage's buffer). */
    private readonly onGpu: (id: number) => GpuTensor,
    private readonly storage: (id: number) => ArtifactSlot,
    private readonly nameOf: (id: number) => string,
  ) {}

  /** Reads slot id's value back (with its scale grid); `last`: its last position only ([B, S, ...] -> [B, 1, ...]). */
  stage(id: number, last = false): void {
    if (this.reads.has(id)) return;
    const s = this.storage(id);
    if (s.bf16Pairs) throw new Error(`${this.nameOf(id)} is a packed bf16 weight, which the host does not read back`);
    const t = this.onGpu(id);
    let ranges: [number, number][];
    if (last && t.shape.length >= 2 && !t.room && !s.scales) {
      const [B, S] = t.shape as [number, number];
      const inner = t.shape.slice(2).reduce((x, y) => x * y, 1);
      ranges = Array.from({ length: B }, (_, b) => [(b * S + S - 1) * inner, inner]);
    } else {
      last = false;
      const { outer, inner } = t.room ? around(t.shape, t.room.axis) : { outer: 1, inner: 1 };
      ranges = [[0, t.room ? outer * t.room.rows * inner : t.shape.reduce((x, y) => x * y, 1)]];
    }
    const count = ranges.reduce((n, r) => n + r[1], 0);
    this.reads.set(id, { t, offset: this.bytes, count, ranges, last, ...(s.scales ? { scales: s.scales.slot } : {}) });
    this.bytes += count * 4;
    if (s.scales) this.stage(s.scales.slot);
  }

  /** Stages `bytes` of a buffer as they are (8-byte aligned: timestamps); returns their offset. */
  raw(buffer: GPUBuffer, bytes: number): number {
    const offset = Math.ceil(this.bytes / 8) * 8;
    this.raws.push({ buffer, offset, bytes });
    this.bytes = offset + bytes;
    return offset;
  }

  /** Records the copies into the staging buffer. */
  copy(encoder: GPUCommandEncoder, staging: GPUBuffer): void {
    for (const { t, offset, ranges } of this.reads.values()) {
      let at = offset;
      for (const [from, n] of ranges) {
        if (n > 0) encoder.copyBufferToBuffer(t.buffer, from * 4, staging, at, n * 4);
        at += n * 4;
      }
    }
    for (const r of this.raws) encoder.copyBufferToBuffer(r.buffer, 0, staging, r.offset, r.bytes);
  }

  /** Slot id's value from the mapped staging data (a copy the run owns): a view into it, not a copy. */
  read(data: ArrayBuffer, id: number): HostTensor {
    const { t, offset, count, last, scales } = this.reads.get(id)!;
    let values: Float32Array | Int32Array = t.dtype === "f32" ? new Float32Array(data, offset, count) : new Int32Array(data, offset, count);
    if (last) return { dtype: t.dtype, shape: [t.shape[0]!, 1, ...t.shape.slice(2)], data: values } as HostTensor;
    if (t.room) {
      const { outer, inner } = around(t.shape, t.room.axis);
      const len = t.shape[t.room.axis]!;
      const packed = t.dtype === "f32" ? new Float32Array(outer * len * inner) : new Int32Array(outer * len * inner);
      for (let o = 0; o < outer; o++) packed.set(values.subarray(o * t.room.rows * inner, o * t.room.rows * inner + len * inner), o * len * inner);
      values = packed;
    }
    if (scales === undefined) return { dtype: t.dtype, shape: t.shape, data: values } as HostTensor;
    return { dtype: t.dtype, shape: t.shape, data: values, scales: this.read(data, scales).data as Float32Array } as HostTensor;
  }
}
