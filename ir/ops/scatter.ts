/**
 * scatter_add: the sum of values into positions picked by integer indices along one axis (ONNX's
 * ScatterElements with reduction "add"). The derivative of a gather (embedding, take_along, the
 * experts' token gather) is a scatter_add of the cotangent.
 */
import { isFloat, isInt } from "../dtype";
import { OpError } from "../errors";
import { Tensor, allocData, numelOf, stridesOf } from "../tensor";
import { TensorType } from "../types";
import { attr, defineOp, expectDtype, normAxis } from "./registry";

export const SCATTER_ADD = defineOp({
  name: "scatter_add",
  summary: "zeros with `axis` of length `size`, then out[.., idx[..], ..] += src[..] along that axis (idx has src's shape), summed in double",
  operands: ["src", "idx"],
  attrs: {
    axis: { kind: "int", doc: "the axis the indices pick along" },
    size: { kind: "dim", doc: "the result's length along the axis" },
  },
  infer([src, idx], attrs) {
    expectDtype(src!, isFloat, "scatter_add src must be floats");
    expectDtype(idx!, isInt, "scatter_add idx must be integers");
    if (!src!.shape.every((d, i) => idx!.shape[i] && d.equals(idx!.shape[i]!)) || src!.rank !== idx!.rank) throw new OpError(`scatter_add: idx ${idx} must have the shape of src ${src}`);
    const axis = normAxis(attr.int(attrs, "axis"), src!.rank);
    const shape = [...src!.shape];
    shape[axis] = attr.dim(attrs, "size");
    return [new TensorType(src!.dtype, shape)];
  },
  interpret([src, idx], attrs, ctx) {
    const shape = ctx.resultShapes[0]!;
    const axis = normAxis(attr.int(attrs, "axis"), shape.length);
    const acc = new Float64Array(numelOf(shape));
    const outStrides = stridesOf(shape);
    const inShape = src!.shape;
    const inStrides = stridesOf(inShape);
    for (let k = 0; k < src!.numel; k++) {
      let off = 0;
      for (let a = 0; a < inShape.length; a++) {
        const c = Math.floor(k / inStrides[a]!) % inShape[a]!;
        const dest = a === axis ? idx!.data[k]! : c;
        if (a === axis && !(dest >= 0 && dest < shape[axis]!)) throw new OpError(`scatter_add: index ${dest} is outside [0, ${shape[axis]})`);
        off += dest * outStrides[a]!;
      }
      acc[off] += src!.data[k]!;
    }
    const out = allocData(src!.dtype, acc.length);
    out.set(acc);
    return [new Tensor(src!.dtype, shape, out)];
  },
  // d src = ct gathered back at the same indices (take_along: rank 2, the last axis, the one
  // take_along's own derivative scatters over).
  vjp: (b, [src, idx], _outs, [ct], attrs) => {
    if (src!.type.rank !== 2 || normAxis(attr.int(attrs, "axis"), 2) !== 1) throw new OpError(`scatter_add: its derivative is take_along, which gathers along the last axis of rank-2 tensors (this one: ${src!.type}, axis ${attr.int(attrs, "axis")})`);
    return [b.op1("take_along", [ct!, idx!]), undefined];
  },
});
