/** Conversions between lingc tensors and the WebGPU host's (f32 and i32 only; ids must fit in i32). */
import { LingcError } from "../../ir/errors";
import { Tensor } from "../../ir/tensor";
import type { HostTensor } from "./host";

export function toHost(t: Tensor): HostTensor {
  if (t.dtype === "i64" || t.dtype === "i32" || t.dtype === "bool" || t.dtype === "u8") {
    for (let k = 0; k < t.numel; k++) if (Math.abs(t.data[k]!) > 2 ** 31 - 1) throw new LingcError(`value ${t.data[k]} does not fit the GPU's 32-bit integers`);
    return { dtype: "i32", shape: [...t.shape], data: Int32Array.from(t.data) };
  }
  return { dtype: "f32", shape: [...t.shape], data: Float32Array.from(t.data) };
}

/**
 * A host tensor as a lingc tensor of `dtype`; a scaled fp8 one keeps its scales (blocks of `block`
 * rows x cols). Float data becomes the tensor's as it is (a run's read-back is its own: no copy of a
 * decode step's logits); integers are widened to the Float64Array lingc holds them in.
 */
export function fromHost(t: HostTensor, dtype: Tensor["dtype"], block?: readonly [number, number]): Tensor {
  const data = t.data instanceof Float32Array ? t.data : Float64Array.from(t.data);
  if (!t.scales || !block) return new Tensor(dtype, t.shape, data);
  return new Tensor(dtype, t.shape, data, { layout: { scaleDtype: "f32", granularity: { kind: "block", rows: block[0], cols: block[1] } }, scales: t.scales });
}
