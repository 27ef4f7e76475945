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

export function fromHost(t: HostTensor, dtype: Tensor["dtype"]): Tensor {
  return new Tensor(dtype, t.shape, t.data instanceof Float32Array ? Float32Array.from(t.data) : Float64Array.from(t.data));
}
