/**
 * Shape and data-movement ops (reshape, transpose, slice, concat, shift) and the two ops that create
 * tensors from attributes (iota, constant).
 */
import { Dim, product } from "../dim";
import { isFloat } from "../dtype";
import { OpError } from "../errors";
import { Tensor, allocData, numelOf, stridesOf } from "../tensor";
import { TensorType } from "../types";
import { attr, defineOp, expectSameDtype, normAxis, type Cost } from "./registry";

/** Ops that only reinterpret or create small tensors: free in the cost model. */
const FREE: Cost = { flops: 0, bytesRead: 0, bytesWritten: 0 };

defineOp({
  name: "reshape",
  summary: "same elements in row-major order, new shape",
  operands: ["x"],
  attrs: { shape: { kind: "dims", doc: "the new shape; its element count must equal the input's" } },
  infer([x], attrs) {
    const shape = attr.dims(attrs, "shape");
    const a = x!.numel();
    const b = product(shape);
    if (!a.equals(b)) throw new OpError(`reshape from ${x} to [${shape.join(", ")}] changes the element count (${a} vs ${b})`);
    return [new TensorType(x!.dtype, shape)];
  },
  interpret([x], _attrs, ctx) {
    return [x!.reshaped(ctx.resultShapes[0]!)];
  },
  cost: () => FREE,
});

function checkPerm(perm: readonly number[], rank: number): void {
  if (perm.length !== rank) throw new OpError(`permutation [${perm}] has ${perm.length} entries for rank ${rank}`);
  const seen = new Set<number>();
  for (const p of perm) {
    if (!(p >= 0 && p < rank) || seen.has(p)) throw new OpError(`[${perm}] is not a permutation of 0..${rank - 1}`);
    seen.add(p);
  }
}

defineOp({
  name: "transpose",
  summary: "permutes axes: result axis i is input axis perm[i]",
  operands: ["x"],
  attrs: { perm: { kind: "ints", doc: "the permutation" } },
  infer([x], attrs) {
    const perm = attr.ints(attrs, "perm");
    checkPerm(perm, x!.rank);
    return [new TensorType(x!.dtype, perm.map((p) => x!.shape[p]!))];
  },
  interpret([x], attrs, ctx) {
    const perm = attr.ints(attrs, "perm");
    const outShape = ctx.resultShapes[0]!;
    const inStrides = stridesOf(x!.shape);
    const rank = outShape.length;
    const step = perm.map((p) => inStrides[p]!);
    const n = numelOf(outShape);
    const out = allocData(x!.dtype, n);
    const src = x!.data;
    const counter = new Array<number>(rank).fill(0);
    let off = 0;
    for (let k = 0; k < n; k++) {
      out[k] = src[off]!;
      for (let a = rank - 1; a >= 0; a--) {
        counter[a]!++;
        off += step[a]!;
        if (counter[a]! < outShape[a]!) break;
        off -= step[a]! * counter[a]!;
        counter[a] = 0;
      }
    }
    return [new Tensor(x!.dtype, outShape, out)];
  },
});

/** Copies, for every index of the outer axes, a block of `inner` elements (a strided copy along one axis). */
function copyAlongAxis(
  src: Tensor,
  dst: { data: ArrayLike<number> & { [i: number]: number } },
  axis: number,
  srcStart: number,
  dstStart: number,
  count: number,
  dstAxisLen: number,
): void {
  const outer = numelOf(src.shape.slice(0, axis));
  const inner = numelOf(src.shape.slice(axis + 1));
  const srcAxisLen = src.shape[axis]!;
  for (let o = 0; o < outer; o++) {
    const s0 = (o * srcAxisLen + srcStart) * inner;
    const d0 = (o * dstAxisLen + dstStart) * inner;
    for (let i = 0; i < count * inner; i++) dst.data[d0 + i] = src.data[s0 + i]!;
  }
}

defineOp({
  name: "slice",
  summary: "elements start..end-1 along one axis",
  operands: ["x"],
  attrs: {
    axis: { kind: "int", doc: "the axis" },
    start: { kind: "int", doc: "first index (inclusive)" },
    end: { kind: "int", doc: "last index (exclusive)" },
  },
  infer([x], attrs) {
    const axis = normAxis(attr.int(attrs, "axis"), x!.rank);
    const start = attr.int(attrs, "start");
    const end = attr.int(attrs, "end");
    if (!(start >= 0 && end >= start)) throw new OpError(`slice ${start}..${end} is empty or negative`);
    const d = x!.shape[axis]!;
    if (d.isConst() && end > d.value!) throw new OpError(`slice end ${end} exceeds axis ${axis} of size ${d}`);
    const shape = [...x!.shape];
    shape[axis] = Dim.of(end - start);
    return [new TensorType(x!.dtype, shape)];
  },
  interpret([x], attrs, ctx) {
    const axis = normAxis(attr.int(attrs, "axis"), x!.rank);
    const start = attr.int(attrs, "start");
    const end = attr.int(attrs, "end");
    if (end > x!.shape[axis]!) throw new OpError(`slice end ${end} exceeds axis ${axis} of size ${x!.shape[axis]}`);
    const outShape = ctx.resultShapes[0]!;
    const out = Tensor.zeros(x!.dtype, outShape);
    copyAlongAxis(x!, out, axis, start, 0, end - start, outShape[axis]!);
    return [out];
  },
});

