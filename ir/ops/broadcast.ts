/**
 * Numpy-style broadcasting, shared by the shape rules (over symbolic dims) and the interpreter
 * (over concrete shapes). Axes are aligned from the right; a pair of dims must be equal or one of
 * them must be the constant 1.
 */
import { Dim } from "../dim";
import { OpError } from "../errors";
import { numelOf, stridesOf } from "../tensor";
import type { TensorType } from "../types";

export function broadcastShapes(shapes: readonly (readonly Dim[])[], what: string): Dim[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim | undefined;
    for (const s of shapes) {
      const x = s[s.length - rank + i];
      if (x === undefined || x.equals(1)) continue;
      if (d === undefined) d = x;
      else if (!d.equals(x)) {
        throw new OpError(`${what}: shapes ${shapes.map((s) => `[${s.join(", ")}]`).join(" and ")} do not broadcast (${d} vs ${x})`);
      }
    }
    out.push(d ?? Dim.of(1));
  }
  return out;
}

export function broadcastTypes(ts: readonly TensorType[], what: string): Dim[] {
  return broadcastShapes(
    ts.map((t) => t.shape),
    what,
  );
}

/**
 * For each element of `outShape` (row-major), the flat index of the element of `inShape` that
 * broadcasts to it; undefined when the shapes are equal (the identity map).
 */
export function broadcastIndex(inShape: readonly number[], outShape: readonly number[]): Int32Array | undefined {
  if (inShape.length === outShape.length && inShape.every((d, i) => d === outShape[i])) return undefined;
  const n = numelOf(outShape);
  const rank = outShape.length;
  const inStrides = stridesOf(inShape);
  const eff = new Array<number>(rank).fill(0);
  for (let i = 0; i < rank; i++) {
    const j = inShape.length - rank + i;
    if (j >= 0 && inShape[j] !== 1) eff[i] = inStrides[j]!;
  }
  const idx = new Int32Array(n);
  const counter = new Array<number>(rank).fill(0);
  let off = 0;
  for (let k = 0; k < n; k++) {
    idx[k] = off;
    for (let a = rank - 1; a >= 0; a--) {
      counter[a]!++;
      off += eff[a]!;
      if (counter[a]! < outShape[a]!) break;
      off -= eff[a]! * counter[a]!;
      counter[a] = 0;
    }
  }
  return idx;
}
