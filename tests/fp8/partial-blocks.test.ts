/**
 * Quantization whose last block is partial: a width that is not whole 128-groups (a dense MLP of
 * 320, an expert of 192) and a weight whose rows and columns are not whole 128x128 blocks. Every
 * backend takes a partial block's amax over the elements present (ir/quant.ts); ONNX pads it with
 * zeros and slices the codes back. Codes and scales must equal the interpreter's bit for bit.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../../ir/ops";
import type { LoadedModel } from "../../backends/backend";
import { loadModel } from "../../compiler/driver/load";
import { openSource } from "../../compiler/driver/source";
import { Tensor } from "../../ir/tensor";
import { rng, normal } from "../support/random-checkpoint";
import { scratchDir } from "../support/paths";

const dir = scratchDir("lingc-fp8-partial-");
const T = 5;
const K = 320;
const R = 200;

const MODULE = `module @partial {
  func @partial(%x: f32[B, ${T}, ${K}], %w: f32[${R}, ${K}])
      -> (xq: f8e4m3fn[B, ${T}, ${K}] scale(f32, block(1, 128)), wq: f8e4m3fn[${R}, ${K}] scale(f32, block(128, 128)), wl: f8e4m3fn[${R}, ${K}] scale(f32, block(128, 128))) {
    %xq = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[B, ${T}, ${K}] scale(f32, block(1, 128))
    %wq = quantize(%w) {to = f8e4m3fn, block = [128, 128], recipe = "transformers"} : f8e4m3fn[${R}, ${K}] scale(f32, block(128, 128))
    %wl = quantize(%w) {to = f8e4m3fn, block = [128, 128], recipe = "ling"} : f8e4m3fn[${R}, ${K}] scale(f32, block(128, 128))
    return %xq, %wq, %wl
  }
}
`;

const r = rng(11);
// Rows of different magnitudes (a group's scale differs row to row), the last group's largest value in its partial part.
const x = Tensor.from("f32", [2, T, K], Array.from({ length: 2 * T * K }, (_, i) => normal(r) * (1 + (Math.floor(i / K) % 4)) * (i % K === K - 3 ? 9 : 1)));
const w = Tensor.from("f32", [R, K], Array.from({ length: R * K }, () => normal(r) * 0.02));

describe("quantize with partial last blocks", () => {
  const outs = new Map<string, Record<string, Tensor>>();
  const models: LoadedModel[] = [];
  beforeAll(async () => {
    const path = join(dir, "partial.lir");
    writeFileSync(path, MODULE);
    for (const backend of ["interp", "onnx", "wgsl"]) {
      const { model } = await loadModel({ source: await openSource(path), backend });
      models.push(model);
      outs.set(backend, await model.graphs["partial"]!.run({ x, w }));
    }
  }, 60_000);
  afterAll(() => models.forEach((m) => m.close()));

  it("the interpreter's scale grids cover the partial blocks", () => {
    const ref = outs.get("interp")!;
    expect(ref["xq"]!.scaled!.scales.length).toBe(2 * T * Math.ceil(K / 128));
    expect(ref["wq"]!.scaled!.scales.length).toBe(Math.ceil(R / 128) * Math.ceil(K / 128));
  });

  it.each(["onnx", "wgsl"])("%s: codes and scales equal the interpreter's bit for bit", (backend) => {
    const ref = outs.get("interp")!;
    const got = outs.get(backend)!;
    for (const name of ["xq", "wq", "wl"]) {
      expect(Array.from(got[name]!.data), name).toEqual(Array.from(ref[name]!.data));
      expect(Array.from(got[name]!.scaled!.scales), name).toEqual(Array.from(ref[name]!.scaled!.scales));
    }
  });
});
