/**
 * The plan's cost model (compiler/passes/stages-cost.ts): an op's roofline at the device's rates, and
 * the same with measured fractions of those rates (DeviceRates.achieved) on each side.
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { parseModule } from "../../ir/parse";
import { opSeconds } from "../../compiler/passes/stages-cost";
import { scheduleUnits } from "../../compiler/passes/stages-units";
import { CUDA_SM90A, type DeviceRates } from "../../ir/target/cuda";

const m = parseModule(
  `module @c {
  func @c(%x: bf16[S, 1024])
      weights(@w: bf16[4096, 1024])
      -> (y: bf16[S, 4096], z: bf16[S, 4096]) {
    %y = linear(%x, @w) : bf16[S, 4096]
    %z = silu(%y) : bf16[S, 4096]
    return %y, %z
  }
}
`,
  "cost.lir",
);
const [linear, silu] = m.entry!.body;
const peak: DeviceRates = { ...CUDA_SM90A.rates, achieved: undefined };
const at = (S: number) => new Map([["S", S]]);

describe("the plan's cost model", () => {
  it("is the longer of the FLOPs at the GEMM rate and the bytes at the bandwidth", () => {
    // 8192 rows: 2 x 8192 x 4096 x 1024 FLOPs against (8192 x 1024 + 4096 x 1024 + 8192 x 4096) x 2 bytes.
    const flops = 2 * 8192 * 4096 * 1024;
    const bytes = (8192 * 1024 + 4096 * 1024 + 8192 * 4096) * 2;
    const t = opSeconds(linear!, at(8192), peak);
    expect(t.flops).toBe(flops);
    expect(t.s).toBeCloseTo(Math.max(flops / peak.gemmFlops["bf16"]!, bytes / peak.memoryBandwidth), 12);
  });

  it("divides each side by the fraction the kernels reach for that kind of op, the rest by `default`", () => {
    const rates: DeviceRates = { ...peak, achieved: { linear: { compute: 0.5, memory: 0.25 }, default: { compute: 1, memory: 0.1 } } };
    for (const S of [1, 8192]) {
      const onlyFlops = opSeconds(linear!, at(S), { ...peak, memoryBandwidth: Infinity }).s;
      const onlyBytes = opSeconds(linear!, at(S), { ...peak, gemmFlops: {}, simtFlops: Infinity }).s;
      expect(opSeconds(linear!, at(S), rates).s).toBeCloseTo(Math.max(onlyFlops / 0.5, onlyBytes / 0.25), 12);
    }
    // silu is memory-bound: ten times its roofline at 10% of the bandwidth.
    expect(opSeconds(silu!, at(8192), rates).s).toBeCloseTo(opSeconds(silu!, at(8192), peak).s * 10, 12);
  });
});

describe("what a cut carries", () => {
  // The head's weight cast to f32 at the top (an op reading only weights: it runs at load) is read
  // after the layer; the pipeline makes it again in the stage that reads it (stages.ts stageOps), so
  // no cut carries it: only the layer's [S, 8] f32 activation crosses.
  const net = parseModule(
    `module @net {
  func @layer(%h: f32[S, 8]) weights(@up: f32[8, 8]) -> (out: f32[S, 8]) {
    %u = linear(%h, @up) : f32[S, 8]
    return %u
  }
  func @net(%x: f32[S, 8]) weights(@head: bf16[3000, 8]) -> (y: f32[S, 3000]) {
    %hw = cast(@head) {to = f32} : f32[3000, 8]
    %h0 = call @layer(%x) : f32[S, 8] scope("layers.0")
    %y = linear(%h0, %hw) : f32[S, 3000]
    return %y
  }
}
`,
    "cut.lir",
  );

  it("only the activations, never what ops reading only weights make", () => {
    const units = scheduleUnits(net, at(16), CUDA_SM90A.rates);
    expect(units.map((u) => u.name)).toEqual(["embedding", "layer layers.0", "head"]);
    expect(units.map((u) => u.cutBytes)).toEqual([16 * 8 * 4, 16 * 8 * 4, 0]);
  });
});
