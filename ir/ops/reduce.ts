/** Reductions over a set of axes: sum, mean and max, accumulated in double precision. */
import { isFloat } from "../dtype";
import { Dim } from "../dim";
import { OpError } from "../errors";
import { Tensor, allocData, numelOf, stridesOf } from "../tensor";
import { TensorType } from "../types";
import { attr, defineOp, normAxis } from "./registry";
import { signOf } from "./vjp";

type Kind = "sum" | "mean" | "max";

function reducedAxes(rank: number, axes: readonly number[]): Set<number> {
  const set = new Set<number>();
  for (const a of axes) {
    const n = normAxis(a, rank, "reduction axis");
    if (set.has(n)) throw new OpError(`reduction axis ${a} is listed twice`);
    set.add(n);
  }
  return set;
}

function defineReduce(kind: Kind) {
  return defineOp({
    name: `reduce_${kind}`,
    summary: `${kind} over the given axes`,
    operands: ["x"],
    attrs: {
      axes: { kind: "ints", doc: "axes to reduce (negative counts from the end)" },
      keepdims: { kind: "bool", doc: "keep reduced axes with size 1 (default false)", optional: true },
    },
    traits: ["reduction"],
    infer([x], attrs) {
      if (x!.dtype === "bool") throw new OpError(`reduce_${kind} does not apply to bool tensors`);
      if (kind === "mean" && !isFloat(x!.dtype)) throw new OpError(`reduce_mean needs a float tensor, got ${x}`);
      const axes = reducedAxes(x!.rank, attr.ints(attrs, "axes"));
      const keep = attr.bool(attrs, "keepdims", false);
      const shape: Dim[] = [];
      x!.shape.forEach((d, i) => {
        if (!axes.has(i)) shape.push(d);
        else if (keep) shape.push(Dim.of(1));
      });
      return [new TensorType(x!.dtype, shape)];
    },
    interpret([x], attrs, ctx) {
      const axes = reducedAxes(x!.rank, attr.ints(attrs, "axes"));
      const inShape = x!.shape;
      // Output index of each input element: drop the reduced axes from its coordinates.
      const outDims = inShape.map((d, i) => (axes.has(i) ? 1 : d));
      const outStrides = stridesOf(outDims);
      const n = numelOf(outDims);
      const acc = new Float64Array(n).fill(kind === "max" ? -Infinity : 0);
      const src = x!.data;
      const rank = inShape.length;
      const counter = new Array<number>(rank).fill(0);
      let off = 0;
      for (let k = 0; k < src.length; k++) {
        const v = src[k]!;
        if (kind === "max") acc[off] = Number.isNaN(v) || Number.isNaN(acc[off]!) ? NaN : Math.max(acc[off]!, v);
        else acc[off] += v;
        for (let a = rank - 1; a >= 0; a--) {
          counter[a]!++;
          if (!axes.has(a)) off += outStrides[a]!;
          if (counter[a]! < inShape[a]!) break;
          if (!axes.has(a)) off -= outStrides[a]! * counter[a]!;
          counter[a] = 0;
        }
      }
      if (kind === "mean") {
        const count = src.length / Math.max(n, 1);
        for (let i = 0; i < n; i++) acc[i] = acc[i]! / count;
      }
      const out = allocData(x!.dtype, n);
      out.set(acc);
      return [new Tensor(x!.dtype, ctx.resultShapes[0]!, out)];
    },
    // sum and mean: the cotangent spread back over the reduced axes (divided by the count for
    // mean); max: to the elements equal to the maximum, split evenly between ties (torch's amax).
    vjp:
      kind === "max"
        ? (b, [x], [out], [ct], attrs) => {
            const axes = reducedAxes(x!.type.rank, attr.ints(attrs, "axes"));
            const kept = x!.type.shape.map((d, i) => (axes.has(i) ? Dim.of(1) : d));
            const keepdims = attr.bool(attrs, "keepdims", false);
            const m = keepdims ? out! : b.op1("reshape", [out!], { shape: kept });
            const g = keepdims ? ct! : b.op1("reshape", [ct!], { shape: kept });
            const one = b.op1("constant", [], { values: [1], dtype: x!.type.dtype });
            // 1 where x equals the maximum, else 0: 1 - |sign(x - max)|.
            const hit = b.op1("sub", [one, b.op1("abs", [signOf(b, b.op1("sub", [x!, m]))])]);
            const ties = b.op1("reduce_sum", [hit], { axes: [...axes], keepdims: true });
            return [b.op1("mul", [b.op1("broadcast_to", [b.op1("div", [g, ties])], { shape: [...x!.type.shape] }), hit])];
          }
        : (b, [x], _outs, [ct], attrs) => {
            const axes = reducedAxes(x!.type.rank, attr.ints(attrs, "axes"));
            const kept = x!.type.shape.map((d, i) => (axes.has(i) ? Dim.of(1) : d));
            let g = attr.bool(attrs, "keepdims", false) ? ct! : b.op1("reshape", [ct!], { shape: kept });
            if (kind === "mean") {
              const count = [...axes].reduce((n, a) => n * (x!.type.shape[a]!.value ?? NaN), 1);
              if (Number.isNaN(count)) throw new OpError(`reduce_mean: its derivative divides by the reduced count, and an axis of ${x!.type} is not a number`);
              g = b.op1("div", [g, b.op1("constant", [], { values: [count], dtype: x!.type.dtype })]);
            }
            return [b.op1("broadcast_to", [g], { shape: [...x!.type.shape] })];
          },
  });
}

export const REDUCE_SUM = defineReduce("sum");
export const REDUCE_MEAN = defineReduce("mean");
export const REDUCE_MAX = defineReduce("max");
