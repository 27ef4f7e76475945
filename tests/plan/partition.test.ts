/**
 * The pipeline partition (compiler/plan/partition.ts) against brute force on random small
 * instances: the min-max DP finds the least bottleneck over every cut into non-empty contiguous
 * stages, with and without a memory limit that depends on the stage's index; the interleaved plan
 * (V > 1) is never below the lower bound nor above the min-max chunk partition's device load.
 */
import { describe, expect, it } from "vitest";
import { deviceLoads, interleavedPartition, lowerBound, minMaxPartition, stageTime, type PartitionInput } from "../../compiler/passes/stages-partition";
import { rng } from "../support/fd";

/** Every way to cut n units into k non-empty contiguous stages (bounds). */
function* cuts(n: number, k: number, start = 0): Generator<number[]> {
  if (k === 1) {
    yield [start, n];
    return;
  }
  for (let e = start + 1; e <= n - (k - 1); e++) for (const rest of cuts(n, k - 1, e)) yield [start, ...rest];
}

function brute(input: PartitionInput, k: number): number {
  let best = Infinity;
  for (const b of cuts(input.seconds.length, k)) {
    let ok = true;
    let worst = 0;
    for (let s = 0; s < k; s++) {
      if (input.fits && !input.fits(s, b[s]!, b[s + 1]!)) ok = false;
      worst = Math.max(worst, stageTime(input, b[s]!, b[s + 1]!));
    }
    if (ok) best = Math.min(best, worst);
  }
  return best;
}

const instance = (r: () => number, n: number): PartitionInput & { mem: number[] } => ({
  seconds: Array.from({ length: n }, () => 0.5 + 10 * r()),
  sendSeconds: Array.from({ length: n }, (_, i) => (i === n - 1 ? 0 : 2 * r())),
  mem: Array.from({ length: n }, () => 1 + Math.floor(9 * r())),
});

describe("the min-max pipeline partition", () => {
  it("equals brute force on 300 random instances (2-5 stages, up to 11 units)", () => {
    const r = rng(12);
    for (let t = 0; t < 300; t++) {
      const n = 3 + Math.floor(9 * r());
      const k = 2 + Math.floor(Math.min(4, n - 2) * r());
      const inst = instance(r, n);
      const got = minMaxPartition(inst, k)!;
      expect(got.max).toBeCloseTo(brute(inst, k), 12);
      expect(got.bounds.length).toBe(k + 1);
      expect(Math.max(...got.stageSeconds)).toBeCloseTo(got.max, 12);
    }
  });

  it("under a memory limit that grows toward the last stage (1F1B keeps more in flight early), equals brute force or finds nothing when brute force does not", () => {
    const r = rng(13);
    let infeasible = 0;
    for (let t = 0; t < 300; t++) {
      const n = 4 + Math.floor(7 * r());
      const k = 2 + Math.floor(Math.min(3, n - 3) * r());
      const inst = instance(r, n);
      const limit = 8 + 20 * r();
      const input: PartitionInput = { ...inst, fits: (s, from, to) => inst.mem.slice(from, to).reduce((a, b) => a + b, 0) * (1 + (k - s) / k) <= limit };
      const want = brute(input, k);
      const got = minMaxPartition(input, k);
      if (want === Infinity) {
        infeasible++;
        expect(got).toBeUndefined();
      } else expect(got!.max).toBeCloseTo(want, 12);
    }
    expect(infeasible).toBeGreaterThan(0);
  });

  it("interleaved (V = 2): between the lower bound and the min-max chunk partition's device load", () => {
    const r = rng(14);
    for (let t = 0; t < 100; t++) {
      const n = 12 + Math.floor(20 * r());
      const inst = instance(r, n);
      const p = 2 + Math.floor(3 * r());
      const plan = interleavedPartition(inst, p, 2)!;
      const chunks = minMaxPartition(inst, 2 * p)!;
      expect(plan.max).toBeGreaterThanOrEqual(lowerBound(inst, p) - 1e-12);
      expect(plan.max).toBeLessThanOrEqual(Math.max(...deviceLoads(inst, chunks.bounds, p)) + 1e-12);
    }
  });
});
