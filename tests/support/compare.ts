/** Numeric comparison helpers for tests. */
import type { Tensor } from "../../ir/tensor";

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d; // NaN propagates as a failure
  }
  return m;
}

export function tensorDiff(a: Tensor, b: Tensor): number {
  if (a.shape.join(",") !== b.shape.join(",")) throw new Error(`shape [${a.shape}] vs [${b.shape}]`);
  return maxAbsDiff(a.data, b.data);
}

/** Rows of a [T, K] index tensor as sorted arrays (expert sets per token). */
export function rowSets(t: Tensor): number[][] {
  const [T, K] = t.shape as [number, number];
  return Array.from({ length: T }, (_, i) => Array.from(t.data.subarray(i * K, i * K + K)).sort((a, b) => a - b));
}
