/**
 * Chunked prefill: the decode graph takes S new tokens after a P-token cache, so a prompt can be
 * prefilled chunk by chunk (what pipelined stages keep in flight). A forward of the first chunk and
 * decode runs over the next chunks give the forward's logits of the whole prompt, and its cache.
 */
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { loadCheckpoint } from "../support/load";
import { tensorDiff } from "../support/compare";
import { GOLDEN_DIR, GOLDEN_FILE } from "../support/paths";

const golden = readAllSafetensors(GOLDEN_FILE);

/** Positions [from, to) of a [B, S, ...] tensor along axis `axis`. */
function sliceAxis(t: Tensor, axis: number, from: number, to: number): Tensor {
  const outer = t.shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = t.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const n = t.shape[axis]!;
  const shape = t.shape.map((d, i) => (i === axis ? to - from : d));
  const out = Tensor.zeros(t.dtype, shape);
  for (let o = 0; o < outer; o++) {
    for (let s = from; s < to; s++) {
      for (let i = 0; i < inner; i++) out.data[(o * (to - from) + s - from) * inner + i] = t.data[(o * n + s) * inner + i]!;
    }
  }
  return out;
}

describe.each(["interp", "onnx"])("chunked prefill on %s", (backend) => {
  it("a forward of the first chunk and decode runs over the rest equal the forward of the whole prompt", async () => {
    const model = await loadCheckpoint(backend, GOLDEN_DIR);
    const ids = golden["input_ids"]!;
    const S = ids.shape[1]!;
    const whole = await model.forward.run({ input_ids: ids });
    const cuts = [0, Math.floor(S / 3), Math.floor((2 * S) / 3), S];
    expect(cuts[1]).toBeGreaterThan(1);
    const first = await model.forward.run({ input_ids: sliceAxis(ids, 1, 0, cuts[1]!) });
    let cache: Record<string, Tensor> = Object.fromEntries(Object.entries(first).filter(([k]) => k.startsWith("present.")).map(([k, v]) => [k.replace("present.", "past."), v]));
    expect(tensorDiff(first["logits"]!, sliceAxis(whole["logits"]!, 1, 0, cuts[1]!))).toBeLessThanOrEqual(1e-5);
    for (let c = 1; c < cuts.length - 1; c++) {
      const out = await model.decode.run({ input_ids: sliceAxis(ids, 1, cuts[c]!, cuts[c + 1]!), ...cache });
      expect(out["logits"]!.shape[1]).toBe(cuts[c + 1]! - cuts[c]!);
      expect(tensorDiff(out["logits"]!, sliceAxis(whole["logits"]!, 1, cuts[c]!, cuts[c + 1]!))).toBeLessThanOrEqual(1e-4);
      cache = Object.fromEntries(Object.entries(out).filter(([k]) => k.startsWith("present.")).map(([k, v]) => [k.replace("present.", "past."), v]));
    }
    for (const [k, v] of Object.entries(cache)) expect(tensorDiff(v, whole[k.replace("past.", "present.")]!)).toBeLessThanOrEqual(1e-4);
    await model.close?.();
  }, 120_000);
});
