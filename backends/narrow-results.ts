/**
 * Runtimes that hold bf16 and f16 values in f32 (ONNX Runtime's CPU provider through the bf16
 * emulation, the CUDA program's output file) hand such results back as f32 tensors whose values are
 * the narrow ones exactly; a runner gives them back typed as the graph declares them, as the
 * interpreter and the WebGPU host do.
 */
import type { DType } from "../ir/dtype";
import { Tensor } from "../ir/tensor";

export function typedAsDeclared(t: Tensor, dt: DType): Tensor {
  return (dt === "bf16" || dt === "f16") && t.dtype === "f32" ? new Tensor(dt, t.shape, t.data) : t;
}
