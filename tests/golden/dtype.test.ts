/**
 * `--dtype`: a bf16 checkpoint computed in f32 (its weights cast once) gives the upstream fp32
 * numbers of the same bf16 weights (ling-small's `logits_unquantized`) on every CI backend.
 */
import { describe, expect, it } from "vitest";
import { loadModel } from "../../compiler/driver/load";
import { openSource } from "../../compiler/driver/source";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { tensorDiff } from "../support/compare";
import { SMALL_DIR, SMALL_FP8_GOLDEN } from "../support/paths";

const golden = readAllSafetensors(SMALL_FP8_GOLDEN);

describe.each(["interp", "onnx", "wgsl"])("ling-small (bf16) with --dtype f32 on %s", (backend) => {
  it("matches the unquantized fp32 logits and mtp_logits within 1e-4", async () => {
    const { model } = await loadModel({ source: await openSource(SMALL_DIR, undefined, { dtype: "f32" }), backend });
    try {
      const out = await model.graphs["forward"]!.run({ input_ids: golden["input_ids"]! });
      expect(tensorDiff(out["logits"]!, golden["logits_unquantized"]!)).toBeLessThanOrEqual(1e-4);
      expect(tensorDiff(out["mtp_logits"]!, golden["mtp_logits_unquantized"]!)).toBeLessThanOrEqual(1e-4);
    } finally {
      model.close();
    }
  }, 120_000);
});

describe("--dtype", () => {
  it("is refused for an IR text, whose dtypes are written in it", async () => {
    await expect(openSource("tests/passes/lit/decompose/rope.lir", undefined, { dtype: "f32" })).rejects.toThrow(/--dtype applies to a model traced from a config; tests\/passes\/lit\/decompose\/rope.lir is already a graph/);
  });
});