defineOp({
  name: "concat",
  summary: "joins tensors along one axis",
  operands: ["x"],
  variadic: true,
  attrs: { axis: { kind: "int", doc: "the axis" } },
  infer(ins, attrs) {
    const first = ins[0]!;
    const axis = normAxis(attr.int(attrs, "axis"), first.rank);
    let total = Dim.of(0);
    for (const t of ins) {
      expectSameDtype(first, t, "operands of concat");
      if (t.rank !== first.rank) throw new OpError(`concat operands have different ranks: ${first} vs ${t}`);
      t.shape.forEach((d, i) => {
        if (i !== axis && !d.equals(first.shape[i]!)) throw new OpError(`concat operands differ on axis ${i}: ${first} vs ${t}`);
      });
      total = total.add(t.shape[axis]!);
    }
    const shape = [...first.shape];
    shape[axis] = total;
    return [new TensorType(first.dtype, shape)];
  },
  interpret(ins, attrs, ctx) {
    const axis = normAxis(attr.int(attrs, "axis"), ins[0]!.rank);
    const outShape = ctx.resultShapes[0]!;
    const out = Tensor.zeros(ins[0]!.dtype, outShape);
    let at = 0;
    for (const t of ins) {
      copyAlongAxis(t, out, axis, 0, at, t.shape[axis]!, outShape[axis]!);
      at += t.shape[axis]!;
    }
    return [out];
  },
});

defineOp({
  name: "shift",
  summary: "moves elements along an axis by `offset` (negative: toward index 0) and fills the vacated slots",
  operands: ["x"],
  attrs: {
    axis: { kind: "int", doc: "the axis" },
    offset: { kind: "int", doc: "how far elements move (-1: element i+1 lands at i)" },
    fill: { kind: "float", doc: "value for the vacated slots" },
  },
  infer([x], attrs) {
    normAxis(attr.int(attrs, "axis"), x!.rank);
    return [new TensorType(x!.dtype, x!.shape)];
  },
  interpret([x], attrs) {
    const axis = normAxis(attr.int(attrs, "axis"), x!.rank);
    const offset = attr.int(attrs, "offset");
    const fill = attr.float(attrs, "fill");
    const len = x!.shape[axis]!;
    const out = Tensor.zeros(x!.dtype, x!.shape);
    out.data.fill(fill);
    const outer = numelOf(x!.shape.slice(0, axis));
    const inner = numelOf(x!.shape.slice(axis + 1));
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < len; i++) {
        const j = i + offset;
        if (j < 0 || j >= len) continue;
        for (let k = 0; k < inner; k++) out.data[(o * len + j) * inner + k] = x!.data[(o * len + i) * inner + k]!;
      }
    }
    return [out];
  },
});

defineOp({
  name: "iota",
  summary: "the integers start, start+1, ..., start+length-1",
  operands: [],
  attrs: {
    start: { kind: "dim", doc: "first value (may be a symbol, e.g. the cache length P)" },
    length: { kind: "dim", doc: "how many values" },
    dtype: { kind: "dtype", doc: "element type" },
  },
  infer(_ins, attrs) {
    return [new TensorType(attr.dtype(attrs, "dtype"), [attr.dim(attrs, "length")])];
  },
  interpret(_ins, attrs, ctx) {
    const start = ctx.dim(attr.dim(attrs, "start"));
    const n = ctx.resultShapes[0]![0]!;
    const dt = attr.dtype(attrs, "dtype");
    const out = allocData(dt, n);
    for (let i = 0; i < n; i++) out[i] = start + i;
    return [new Tensor(dt, [n], out)];
  },
});

defineOp({
  name: "constant",
  summary: "a tensor given in the IR: one value repeated, or one value per element",
  operands: [],
  attrs: {
    values: { kind: "floats", doc: "the values, row-major (a single value fills the shape)" },
    shape: { kind: "ints", doc: "the shape (default: a scalar for one value, else a vector)", optional: true },
    dtype: { kind: "dtype", doc: "element type" },
  },
  infer(_ins, attrs) {
    const values = attr.floats(attrs, "values");
    const dt = attr.dtype(attrs, "dtype");
    if (values.length === 0) throw new OpError("constant needs at least one value");
    const shape = (attrs["shape"] as readonly number[] | undefined) ?? (values.length === 1 ? [] : [values.length]);
    if (shape.some((d) => d < 0)) throw new OpError(`constant shape [${shape}] has a negative dimension`);
    const n = numelOf(shape);
    if (values.length !== 1 && values.length !== n) throw new OpError(`constant has ${values.length} values for shape [${shape}] (${n} elements)`);
    if (!isFloat(dt) && values.some((v) => !Number.isInteger(v))) throw new OpError(`constant of dtype ${dt} needs integer values`);
    return [new TensorType(dt, shape.map((d) => Dim.of(d)))];
  },
  interpret(_ins, attrs, ctx) {
    const values = attr.floats(attrs, "values");
    const dt = attr.dtype(attrs, "dtype");
    const shape = ctx.resultShapes[0]!;
    const out = allocData(dt, numelOf(shape));
    if (values.length === 1) out.fill(values[0]!);
    else out.set(values);
    return [new Tensor(dt, shape, out)];
  },
  cost: () => FREE,
});
