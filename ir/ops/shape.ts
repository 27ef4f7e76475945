/**
 * Shape and data-movement ops (reshape, transpose, slice, take_last, concat, shift) and the two ops that create
 * tensors from attributes (iota, constant). All are views: each says, by its index rule, which
 * operand element (or which value) its result element at given coordinates is.
 */
import { Dim, product } from "../dim";
import { isFloat } from "../dtype";
import { OpError } from "../errors";
import { numelOf } from "../tensor";
import { scalesFollowRows, TensorType } from "../types";
import type { Value } from "../module";
import { attr, defineOp, expectSameDtype, normAxis, type Cost, type OpBuilder } from "./registry";
import { unbroadcast } from "./vjp";

/** Ops that only reinterpret or create small tensors: free in the cost model. */
const FREE: Cost = { flops: 0, bytesRead: 0, bytesWritten: 0 };

export const RESHAPE = defineOp({
  name: "reshape",
  summary: "same elements in row-major order, new shape",
  operands: ["x"],
  attrs: { shape: { kind: "dims", doc: "the new shape; its element count must equal the input's" } },
  infer([x], attrs) {
    const shape = attr.dims(attrs, "shape");
    const a = x!.numel();
    const b = product(shape);
    if (!a.equals(b)) throw new OpError(`reshape from ${x} to [${shape.join(", ")}] changes the element count (${a} vs ${b})`);
    // A scaled x: its per-row or 1 x G scales stay with their elements where only the leading axes
    // merge or split (the grid is the same array).
    const g = x!.quant?.granularity;
    if (g && !(scalesFollowRows(g) && shape.length >= 1 && shape[shape.length - 1]!.equals(x!.shape[x!.rank - 1]!))) {
      throw new OpError(`reshape of ${x} to [${shape.join(", ")}]: its scales would not stay with their elements (only per-row or 1 x G scales, with the last axis kept)`);
    }
    return [new TensorType(x!.dtype, shape, x!.quant)];
  },
  traits: ["view", "free", "scaled"],
  index: (A, coords, c) => A.readFlat(0, A.flatten(coords, c.outShape)),
  interpret: ([x], _attrs, ctx) => [x!.reshaped(ctx.resultShapes[0]!)],
  vjp: (b, [x], _outs, [ct]) => [b.op1("reshape", [ct!], { shape: [...x!.type.shape] })],
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

export const TRANSPOSE = defineOp({
  name: "transpose",
  summary: "permutes axes: result axis i is input axis perm[i]",
  operands: ["x"],
  attrs: { perm: { kind: "ints", doc: "the permutation" } },
  infer([x], attrs) {
    const perm = attr.ints(attrs, "perm");
    checkPerm(perm, x!.rank);
    return [new TensorType(x!.dtype, perm.map((p) => x!.shape[p]!))];
  },
  traits: ["view"],
  index(A, coords, c) {
    const perm = c.attrs["perm"] as readonly number[];
    const src = new Array<(typeof coords)[number]>(perm.length);
    perm.forEach((p, j) => (src[p] = coords[j]!));
    return A.read(0, src);
  },
  vjp(b, _ins, _outs, [ct], attrs) {
    // The inverse permutation: result axis j came from axis perm[j].
    const perm = attr.ints(attrs, "perm");
    const inv: number[] = [];
    perm.forEach((p, j) => (inv[p] = j));
    return [b.op1("transpose", [ct!], { perm: inv })];
  },
});

export const BROADCAST_TO = defineOp({
  name: "broadcast_to",
  summary: "x repeated to a larger shape, numpy-style: axes aligned from the right, size-1 axes stretched, leading axes added",
  operands: ["x"],
  attrs: { shape: { kind: "dims", doc: "the shape to broadcast to" } },
  infer([x], attrs) {
    const shape = attr.dims(attrs, "shape");
    const lead = shape.length - x!.rank;
    if (lead < 0) throw new OpError(`broadcast_to: ${x} has more axes than [${shape.join(", ")}]`);
    x!.shape.forEach((d, i) => {
      if (!d.equals(Dim.of(1)) && !d.equals(shape[lead + i]!)) throw new OpError(`broadcast_to: axis ${i} of ${x} is neither 1 nor ${shape[lead + i]}`);
    });
    return [new TensorType(x!.dtype, shape)];
  },
  traits: ["view"],
  index(A, coords, c) {
    const src = c.inShapes[0]!;
    const lead = coords.length - src.length;
    return A.read(0, src.map((d, i) => (d.equals(Dim.of(1)) ? A.int(0) : coords[lead + i]!)));
  },
  vjp: (b, [x], _outs, [ct]) => [unbroadcast(b, ct!, x!)],
});

export const SLICE = defineOp({
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
  traits: ["view"],
  index(A, coords, c) {
    const axis = normAxis(c.attrs["axis"] as number, coords.length);
    const src = [...coords];
    src[axis] = A.add(coords[axis]!, A.int(c.attrs["start"] as number));
    return A.read(0, src);
  },
  vjp(b, [x], _outs, [ct], attrs) {
    // The cotangent in its span of the axis, zeros before and after.
    const axis = normAxis(attr.int(attrs, "axis"), x!.type.rank);
    const start = attr.int(attrs, "start");
    return [padAlong(b, "slice", x!, ct!, axis, (len) => [start, len - attr.int(attrs, "end")])];
  },
});

/**
 * A slice's cotangent `ct` put back in place along `axis` of `x`: zeros before and after it, as many
 * as `span` says for the axis' length (which must be a number).
 */
function padAlong(b: OpBuilder, op: string, x: Value, ct: Value, axis: number, span: (len: number) => [before: number, after: number]): Value {
  const len = x.type.shape[axis]!.value;
  if (len === undefined) throw new OpError(`${op}: its derivative pads axis ${axis} of ${x.type}, whose length is not a number`);
  const zeros = (n: number) => {
    const shape = [...x.type.shape];
    shape[axis] = Dim.of(n);
    return b.op1("broadcast_to", [b.op1("constant", [], { values: [0], dtype: x.type.dtype })], { shape });
  };
  const [lead, tail] = span(len);
  const parts = [...(lead > 0 ? [zeros(lead)] : []), ct, ...(tail > 0 ? [zeros(tail)] : [])];
  return parts.length === 1 ? ct : b.op1("concat", parts, { axis });
}

/**
 * The last `count` positions along an axis, whatever its length: a slice whose start is a symbol's
 * value (a prompt's last position, whose logits alone pick the next token).
 */
export const TAKE_LAST = defineOp({
  name: "take_last",
  summary: "the last `count` elements along one axis",
  operands: ["x"],
  attrs: {
    axis: { kind: "int", doc: "the axis" },
    count: { kind: "int", doc: "how many elements, from the end" },
  },
  infer([x], attrs) {
    const axis = normAxis(attr.int(attrs, "axis"), x!.rank);
    const count = attr.int(attrs, "count");
    if (!(count >= 1)) throw new OpError(`take_last: count ${count} must be at least 1`);
    const d = x!.shape[axis]!;
    if (d.isConst() && count > d.value!) throw new OpError(`take_last: count ${count} exceeds axis ${axis} of size ${d}`);
    const shape = [...x!.shape];
    shape[axis] = Dim.of(count);
    return [new TensorType(x!.dtype, shape)];
  },
  traits: ["view"],
  index(A, coords, c) {
    const axis = normAxis(c.attrs["axis"] as number, coords.length);
    const src = [...coords];
    src[axis] = A.add(coords[axis]!, A.sub(A.size(c.inShapes[0]![axis]!), A.int(c.attrs["count"] as number)));
    return A.read(0, src);
  },
  vjp(b, [x], _outs, [ct], attrs) {
    // The cotangent at the axis' end, zeros before it.
    const axis = normAxis(attr.int(attrs, "axis"), x!.type.rank);
    return [padAlong(b, "take_last", x!, ct!, axis, (len) => [len - attr.int(attrs, "count"), 0])];
  },
});

export const CONCAT = defineOp({
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
  traits: ["view"],
  index(A, coords, c) {
    const axis = normAxis(c.attrs["axis"] as number, coords.length);
    // Operand j covers [lo_j, lo_j + its length) of the axis: read it there, shifted to its origin.
    const part = (j: number, lo: (typeof coords)[number]): (typeof coords)[number] => {
      const src = [...coords];
      src[axis] = A.sub(coords[axis]!, lo);
      if (j === c.inShapes.length - 1) return A.read(j, src);
      const hi = A.add(lo, A.size(c.inShapes[j]![axis]!));
      return A.choose(A.lt(coords[axis]!, hi), () => A.read(j, src), () => part(j + 1, hi));
    };
    return part(0, A.int(0));
  },
  vjp(b, ins, _outs, [ct], attrs) {
    // Each operand's cotangent is its span of the result's (a slice needs numeric bounds).
    const axis = normAxis(attr.int(attrs, "axis"), ct!.type.rank);
    let at = 0;
    return ins.map((x) => {
      const n = x.type.shape[axis]!.value;
      if (n === undefined) throw new OpError(`concat: the derivative slices the cotangent along axis ${axis}, whose length ${x.type.shape[axis]} is not a number`);
      const piece = b.op1("slice", [ct!], { axis, start: at, end: at + n });
      at += n;
      return piece;
    });
  },
});

export const SHIFT = defineOp({
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
  traits: ["view"],
  index(A, coords, c) {
    const axis = normAxis(c.attrs["axis"] as number, coords.length);
    const from = A.sub(coords[axis]!, A.int(c.attrs["offset"] as number));
    const inside = A.and(A.ge(from, A.int(0)), A.lt(from, A.size(c.inShapes[0]![axis]!)));
    const src = [...coords];
    src[axis] = from;
    return A.choose(inside, () => A.read(0, src), () => A.value(c.attrs["fill"] as number));
  },
  // Element i moved to i + offset: its cotangent moves back (the filled slots came from no element).
  vjp: (b, _ins, _outs, [ct], attrs) => [b.op1("shift", [ct!], { axis: attr.int(attrs, "axis"), offset: -attr.int(attrs, "offset"), fill: 0 })],
});

export const IOTA = defineOp({
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
  traits: ["view"],
  index: (A, coords, c) => A.fromIndex(A.add(A.size(c.attrs["start"] as Dim), coords[0]!)),
  // No operands, nothing to differentiate.
  vjp: () => [],
});

export const CONSTANT = defineOp({
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
  traits: ["view", "free"],
  index(A, coords, c) {
    const values = c.attrs["values"] as readonly number[];
    return values.length === 1 ? A.value(values[0]!) : A.table(values, A.flatten(coords, c.outShape));
  },
  cost: () => FREE,
  // No operands, nothing to differentiate.
  vjp: () => [],
});
