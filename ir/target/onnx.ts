/** ONNX target profiles: the opset the emitted model imports. */
export interface OnnxProfile {
  kind: "onnx";
  name: string;
  opset: number;
}

/** Opset 23 (RMSNormalization), what ONNX Runtime 1.30 runs. */
export const ONNX_23: OnnxProfile = { kind: "onnx", name: "onnx-23", opset: 23 };
