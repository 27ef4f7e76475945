/**
 * Golden numerics: the reference interpreter against the numbers the upstream PyTorch
 * implementation produced for ling-tiny (tests/data/golden, a copy of the project's golden set). Tolerances from its README.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { greedyGenerate } from "../../backends/generation";
import { loadCheckpoint, type TestModel } from "../support/load";
import type { Tensor } from "../../ir/tensor";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { resolveCheckpoint } from "../../models/resolve";
import { rowSets, tensorDiff, maxAbsDiff } from "../support/compare";
import { GOLDEN_DIR, GOLDEN_FILE } from "../support/paths";
import { goldenGreedy } from "../support/golden";

const golden = readAllSafetensors(GOLDEN_FILE);
let model: TestModel;
let out: Record<string, Tensor>;
const observed: Record<string, Tensor> = {};

beforeAll(async () => {
  const spec = resolveCheckpoint(GOLDEN_DIR);
  model = await loadCheckpoint("interp", spec.checkpointDir);
  out = await model.forward.run({ input_ids: golden["input_ids"]! }, (n, t) => (observed[n] = t));
});

describe("interpreter vs upstream golden (ling-tiny, fp32)", () => {
  it("logits within 1e-4", () => {
    expect(tensorDiff(out["logits"]!, golden["logits"]!)).toBeLessThanOrEqual(1e-4);
  });

  it("mtp_logits within 1e-4", () => {
    expect(tensorDiff(out["mtp_logits"]!, golden["mtp_logits"]!)).toBeLessThanOrEqual(1e-4);
  });

  it.each([0, 1, 2])("hidden.%i within 1e-4", (i) => {
    expect(tensorDiff(observed[`hidden.${i}`]!, golden[`hidden.${i}`]!)).toBeLessThanOrEqual(1e-4);
  });

  it.each([1, 2, 3])("expert sets of MoE layer %i equal the golden topk_idx", (i) => {
    const mine = observed[`model.layers.${i}.mlp.topk_idx`]!;
    expect(rowSets(mine)).toEqual(rowSets(golden[`topk_idx.${i}`]!));
  });

  it("the prefill graph's logits are forward's at the last position, bit for bit, and its cache forward's", async () => {
    const p = await model.graphs["prefill"]!.run({ input_ids: golden["input_ids"]! });
    const [B, S, V] = out["logits"]!.shape as [number, number, number];
    expect(p["logits"]!.shape).toEqual([B, 1, V]);
    for (let b = 0; b < B; b++) expect(p["logits"]!.data.subarray(b * V, (b + 1) * V)).toEqual(out["logits"]!.data.subarray((b * S + S - 1) * V, (b * S + S) * V));
    for (const name of Object.keys(out).filter((n) => n.startsWith("present."))) expect(p[name]!.data).toEqual(out[name]!.data);
    // No MTP layer runs in prefill (the draft graph runs it when speculative decoding wants it).
    expect(p["mtp_logits"]).toBeUndefined();
    expect(p["final_hidden"]!.shape).toEqual([B, S, 64]);
  });

  it("greedy generation through the decode graph reproduces greedy_ids and greedy_logits", async () => {
    const { prompts, tokens, steps, stepLogits } = goldenGreedy(golden);
    let decodeCalls = 0;
    const counting = { ...model, graphs: { ...model.graphs, decode: { run: (i: Record<string, Tensor>) => (decodeCalls++, model.decode.run(i)) } } };
    const r = await greedyGenerate(counting, prompts, steps);
    expect(decodeCalls).toBe(steps - 1);
    expect(r.tokens).toEqual(tokens);
    for (let b = 0; b < prompts.length; b++) for (let s = 0; s < steps; s++) expect(maxAbsDiff(r.stepLogits[b]![s]!, stepLogits(b, s))).toBeLessThanOrEqual(1e-4);
  });
});
