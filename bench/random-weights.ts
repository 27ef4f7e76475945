/**
 * Random weights for a benchmark (`bench:wgsl --random-weights`), made in memory from the model's
 * declared weights instead of read from a checkpoint: a model of Ling-mini-2.0's full size (about
 * 32 GB of bf16) would otherwise be written to disk by `lingc init` and read back, minutes of a GPU
 * machine's time for numbers that do not change a kernel's speed. The values are deterministic for
 * a seed; norms' weights are near 1, the rest uniform in about +-0.03 (as an initialized model's), so
 * that activations stay finite through the layers. bf16 weights are made as their 16-bit patterns
 * (BoundWeights.bf16Bits): no f32 copy is made for a target that stores bf16.
 */
import type { BoundWeights } from "../backends/backend";
import { Tensor } from "../ir/tensor";
import type { TensorType } from "../ir/types";

/** 4,096 values each for norms and the rest, as f32 and as bf16 bit patterns (rounded to bf16 first). */
function tables(seed: number): { f32: Float32Array[]; bits: Uint16Array[] } {
  let s = seed >>> 0 || 1;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const f32 = [0, 1].map((norm) => Float32Array.from({ length: 4096 }, () => (norm ? 1 + (next() - 0.5) * 0.1 : (next() - 0.5) * 0.06)));
  const bits = f32.map((t) => Uint16Array.from(new Uint32Array(t.buffer), (b) => b >>> 16));
  // The f32 tables hold the bf16 values exactly (a bf16 weight read through `get` is bf16).
  f32.forEach((t, k) => t.set(new Float32Array(Uint32Array.from(bits[k]!, (b) => b << 16).buffer)));
  return { f32, bits };
}

/** Weights of any declared type: `get` fills floats (and integers) from the tables, `bf16Bits` bf16 patterns. */
export function randomWeights(seed = 1): BoundWeights {
  const { f32, bits } = tables(seed);
  const pick = (name: string) => (/norm/.test(name) ? 1 : 0);
  const count = (type: TensorType) => type.shape.reduce((a, d) => a * d.value!, 1);
  /**
   * The table again and again, each 4,096-value block rotated by a hash of its index and the salt:
   * block copies (a fraction of a nanosecond a value; a value-by-value walk took 6 ns, minutes for
   * Ling-mini's 16 G values).
   */
  const fill = <T extends Float32Array | Uint16Array>(out: T, table: T, salt: number): T => {
    const n = table.length;
    for (let at = 0, block = 0; at < out.length; at += n, block++) {
      const r = (Math.imul(block + salt, 2654435761) >>> 20) % n;
      const head = table.subarray(r, Math.min(n, r + out.length - at));
      out.set(head, at);
      if (head.length < n && at + head.length < out.length) out.set(table.subarray(0, Math.min(r, out.length - at - head.length)), at + head.length);
    }
    return out;
  };
  let salt = 0;
  return {
    get(name: string, type: TensorType): Tensor {
      if (type.quant) throw new Error(`random weights: ${name} is a quantized weight (quantize at load instead: --quantize)`);
      return new Tensor(type.dtype, type.shape.map((d) => d.value!), fill(new Float32Array(count(type)), f32[pick(name)]!, (salt += 7919)));
    },
    bf16Bits(name: string, type: TensorType): Uint16Array {
      return fill(new Uint16Array(count(type)), bits[pick(name)]!, (salt += 7919));
    },
  };
}
