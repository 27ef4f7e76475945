/**
 * The weight recipe (transformers' Fp8Quantize, ir/quant.ts) on ling-small's bf16 weights gives
 * ling-small-fp8's FP8 tensors and weight_scale_inv bit for bit.
 */
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { quantizeValues } from "../../ir/quant";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { SMALL_DIR, SMALL_FP8_DIR } from "../support/paths";

describe("the transformers weight recipe", () => {
  it("reproduces every FP8 tensor and scale of ling-small-fp8 from ling-small", () => {
    const bf16 = readAllSafetensors(join(SMALL_DIR, "model.safetensors"));
    const fp8 = readAllSafetensors(join(SMALL_FP8_DIR, "model.safetensors"));
    const names = Object.keys(fp8).filter((n) => fp8[n]!.dtype === "f8e4m3fn");
    expect(names.length).toBe(164);
    let mismatches = 0;
    for (const n of names) {
      const w = bf16[n]!;
      const { q, scales } = quantizeValues(w.data, w.shape, "f8e4m3fn", { kind: "block", rows: 128, cols: 128 }, "transformers");
      const want = fp8[n]!;
      const wantScales = fp8[n.replace(/\.weight$/, ".weight_scale_inv")]!;
      if (q.some((v, i) => !Object.is(v, want.data[i]!)) || scales.some((v, i) => v !== wantScales.data[i]!)) mismatches++;
    }
    expect(mismatches).toBe(0);
  });
});
