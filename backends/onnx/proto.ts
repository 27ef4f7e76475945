/**
 * Small helpers over onnx-proto's message types (the ONNX 1.10 schema; newer element types such as
 * BFLOAT16 = 16 and FLOAT8E4M3FN = 17 are written as plain numbers, which the wire format accepts).
 */
import pkg from "onnx-proto";
import type { DType } from "../../ir/dtype";
import { LingcError } from "../../ir/errors";

export const { onnx } = pkg;
export type NodeProto = pkg.onnx.INodeProto;
export type GraphProto = pkg.onnx.IGraphProto;
export type TensorProto = pkg.onnx.ITensorProto;
export type ValueInfoProto = pkg.onnx.IValueInfoProto;
export type AttributeProto = pkg.onnx.IAttributeProto;
export type ModelProto = pkg.onnx.IModelProto;

const ELEM: Record<DType, number> = {
  f32: 1,
  u8: 2,
  i32: 6,
  i64: 7,
  bool: 9,
  f16: 10,
  bf16: 16,
  f8e4m3fn: 17,
  f8e5m2: 19,
};

export function elemType(dt: DType): number {
  return ELEM[dt];
}

export function dtypeOfElem(code: number): DType {
  const hit = (Object.keys(ELEM) as DType[]).find((k) => ELEM[k] === code);
  if (!hit) throw new LingcError(`ONNX element type ${code} has no lingc dtype`);
  return hit;
}

/** A dim of a value info: a number, or a symbolic name (dim_param). */
export type OnnxDim = number | string;

export function valueInfo(name: string, dt: DType, dims: readonly OnnxDim[] | undefined): ValueInfoProto {
  const tensorType: pkg.onnx.TypeProto.ITensor = { elemType: elemType(dt) };
  if (dims) tensorType.shape = { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) };
  return { name, type: { tensorType } };
}

export type AttrValue = number | string | number[] | GraphProto | TensorProto | { float: number } | { floats: number[] };

/** Builds an attribute: integers become INT/INTS, `{float}`/`{floats}` FLOAT/FLOATS, graphs GRAPH, tensors TENSOR. */
export function attribute(name: string, v: AttrValue): AttributeProto {
  if (typeof v === "number") return { name, type: 2, i: v };
  if (typeof v === "string") return { name, type: 3, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: 7, ints: v };
  if ("float" in v && typeof v.float === "number") return { name, type: 1, f: v.float };
  if ("floats" in v && Array.isArray(v.floats)) return { name, type: 6, floats: v.floats };
  if ("node" in v || "input" in v || "output" in v) return { name, type: 5, g: v as GraphProto };
  return { name, type: 4, t: v as TensorProto };
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(onnx.ModelProto.fromObject(model)).finish();
}

export function decodeModel(bytes: Uint8Array): pkg.onnx.ModelProto {
  return onnx.ModelProto.decode(bytes);
}
