/**
 * W8A8 per projection against the golden set (tests/data/golden/README.md), on every backend that
 * runs FP8: given upstream's input x, quantize's dynamic recipe reproduces upstream's per-token 1x128
 * quantization (q and s) bit for bit, and a linear of it with the checkpoint's FP8 weight and block
 * scales gives upstream's W8A8 output within 1e-5 of its largest value.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../../ir/ops";
import type { LoadedModel } from "../../backends/backend";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { loadModel } from "../../compiler/driver/load";
import { openSource } from "../../compiler/driver/source";
import type { Tensor } from "../../ir/tensor";
import { scratchDir, SMALL_FP8_DIR, SMALL_FP8_GOLDEN } from "../support/paths";

const golden = readAllSafetensors(SMALL_FP8_GOLDEN);
const PROJECTIONS = ["layers.0.attention.query_key_value", "layers.0.mlp.down_proj", "layers.1.mlp.shared_experts.down_proj"];
const dir = scratchDir("lingc-fp8-ops-");

/** One projection as a graph: its input quantized per token, times the checkpoint's FP8 weight. */
function projectionModule(name: string, T: number, K: number, O: number): string {
  const W = `f8e4m3fn[${O}, ${K}] scale(f32, block(128, 128))`;
  return `module @p {
  func @p(%x: f32[${T}, ${K}])
      weights(
        @model.${name}.weight: ${W}
      )
      -> (q: f8e4m3fn[${T}, ${K}] scale(f32, block(1, 128)), y: f32[${T}, ${O}]) {
    %q = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[${T}, ${K}] scale(f32, block(1, 128)) scope("aq")
    %y = linear(%q, @model.${name}.weight) {out = f32} : f32[${T}, ${O}] scope("proj")
    return %q, %y
  }
}
`;
}

describe.each(["interp", "onnx", "wgsl"])("W8A8 projections on %s", (backend) => {
  const outs = new Map<string, Record<string, Tensor>>();
  const models: LoadedModel[] = [];
  beforeAll(async () => {
    for (const name of PROJECTIONS) {
      const x = golden[`aq.${name}.x`]!;
      const [T, K] = x.shape as [number, number];
      const O = golden[`aq.${name}.y`]!.shape[1]!;
      const path = join(dir, `${name}.lir`);
      writeFileSync(path, projectionModule(name, T, K, O));
      const { model } = await loadModel({ source: await openSource(path, SMALL_FP8_DIR), backend });
      models.push(model);
      outs.set(name, await model.graphs["p"]!.run({ x }));
    }
  }, 60_000);
  afterAll(() => models.forEach((m) => m.close()));

  it.each(PROJECTIONS)("%s: quantizes x to upstream's q and s bit for bit", (name) => {
    const q = outs.get(name)!["q"]!;
    expect(Array.from(q.data)).toEqual(Array.from(golden[`aq.${name}.q`]!.data));
    expect(Array.from(q.scaled!.scales)).toEqual(Array.from(golden[`aq.${name}.s`]!.data));
  });

  it.each(PROJECTIONS)("%s: gives upstream's y within 1e-5 of its largest value", (name) => {
    const y = outs.get(name)!["y"]!;
    const want = golden[`aq.${name}.y`]!;
    let peak = 0;
    let worst = 0;
    for (let i = 0; i < want.numel; i++) {
      peak = Math.max(peak, Math.abs(want.data[i]!));
      worst = Math.max(worst, Math.abs(y.data[i]! - want.data[i]!));
    }
    expect(worst / peak).toBeLessThanOrEqual(1e-5);
  });
});
